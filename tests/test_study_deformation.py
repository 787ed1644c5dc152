"""The deformation study's factors: deformation levels (one dataset each), offset recipes
(OffsetLrRampHook), taking over the one-level study's runs, and the command line."""
import json
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch

from helpers import load_tool
from mmdcn_plugin import study
from mmdcn_plugin.hooks import OffsetLrRampHook, ramp_factor
from mmdcn_plugin.study import StudySetup, read_recipe, run_overrides
from mmdcn_plugin.study.grid import adopt_finished
from mmdcn_plugin.study.recipe import dataset_root, offset_recipe_overrides


# ------------------------------------------------------------------ the ramp hook
def test_ramp_factor_holds_then_rises_linearly():
    assert [ramp_factor(i, 2, 4) for i in range(8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    assert [ramp_factor(i, 0, 0) for i in range(2)] == [1, 1]
    assert [ramp_factor(i, 3, 0) for i in range(5)] == [0, 0, 0, 1, 1]


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)
        self.offset_head = torch.nn.Conv2d(1, 2, 1)


def _runner(model, groups):
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    return SimpleNamespace(model=model, iter=0,
                           optim_wrapper=SimpleNamespace(optimizer=optimizer))


def test_the_hook_scales_only_the_heads_and_follows_the_schedulers():
    model = _Model()
    runner = _runner(model, [dict(params=[p]) for p in model.conv.parameters()]
                     + [dict(params=[p], lr=1e-4) for p in model.offset_head.parameters()])
    groups = runner.optim_wrapper.optimizer.param_groups
    hook = OffsetLrRampHook(delay=2, warmup=2)
    hook.before_train(runner)
    for it, expect in ((0, 0.0), (1, 0.0), (2, 0.5e-4), (3, 1e-4), (10, 1e-4)):
        runner.iter = it
        hook.before_train_iter(runner, it)
        assert [g['lr'] for g in groups] == pytest.approx([1e-3, 1e-3, expect, expect])
    # A scheduler's step (x0.1 on every group) carries over to the heads.
    for g in groups:
        g['lr'] *= 0.1
    runner.iter = 11
    hook.before_train_iter(runner, 11)
    assert [g['lr'] for g in groups] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])


def test_the_hook_refuses_what_it_cannot_do():
    model = _Model()
    with pytest.raises(ValueError, match="parameter groups of their own"):
        OffsetLrRampHook().before_train(_runner(model, [dict(params=list(model.parameters()))]))
    conv = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="no parameter name contains key='offset_head'"):
        OffsetLrRampHook().before_train(_runner(conv, [dict(params=list(conv.parameters()))]))
    with pytest.raises(ValueError, match='delay must be a non-negative int, got -1'):
        OffsetLrRampHook(delay=-1)
    with pytest.raises(ValueError, match="key must be a non-empty str, got ''"):
        OffsetLrRampHook(key='')


# ------------------------------------------------------------------ offset recipes
def test_offset_recipes_change_only_the_heads_rate_and_hooks():
    recipe = read_recipe()
    assert offset_recipe_overrides('slow') == {}
    slow = run_overrides(recipe, '/d', 0, 'a')
    assert 'optim_wrapper' not in slow and 'custom_hooks' not in slow
    ramp = run_overrides(recipe, '/d', 0, 'a', offset_recipe='ramp')
    assert ramp['optim_wrapper'] == dict(paramwise_cfg=dict(
        custom_keys={'offset_head': dict(lr_mult=1.0)}))
    types = [h['type'] for h in ramp['custom_hooks']]
    assert types == ['OffsetStatsHook', 'RNGStateHook', 'OffsetLrRampHook']   # base kept
    assert ramp['custom_hooks'][-1] == dict(type='OffsetLrRampHook', delay=0, warmup=180)
    full = run_overrides(recipe, '/d', 0, 'a', offset_recipe='full')
    assert 'custom_hooks' not in full and full['optim_wrapper']
    cfg = study.run_config(recipe, '/d')
    cfg.merge_from_dict(ramp)
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['offset_head']['lr_mult'] == 1.0
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'   # the rest of the recipe unchanged
    with pytest.raises(ValueError, match=r"offset_recipe: expected one of \['slow'.*got 'fast'"):
        offset_recipe_overrides('fast')


