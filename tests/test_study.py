"""mmdcn_plugin.study and tools/study.py: the recipe read from the quick-start config,
each run's config, the statistics against hand-computed numbers, the report of a
partial grid, and the --quick study end to end with resume."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from helpers import load_tool
from mmdcn_plugin import study
from mmdcn_plugin.study import (BASE_CONFIG, Recipe, StudySetup, aggregate,
                                augmentation_effects, build_report, curve_area,
                                paired_difference, read_recipe, run_overrides, t_interval,
                                welch_difference, write_run_config)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_study(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'study.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


# ------------------------------------------------------------------ recipe and run configs
def _config(tmp_path, body):
    path = tmp_path / 'recipe.py'
    path.write_text(f'_base_ = {BASE_CONFIG!r}\n{body}\n')
    return str(path)


def test_recipe_reads_an_iteration_schedule(tmp_path):
    config = _config(tmp_path, "train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', "
                     "max_iters=720, val_interval=90)\nnum_train_images = 1500\n"
                     "num_val_images = 120")
    recipe = read_recipe(config)
    assert (recipe.by_epoch, recipe.length, recipe.val_interval) == (False, 720, 90)
    assert (recipe.num_train, recipe.num_val, recipe.image_size) == (1500, 120, 128)
    assert recipe.describe().startswith('720 iterations (validation every 90), batch 8, 1500')
    quick = read_recipe(config, quick=True)
    assert (quick.by_epoch, quick.length, quick.num_train, quick.num_val) == (False, 2, 8, 4)
    assert quick.quick and quick.batch_size == 4


def test_recipe_reads_an_epoch_schedule(tmp_path):
    recipe = read_recipe(_config(tmp_path, "train_cfg = dict(max_epochs=6, val_interval=2)"))
    assert (recipe.by_epoch, recipe.length, recipe.val_interval) == (True, 6, 2)
    quick = read_recipe(_config(tmp_path, ''), quick=True)
    assert (quick.by_epoch, quick.length, quick.batch_size) == (True, 1, 4)  # 2 iterations
    overrides = run_overrides(quick, '/d', 0, 'a')
    assert overrides['train_cfg'] == dict(max_epochs=1, val_interval=1)


def test_epochs_stretch_the_schedule_and_its_lr_drops():
    recipe = read_recipe(epochs=24)
    assert (recipe.by_epoch, recipe.length) == (True, 24)
    # The quick-start recipe: 8 epochs, LR drops after 5 and 6, a 50-iteration warm-up.
    o = run_overrides(recipe, '/d', 0, 'b')
    assert o['train_cfg'] == dict(max_epochs=24)
    warmup, steps = o['param_scheduler']
    assert (warmup['by_epoch'], warmup['end']) == (False, 50)   # iterations: kept
    assert (steps['milestones'], steps['begin'], steps['end']) == ([15, 18], 0, 24)
    assert 'RandomRotateScaleShear' in [p['type'] for p in
                                        o['train_dataloader']['dataset']['pipeline']]
    # Milestones stay distinct and inside the run when squeezed.
    from mmengine.config import Config
    cfg = Config(dict(train_cfg=dict(max_epochs=8), param_scheduler=[
        dict(type='MultiStepLR', by_epoch=True, begin=0, end=8, milestones=[5, 6])]))
    assert study.scaled_schedule(cfg, 2)['param_scheduler'][0]['milestones'] == [1, 2]
    assert StudySetup(recipe, '', '', arms=('b',), seeds=(0,)).command() == \
        'python tools/study.py --epochs 24 --arms b --seeds 0'
    from mmdcn_plugin.study.report import _stretched   # the report's header says so
    assert "stretched by `--epochs` from the config's 8" in _stretched(StudySetup(recipe, '', ''))
    assert _stretched(StudySetup(read_recipe(), '', '')) == ''
    assert study.stretched_from(recipe) == 8 and study.stretched_from(read_recipe()) is None
    assert study.stretched_from(read_recipe(quick=True)) is None
    with pytest.raises(ValueError, match=r'epochs: expected a positive int .* got 0'):
        read_recipe(epochs=0)
    with pytest.raises(ValueError, match=r'epochs: .* got 3 \(quick=True'):
        read_recipe(quick=True, epochs=3)


def test_recipe_errors_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r'train_cfg must hold max_epochs .* or max_iters'):
        read_recipe(_config(tmp_path, "train_cfg = dict(_delete_=True, type='X')"))
    with pytest.raises(ValueError, match=r'num_val_images must be a positive int, got 0'):
        read_recipe(_config(tmp_path, 'num_val_images = 0'))


def test_a_run_adds_its_seed_its_data_and_in_arm_b_the_augmentation():
    recipe = read_recipe()
    a = run_overrides(recipe, '/d/x', 3, 'a')
    assert a['randomness'] == dict(seed=3)
    assert a['val_dataloader']['dataset']['data_root'] == '/d/x/'
    assert a['test_evaluator']['ann_file'] == '/d/x/annotations/val.json'
    assert 'pipeline' not in a['train_dataloader']['dataset'] and 'train_cfg' not in a
    b = run_overrides(recipe, '/d/x', 3, 'b')
    types = [s['type'] for s in b['train_dataloader']['dataset']['pipeline']]
    i = types.index('LoadAnnotations')
    assert types[i + 1] == 'RandomRotateScaleShear'
    load = b['train_dataloader']['dataset']['pipeline'][i]
    assert load['with_mask'] and not load['poly2mask']
    with pytest.raises(ValueError, match="arm: expected 'a' or 'b', got 'c'"):
        run_overrides(recipe, '/d', 0, 'c')
    with pytest.raises(ValueError, match='expected a LoadAnnotations step'):
        study.augmented_pipeline([dict(type='LoadImageFromFile')])


def test_the_arm_b_config_trains_through_the_augmentation(tmp_path):
    from mmdet.registry import DATASETS
    from mmdcn_plugin.robustness.augment import RandomRotateScaleShear
    recipe = read_recipe(quick=True)
    root = study.ensure_dataset(str(tmp_path), recipe, log=lambda msg: None)
    cfg = study.run_config(recipe, root, arm='b')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert any(isinstance(t, RandomRotateScaleShear) for t in dataset.pipeline.transforms)
    item = dataset[0]
    assert item['inputs'].shape[1:] == (128, 128)
    assert len(item['data_samples'].gt_instances) > 0
    assert 'masks' not in item['data_samples'].gt_instances   # dropped for Faster R-CNN


def test_a_run_config_is_not_silently_replaced(tmp_path):
    path = str(tmp_path / 'c.py')
    text = write_run_config(path, 'base.py', dict(randomness=dict(seed=1)))
    assert "_base_ = 'base.py'" in text and 'randomness = ' in text
    assert write_run_config(path, 'base.py', dict(randomness=dict(seed=1))) == text
    with pytest.raises(ValueError, match='holds another run config'):
        write_run_config(path, 'base.py', dict(randomness=dict(seed=2)))


def test_the_grid_is_seed_first_and_checked(tmp_path):
    recipe = read_recipe(quick=True)
    setup = StudySetup.quick(recipe, str(tmp_path / 'o'), str(tmp_path / 'd'))
    names = [r.name for r in setup.runs()]
    assert names == ['a/baseline/seed0', 'a/dcnv2/seed0', 'b/baseline/seed0', 'b/dcnv2/seed0']
    assert setup.runs()[0].result_file == str(tmp_path / 'd/runs/a/baseline/seed0.json')
    assert setup.command() == 'python tools/study.py --quick'
    full = StudySetup(read_recipe(), '', '', seeds=(0, 1))
    assert len(full.runs()) == 2 * 4 * 2 and 'dcnv2-sep-max4' not in study.VARIANTS
    assert full.command() == 'python tools/study.py --seeds 0,1'
    with pytest.raises(ValueError, match=r"variants: expected some of .*got \['x'\]"):
        StudySetup(recipe, '', '', variants=['x'])
    with pytest.raises(ValueError, match=r'seeds: expected non-negative ints, got \[-1\]'):
        StudySetup(recipe, '', '', seeds=[-1])


def test_finished_runs_of_another_recipe_are_refused(tmp_path):
    """A run trained from other weights (or schedule) must not join the grid."""
    recipe = read_recipe(quick=True)
    assert re.fullmatch(r'[0-9a-f]{12}', recipe.pretrained)   # the committed weights
    assert recipe.pretrained == read_recipe().pretrained
    setup = StudySetup.quick(recipe, str(tmp_path / 'o'), str(tmp_path / 'd'))
    run = setup.runs()[1]
    os.makedirs(osp.dirname(run.result_file))
    with open(run.result_file, 'w') as f:
        json.dump(dict(recipe=dict(recipe.as_dict(), pretrained='0' * 12)), f)
    with pytest.raises(ValueError, match=r"trained with another: \['a/dcnv2/seed0'\]"):
        study.run_grid(setup)
    missing = tmp_path / 'missing.py'
    missing.write_text(f'_base_ = {BASE_CONFIG!r}\n'
                       "model = dict(backbone=dict(init_cfg=dict(checkpoint='/no/such.pth')))\n")
    with pytest.raises(ValueError, match=r"init_cfg.checkpoint: expected a file, got '/no/such"):
        read_recipe(str(missing))


# ------------------------------------------------------------------ statistics
def test_t_interval_by_hand():
    # mean 2.5, s = 1.2910, t(0.975, 3) = 3.18245: 2.5 -+ 3.18245 * 1.2910 / 2
    low, high = t_interval([1, 2, 3, 4])
    assert low == pytest.approx(0.445739, abs=1e-5) and high == pytest.approx(4.554261, abs=1e-5)
    assert t_interval([0.3]) == (None, None)
    s = study.summarize([0.3])
    assert (s['n'], s['mean'], s['std'], s['ci_low']) == (1, 0.3, None, None)


def test_curve_area_is_a_mean_over_the_range():
    assert curve_area([0, 30, 60], [0.3, 0.6, 0.3]) == pytest.approx(0.45)
    # uneven steps: (0.5 * 0.3 + 1 * 0.25) / 1.5
    assert curve_area([0.5, 1, 2], [0.2, 0.4, 0.1]) == pytest.approx(0.4 / 1.5)
    assert curve_area([1.0], [0.25]) == 0.25
    with pytest.raises(ValueError, match='strictly increasing'):
        curve_area([0, 0], [1, 1])
    with pytest.raises(ValueError, match='equally long and non-empty, got 2 and 1'):
        curve_area([0, 1], [1])


def test_paired_difference_by_seed():
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.4, 3: 0.9}, {0: 0.4, 1: 0.45, 2: 0.35})
    # differences 0.1, 0.15, 0.05: mean 0.1, s = 0.05, t(0.975, 2) = 4.302653
    assert d['seeds'] == [0, 1, 2] and d['n'] == 3
    assert d['mean'] == pytest.approx(0.1)
    assert d['ci_low'] == pytest.approx(0.1 - 0.124207, abs=1e-5)
    assert d['ci_high'] == pytest.approx(0.1 + 0.124207, abs=1e-5)


def test_welch_difference_matches_scipys_unequal_variance_t_test():
    from scipy import stats
    a, b = [0.61, 0.55, 0.58, 0.66], [0.50, 0.52, 0.41]
    d = welch_difference(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (d['n_a'], d['n_b']) == (4, 3)
    assert d['mean'] == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert (d['ci_low'], d['ci_high']) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # one value on a side: a difference, no interval; an empty side: nothing
    one = welch_difference([0.3], b)
    assert one['mean'] == pytest.approx(0.3 - sum(b) / 3) and one['ci_low'] is None
    assert welch_difference([], b)['mean'] is None


def test_augmentation_effects_compare_arms_and_the_gap_to_the_baseline():
    per_seed = {('a', 'baseline'): {0: {'m': 0.4}, 1: {'m': 0.5}},
                ('a', 'dcnv2'): {0: {'m': 0.5}, 1: {'m': 0.7}},
                ('b', 'baseline'): {0: {'m': 0.6}, 1: {'m': 0.6}},
                ('b', 'dcnv2'): {0: {'m': 0.6}, 1: {'m': 0.65}},
                ('a', 'dcnv1'): {0: {'m': 0.5}}}
    out = {e['variant']: e for e in augmentation_effects(per_seed, ('baseline', 'dcnv1', 'dcnv2'))}
    assert set(out) == {'baseline', 'dcnv2'}          # dcnv1 has no arm (b) run
    base = out['baseline']
    assert 'gap_change' not in base and base['measure'] == 'm'
    # 0.6 - 0.45; arm (b) has no spread, so the df is arm (a)'s: 1, t = 12.7062, se 0.05
    assert base['b_minus_a']['mean'] == pytest.approx(0.15)
    assert base['b_minus_a']['df'] == pytest.approx(1.0)
    assert base['b_minus_a']['ci_high'] == pytest.approx(0.15 + 12.7062 * 0.05, abs=1e-4)
    # gaps to the baseline: arm (a) 0.1, 0.2; arm (b) 0.0, 0.05: the augmentation closes
    # 0.125 of the lead
    assert out['dcnv2']['gap_change']['mean'] == pytest.approx(-0.125)
    assert out['dcnv2']['b_minus_a']['mean'] == pytest.approx(0.025)


# ------------------------------------------------------------------ what a run's logs say
def test_offset_stats_records_are_not_validations(tmp_path):
    # OffsetStatsHook's records carry only offset_stats/... and a step: once they were
    # read as validations that detected nothing (zeros at steps 50, 100, ... of the curve).
    from mmdcn_plugin.study.records import read_offset_stats, read_scalars, val_curve
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    recs = [{'loss': 1.0, 'lr': 1e-3, 'time': 0.5, 'step': 10},
            {'offset_stats/backbone.layer4.0.conv2/mean_px': 0.1,
             'offset_stats/backbone.layer4.0.conv2/max_px': 2.0, 'step': 50},
            {'coco/bbox_mAP': 0.3, 'time': 0.2, 'step': 1},
            {'offset_stats/backbone.layer4.0.conv2/mean_px': 0.25,
             'offset_stats/backbone.layer4.0.conv2/max_px': 3.0,
             'offset_stats/backbone.layer4.0.conv2/mask_mean': 0.5, 'step': 100},
            {'time': 0.2, 'step': 2}]        # a validation with no detections at all
    (vis / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in recs) + '\n')
    train, val = read_scalars(str(tmp_path))
    assert len(train) == 1 and [r['step'] for r in val] == [1, 2]
    assert val_curve(val) == [[1, 0.3], [2, 0.0]]
    assert read_offset_stats(str(tmp_path)) == dict(step=100, layers={
        'backbone.layer4.0.conv2': dict(mean_px=0.25, max_px=3.0, mask_mean=0.5)})
    (vis / 'scalars.json').write_text(json.dumps(recs[0]) + '\n')
    assert read_offset_stats(str(tmp_path)) is None


# ------------------------------------------------------------------ report of a partial grid
def _fake_run(arm, variant, seed, level, recipe, machine='test machine', sec_per_iter=0.5):
    """A run whose rotate curve is ``level`` at 0 degrees falling linearly to 0 at 180; its
    offsets put 0.6 of the points on the object upright, 0.51 + 0.01 * seed rotated (the
    grid: 0.5)."""
    rows = [dict(value=v, bbox_mAP=level * (1 - v / 180), mAP50=level, mAP75=level / 2,
                 bbox_mAP_s=0, bbox_mAP_m=0, n_instances=10) for v in (0, 90, 180)]
    on_object = None if variant == 'baseline' or arm == 'b' else [
        dict(value=v, stage=s, instances=3, points=27, regular=0.5,
             deformable=0.6 if v == 0 else 0.51 + 0.01 * seed)
        for v in (0, 90, 180) for s in study.STAGES]
    offsets = None if variant == 'baseline' else dict(step=700, layers={
        f'backbone.layer{i}.{j}.conv2': dict(mean_px=0.1 * i + 0.01 * seed, max_px=float(j),
                                             outside_frac=0.05, mask_mean=0.5)
        for i in (2, 3, 4) for j in (0, 1)})
    return dict(arm=arm, variant=variant, seed=seed, recipe=recipe.as_dict(),
                final=dict(bbox_mAP=level), sweeps=dict(rotate=rows), on_object=on_object,
                offsets=offsets,
                machine=machine, date='2026-01-0%d' % (seed + 1), jobs=1, threads=1,
                sec_per_iter=sec_per_iter, train_wall_s=10.0, wall_s=12.0, peak_rss_mb=500.0)


def test_report_of_a_partial_grid(tmp_path):
    recipe = read_recipe(quick=True)
    setup = StudySetup(recipe, str(tmp_path), str(tmp_path / 'docs'), arms=('a', 'b'),
                       variants=('baseline', 'dcnv2'), seeds=(0, 1, 2),
                       sweeps=dict(rotate=(0, 90, 180)), on_object_images=2)
    levels = {('baseline', 0): 0.4, ('baseline', 1): 0.5, ('dcnv2', 0): 0.5,
              ('dcnv2', 1): 0.7, ('dcnv2', 2): 0.9}
    results = [_fake_run('a', v, s, lv, recipe) for (v, s), lv in levels.items()]
    results.append(_fake_run('b', 'dcnv2', 0, 0.3, recipe, machine='fast; 2 cores',
                             sec_per_iter=0.2))
    summary = aggregate(results, setup.arms, setup.variants)
    areas = {(e['arm'], e['variant']): e for e in summary['areas']}
    # The area of a line from L to 0 is L / 2; dcnv2 pairs with the baseline on seeds 0, 1.
    assert areas[('a', 'dcnv2')]['area']['mean'] == pytest.approx((0.5 + 0.7 + 0.9) / 6)
    pair = areas[('a', 'dcnv2')]['vs_baseline']
    # areas 0.25, 0.35 against 0.20, 0.25: differences 0.05 and 0.10
    assert pair['seeds'] == [0, 1] and pair['mean'] == pytest.approx(0.075)
    assert 'vs_baseline' not in areas[('b', 'dcnv2')]   # no arm (b) baseline yet
    final = {(e['arm'], e['variant']): e for e in summary['untransformed']}
    # final mAP 0.5, 0.7 against 0.4, 0.5: differences 0.1, 0.2; t(0.975, 1) = 12.7062
    d = final[('a', 'dcnv2')]['vs_baseline']
    assert d['seeds'] == [0, 1] and d['mean'] == pytest.approx(0.15)
    assert d['ci_high'] == pytest.approx(0.15 + 12.7062 * 0.0707107 / 2 ** 0.5, abs=1e-4)
    assert 'vs_baseline' not in final[('a', 'baseline')]
    gaps = {(g['variant'], g['stage']): g for g in summary['on_object_gap']}
    assert set(gaps) == {('dcnv2', s) for s in study.STAGES}   # no baseline, no arm (b)
    g = gaps[('dcnv2', 'c4')]
    assert g['upright']['mean'] == pytest.approx(0.1) and g['upright']['n'] == 3
    # rotated gaps per seed 0.01, 0.02, 0.03: mean 0.02, s = 0.01, t(0.975, 2) = 4.302653
    assert g['rotated']['mean'] == pytest.approx(0.02)
    assert g['rotated']['ci_low'] == pytest.approx(0.02 - 4.302653 * 0.01 / 3 ** 0.5)
    assert areas[('b', 'dcnv2')]['area']['ci_low'] is None
    aug = {(e['variant'], e['measure']): e for e in summary['augmentation']}
    assert set(aug) == {('dcnv2', m) for m in ('untransformed', 'rotate')}
    assert aug[('dcnv2', 'untransformed')]['b_minus_a']['mean'] == pytest.approx(0.3 - 0.7)
    assert 'gap_change' not in aug[('dcnv2', 'untransformed')]   # no arm (b) baseline
    # Timings compare only on one machine: one cost row per machine and variant.
    cost = {(e['machine'], e['variant']): (e['runs'], e['sec_per_iter']) for e in summary['cost']}
    assert cost == {('test machine', 'baseline'): (2, 0.5), ('test machine', 'dcnv2'): (3, 0.5),
                    ('fast; 2 cores', 'dcnv2'): (1, 0.2)}
    keys = ('params', 'flops', 'offset_params', 'offset_flops', 'sampling_flops')
    (tmp_path / 'complexity.json').write_text(json.dumps(
        {f'{v}@128': {k: 1000 for k in keys} for v in ('baseline', 'dcnv2')}))
    report = open(build_report(setup, results, date='2026-01-01')).read()
    assert 'Runs finished: 6 of 12' in report and 'Partial grid: 6 runs' in report
    assert '| (a) | rotate | DCNv2, ConvOffsetHead | 3 | 0.350 ± 0.100 |' in report
    assert '| +0.075 |' in report
    assert '| (a) | DCNv2, ConvOffsetHead | 3 | 0.700 ± 0.200 | [0.203, 1.197] | +0.150 |' in report
    assert '| DCNv2, ConvOffsetHead | c5 | 3 | +0.100 ± 0.000 |' in report
    # c5 = layer4: mean |offset| 0.4 + 0.01 * seed over seeds 0, 1, 2; max over its layers 1
    assert '| (a) | DCNv2, ConvOffsetHead | c5 | 3 | 0.410 ± 0.010 | 1.00 ± 0.00 | 0.050 | 0.500 |' \
        in report
    assert not any(e['variant'] == 'baseline' for e in summary['offsets'])
    assert '| DCNv2, ConvOffsetHead | c3 | 3 | 0.600 / 0.500 |' in report
    assert '| DCNv2, ConvOffsetHead | untransformed | -0.400 (1 vs 3) | — |' in report
    assert ('Where the runs trained: fast; 2 cores: 1 runs (arm (b)), 2026-01-01; test '
            'machine: 5 runs (arm (a)), 2026-01-01 to 2026-01-03.') in report
    assert '| fast | DCNv2, ConvOffsetHead | 0.001 M |' in report
    docs = tmp_path / 'docs'
    assert (docs / 'robustness_rotate.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (docs / 'on_object_rotate.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    rot = {r['value']: r['gap'] for r in summary['on_object']
           if (r['variant'], r['stage']) == ('dcnv2', 'c3')}
    assert rot[0]['mean'] == pytest.approx(0.1) and rot[90]['mean'] == pytest.approx(0.02)
    assert (docs / 'results.csv').read_text().splitlines()[0].startswith('arm,variant,transform')
    assert json.loads((docs / 'summary.json').read_text())['runs_finished'] == 6
    results[-1]['recipe'] = dict(results[-1]['recipe'], length=99)
    with pytest.raises(ValueError, match=r'these runs differ: \[\'b/dcnv2/seed0\'\]'):
        build_report(setup, results)


# ------------------------------------------------------------------ the command line
def test_bad_arguments_are_refused(tmp_path, capsys):
    # In this process (the command line's rules, without a child's import time).
    tool = load_tool('study')
    with pytest.raises(SystemExit) as e:
        tool.main(['--quick', '--out-dir', str(tmp_path), '--jobs', '0'])
    assert e.value.code == 2 and '--jobs must be >= 1, got 0' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(['--quick', '--out-dir', str(tmp_path), '--epochs', '3'])
    assert e.value.code == 2 and '--epochs: not with --quick' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(['--out-dir', str(tmp_path), '--epochs', '0'])
    assert e.value.code == 2 and '--epochs must be >= 1, got 0' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tool.main(['--quick', '--out-dir', str(tmp_path), '--variants', 'dcnv3'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'variants: expected some of' in err and "'dcnv3'" in err
    with pytest.raises(SystemExit, match='no finished run'):
        tool.main(['--quick', '--out-dir', str(tmp_path), '--report-only'])


def _check_quick(out_dir, docs, runs):
    for name in runs:
        r = json.loads((docs / 'runs' / f'{name}.json').read_text())
        assert r['recipe']['quick'] and r['iterations'] == 2 and r['sec_per_iter'] > 0
        assert sorted(r['sweeps']) == ['rotate', 'scale', 'shear']
        assert [row['value'] for row in r['sweeps']['rotate']] == [0, 90, 180]
        assert (r['on_object'] is not None) == (name.startswith('a/') and 'baseline' not in name)
        assert r['machine'] and r['wall_s'] > 0 and r['val_curve']
    report = (docs / 'results.md').read_text()
    for transform in ('rotate', 'scale', 'shear'):
        assert (docs / f'robustness_{transform}.png').read_bytes()[:4] == b'\x89PNG'
        assert f'### {transform}' in report
    return report


def test_quick_study_one_variant_end_to_end_and_resume(tmp_path, capsys):
    """Both arms and the sweeps of --quick for DCNv2, then the resume rules.

    The command line runs in this process (its runs still train and evaluate in child
    processes, as always): three calls without three interpreters' import time."""
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    args = ['--quick', '--variants', 'dcnv2', '--out-dir', str(out_dir), '--docs-dir', str(docs)]
    tool = load_tool('study')
    tool.main(args)
    assert '2 to train' in capsys.readouterr().out
    report = _check_quick(out_dir, docs, ['a/dcnv2/seed0', 'b/dcnv2/seed0'])
    assert 'Where the offsets go' in report
    # A run without its JSON (killed during its evaluation) resumes from its checkpoint;
    # the finished one is not redone.
    result = docs / 'runs' / 'b' / 'dcnv2' / 'seed0.json'
    os.remove(result)
    stamp = (docs / 'runs' / 'a' / 'dcnv2' / 'seed0.json').stat().st_mtime_ns
    tool.main(args)
    assert '1 already finished or left for later, 1 to train' in capsys.readouterr().out
    assert result.is_file()
    assert (docs / 'runs' / 'a' / 'dcnv2' / 'seed0.json').stat().st_mtime_ns == stamp
    log = (out_dir / 'work' / 'b' / 'dcnv2' / 'seed0' / 'study.log').read_text()
    assert (out_dir / 'work' / 'b' / 'dcnv2' / 'seed0.py').is_file()   # the run config
    assert re.search(r'Auto resumed from the latest checkpoint \S*epoch_1\.pth', log)
    # The report rebuilds from the JSONs alone.
    report = (docs / 'results.md').read_text()
    (docs / 'results.md').unlink()
    tool.main([*args, '--report-only'])
    assert '0 to train' not in capsys.readouterr().out   # --report-only trains nothing
    assert (docs / 'results.md').read_text() == report


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    """`make study STUDY_ARGS=--quick`: both arms, baseline and DCNv2, the paired areas."""
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    rc, out = run_study('--quick', '--out-dir', str(out_dir), '--docs-dir', str(docs))
    assert rc == 0, out[-3000:]
    assert '4 to train' in out
    report = _check_quick(out_dir, docs, [f'{a}/{v}/seed0' for a in 'ab'
                                          for v in ('baseline', 'dcnv2')])
    summary = json.loads((docs / 'summary.json').read_text())
    assert summary['command'] == 'python tools/study.py --quick'
    assert summary['complexity']['baseline']['offset_params'] == 0
    assert summary['complexity']['dcnv2']['offset_params'] > 0
    assert all('vs_baseline' in e for e in summary['areas'] if e['variant'] == 'dcnv2')
    assert 'Δ vs baseline' in report


def test_run_overrides_load_configs_one_thread_at_a_time(monkeypatch):
    # MMEngine's Config.fromfile raced in two arm (b) runs started at once (--jobs 2).
    import threading
    import time
    from mmengine.config import Config
    from mmdcn_plugin.study import recipe as recipe_mod
    inside, most, real = [0], [0], Config.fromfile
    guard = threading.Lock()

    def counting(path, *args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        try:
            return real(path, *args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(Config, 'fromfile', staticmethod(counting))
    recipe = read_recipe(quick=True)
    out = []
    threads = [threading.Thread(target=lambda s=s: out.append(
        recipe_mod.run_overrides(recipe, '/data', s, 'b'))) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and most[0] == 1