def test_a_bounded_recipe_gives_the_dcn_layers_a_bounded_conv_head(tmp_path):
    recipe = read_recipe()
    out = run_overrides(recipe, '/d', 0, 'a', offset_recipe='ramp-max1')
    assert out['model'] == dict(backbone=dict(dcn=dict(offset_head=dict(
        type='ConvOffsetHead', max_offset=1.0))))
    assert out['custom_hooks'][-1] == dict(type='OffsetLrRampHook', delay=0, warmup=180)
    assert 'model' not in run_overrides(recipe, '/d', 0, 'a', offset_recipe='ramp')
    # The variant's config with the override builds a backbone whose heads are bounded.
    from mmengine.config import Config
    from mmdcn_plugin.apis import build_backbone_from_config
    from mmdcn_plugin.layers import DeformableConv2d
    cfg = Config.fromfile(study.variant_config('dcnv2'))
    cfg.merge_from_dict(dict(model=out['model']))
    layers = [m for m in build_backbone_from_config(cfg).modules()
              if isinstance(m, DeformableConv2d)]
    assert layers and {m.offset_head.max_offset for m in layers} == {1.0}
    assert {type(m.offset_head).__name__ for m in layers} == {'ConvOffsetHead'}
    # The SeparableOffsetHead variant has its own head: a bounded recipe refuses it.
    with pytest.raises(ValueError, match=r"offset_recipes: \['ramp-max1'\] bound the "
                                         r"ConvOffsetHead.*got \['dcnv2-sep'\]"):
        StudySetup(recipe, str(tmp_path), str(tmp_path), variants=['baseline', 'dcnv2-sep'],
                   offset_recipes=['slow', 'ramp-max1'])


# ------------------------------------------------------------------ levels in the grid
def test_levels_and_offset_recipes_in_the_grid(tmp_path):
    recipe = read_recipe()
    setup = StudySetup(recipe, str(tmp_path / 'o'), str(tmp_path / 'd'), arms=['a'],
                       variants=['baseline', 'dcnv2'], seeds=[0],
                       levels=['none', 'strong'], offset_recipes=['slow', 'ramp'])
    names = [r.name for r in setup.runs()]
    assert names == ['a/none/baseline/seed0', 'a/none/dcnv2/seed0', 'a/none/dcnv2+ramp/seed0',
                     'a/strong/baseline/seed0', 'a/strong/dcnv2/seed0',
                     'a/strong/dcnv2+ramp/seed0']
    run = setup.runs()[2]
    assert (run.level, run.offset_recipe, run.key) == ('none', 'ramp', 'dcnv2+ramp')
    assert run.result_file == str(tmp_path / 'd/runs/a/none/dcnv2+ramp/seed0.json')
    assert setup.runs()[0].offset_recipe == 'slow'   # the baseline has no offset heads
    assert setup.command() == ('python tools/study.py --levels none,strong --arms a '
                               '--variants baseline,dcnv2 --offset-recipes slow,ramp --seeds 0')
    assert '2 levels' in setup.describe() and '2 offset recipes' in setup.describe()
    # The one-level study keeps its paths.
    assert StudySetup(recipe, 'o', 'd').runs()[0].name == 'a/baseline/seed0'
    with pytest.raises(ValueError, match=r"levels: expected some of .*got \['huge'\]"):
        StudySetup(recipe, '', '', levels=['huge'])
    with pytest.raises(ValueError, match=r"offset_recipes: expected some of .*got \['x'\]"):
        StudySetup(recipe, '', '', offset_recipes=['x'])


def _finished(setup, run, overrides, recipe):
    record = dict(arm=run.arm, variant=run.variant, seed=run.seed, recipe=recipe,
                  overrides=overrides, final=dict(bbox_mAP=0.5))
    path = osp.join(setup.docs_dir, 'runs', run.arm, run.variant, f'seed{run.seed}.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(record, f)
    return path


def test_the_same_moderate_run_is_taken_over_and_nothing_else(tmp_path):
    recipe = read_recipe()
    old = StudySetup(recipe, str(tmp_path / 'old-work'), str(tmp_path / 'study'))
    new = StudySetup(recipe, str(tmp_path / 'new-work'), str(tmp_path / 'deformation'),
                     arms=['a'], variants=['baseline', 'dcnv2'], seeds=[0, 1],
                     levels=['none', 'moderate'], offset_recipes=['slow', 'ramp'])
    runs = {r.name: r for r in new.runs()}
    root = dataset_root(old.out_dir, recipe)
    _finished(old, runs['a/moderate/baseline/seed0'], run_overrides(recipe, root, 0, 'a'),
              recipe.as_dict())
    # seed 1 was trained with other weights: not the same run
    _finished(old, runs['a/moderate/baseline/seed1'], run_overrides(recipe, root, 1, 'a'),
              dict(recipe.as_dict(), pretrained='0' * 12))
    # seed 1 of DCNv2 with another seed in its settings: not the same run either
    _finished(old, runs['a/moderate/dcnv2/seed1'], run_overrides(recipe, root, 7, 'a'),
              recipe.as_dict())
    taken = [name for name, r in runs.items() if adopt_finished(r, new, old.docs_dir)]
    assert taken == ['a/moderate/baseline/seed0']
    record = runs['a/moderate/baseline/seed0'].result()
    assert record['level'] == 'moderate' and record['offset_recipe'] == 'slow'
    assert record['adopted_from'].endswith('study/runs/a/baseline/seed0.json')


# ------------------------------------------------------------------ datasets per level
def test_each_level_gets_its_dataset_once(tmp_path):
    recipe = read_recipe(quick=True)
    said = []
    none = study.ensure_dataset(str(tmp_path), recipe, said.append, 'none')
    strong = study.ensure_dataset(str(tmp_path), recipe, said.append, 'strong')
    assert none != strong and osp.basename(strong) == 'strong_8x4_128px'
    with open(osp.join(strong, 'annotations', 'val.json')) as f:
        assert json.load(f)['info']['deformation'] == 'strong'
    assert study.ensure_dataset(str(tmp_path), recipe, said.append, 'none') == none
    assert sum('generating' in s for s in said) == 2 and 'dataset found' in said[-1]
    with pytest.raises(ValueError, match=r"deformation: expected one of \['none'.*got 'x'"):
        study.ensure_dataset(str(tmp_path), recipe, said.append, 'x')


# ------------------------------------------------------------------ the command line
def test_levels_on_the_command_line(tmp_path, capsys):
    tool = load_tool('study')
    _, args = tool.parse_args(['--levels', 'none,strong', '--offset-recipes', 'slow,late'])
    assert args.levels == ['none', 'strong'] and args.offset_recipes == ['slow', 'late']
    with pytest.raises(SystemExit) as e:
        tool.main(['--levels', 'huge', '--out-dir', str(tmp_path), '--report-only'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "levels: expected some of" in err and "'huge'" in err
    with pytest.raises(SystemExit, match='no finished run under'):
        tool.main(['--levels', 'none', '--out-dir', str(tmp_path), '--docs-dir',
                   str(tmp_path / 'docs'), '--report-only'])


# ------------------------------------------------------------------ the report
def test_the_report_pairs_each_level_with_its_own_plain_conv(tmp_path):
    from study_helpers import fake_run
    from mmdcn_plugin.study.deformation import build_deformation_report, summarize_levels
    recipe = read_recipe(quick=True)
    setup = StudySetup(recipe, str(tmp_path), str(tmp_path / 'docs'), arms=['a'],
                       variants=['baseline', 'dcnv2'], seeds=[0, 1], levels=['none', 'strong'],
                       offset_recipes=['slow', 'ramp'], sweeps=dict(rotate=(0, 90, 180)))
    # plain conv 0.5 at both levels; DCNv2 +0.0 at none, ramp +0.1 at strong (seeds 0, 1)
    mAP = {('none', 'baseline', None): 0.5, ('none', 'dcnv2', 'slow'): 0.5,
           ('strong', 'baseline', None): 0.4, ('strong', 'dcnv2', 'slow'): 0.42,
           ('strong', 'dcnv2', 'ramp'): 0.5}
    results = []
    for (level, variant, recipe_name), value in mAP.items():
        for seed in (0, 1):
            r = fake_run('a', variant, seed, value + 0.01 * seed, recipe)
            r.update(level=level, offset_recipe=recipe_name or 'slow')
            results.append(r)
    summary = summarize_levels(results, setup.levels, ['baseline', 'dcnv2', 'dcnv2+ramp'])
    cells = {(e['arm'], e['variant']): e for e in summary['untransformed']}
    assert cells[('none', 'dcnv2')]['vs_baseline']['mean'] == pytest.approx(0.0)
    assert cells[('strong', 'dcnv2')]['vs_baseline']['mean'] == pytest.approx(0.02)
    assert cells[('strong', 'dcnv2+ramp')]['vs_baseline']['mean'] == pytest.approx(0.1)
    assert ('none', 'dcnv2+ramp') not in cells   # not trained yet: no row, no error
    # What freeing the offsets changes: ramp minus slow of the same level and seed.
    freed = {(e['level'], e['variant']): e for e in summary['vs_slow']}
    assert set(freed) == {('strong', 'dcnv2+ramp')} and freed[('strong', 'dcnv2+ramp')][
        'vs'] == 'dcnv2'
    assert freed[('strong', 'dcnv2+ramp')]['bbox_mAP']['mean'] == pytest.approx(0.08)
    assert freed[('strong', 'dcnv2+ramp')]['bbox_mAP']['seeds'] == [0, 1]
    assert set(freed[('strong', 'dcnv2+ramp')]['areas']) == {'rotate'}   # the fakes' one sweep
    assert {(g['level'], g['variant']) for g in summary['on_object_gap']} >= {
        ('strong', 'dcnv2+ramp'), ('none', 'dcnv2')}
    report = build_deformation_report(setup, results, date='2026-01-01')
    text = open(report).read()
    assert '10 of 12 runs finished' in text and '`ramp`: offset heads at the full rate' in text
    assert '| strong | DCNv2, ConvOffsetHead; offset heads at the full rate' in text
    assert '## Freeing the offsets' in text and '+0.080' in text
    assert '+0.100' in text and (tmp_path / 'docs' / 'gain_by_level.png').read_bytes()[:4] == \
        b'\x89PNG'
    saved = json.loads((tmp_path / 'docs' / 'summary.json').read_text())
    assert '--levels none,strong' in saved['command']
    with pytest.raises(ValueError, match='expected a study with levels'):
        build_deformation_report(StudySetup(recipe, '', ''), results)


def test_quick_deformation_study_end_to_end(tmp_path, capsys):
    """One run of --quick at the strong level with the ramp recipe: its own dataset, the
    ramp hook in a real training, the run's JSON and the deformation report."""
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    tool = load_tool('study')
    tool.main(['--quick', '--levels', 'strong', '--variants', 'dcnv2', '--offset-recipes',
               'ramp', '--out-dir', str(out_dir), '--docs-dir', str(docs)])
    assert '1 to train' in capsys.readouterr().out
    r = json.loads((docs / 'runs' / 'a' / 'strong' / 'dcnv2+ramp' / 'seed0.json').read_text())
    assert (r['level'], r['offset_recipe'], r['variant']) == ('strong', 'ramp', 'dcnv2')
    assert "'type': 'OffsetLrRampHook'" in r['run_config']
    with open(out_dir / 'data' / 'strong_8x4_128px' / 'annotations' / 'val.json') as f:
        assert json.load(f)['info']['deformation'] == 'strong'
    log = (out_dir / 'work' / 'a' / 'strong' / 'dcnv2+ramp' / 'seed0' / 'study.log').read_text()
    assert 'lr_mult=1.0' in log   # the heads at the full rate, the hook ramps them
    report = (docs / 'results.md').read_text()
    assert '| strong | DCNv2, ConvOffsetHead; offset heads at the full rate' in report
    assert (docs / 'gain_by_level.png').is_file()


def test_a_finished_run_of_a_changed_offset_recipe_is_refused(tmp_path, monkeypatch):
    from mmdcn_plugin.study.grid import check_finished
    recipe = read_recipe()
    setup = StudySetup(recipe, str(tmp_path / 'o'), str(tmp_path / 'd'), arms=['a'],
                       variants=['dcnv2'], seeds=[0], levels=['none'],
                       offset_recipes=['ramp'])
    run = setup.runs()[0]
    os.makedirs(osp.dirname(run.result_file))
    with open(run.result_file, 'w') as f:
        json.dump(dict(recipe=recipe.as_dict(), overrides=run_overrides(
            recipe, '/d', 0, 'a', offset_recipe='ramp')), f)
    check_finished(setup.runs(), recipe)   # the same settings: fine
    changed = dict(study.OFFSET_RECIPES['ramp'], ramp=dict(delay=0, warmup=360))
    monkeypatch.setitem(study.OFFSET_RECIPES, 'ramp', changed)
    with pytest.raises(ValueError, match=r"offset_recipe: .*others: \['a/none/dcnv2\+ramp/seed0'\]"):
        check_finished(setup.runs(), recipe)
