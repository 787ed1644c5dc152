"""mmdcn_plugin.study.grid and tools/study.py: the grid, the recipe check, the command
line and the --quick study end to end with resume."""
import json
import os
import os.path as osp
import re

import pytest

from helpers import load_tool
from mmdcn_plugin import study
from mmdcn_plugin.study import (BASE_CONFIG, StudySetup, read_recipe)
from study_helpers import run_study


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


def test_run_overrides_load_configs_under_the_lock(monkeypatch):
    # MMEngine's Config.fromfile raced in two arm (b) runs started at once (--jobs 2): every
    # call from the study's recipe must hold the lock (checked inside the call itself, so
    # the test does not depend on two threads happening to overlap).
    from mmengine.config import Config
    from mmdcn_plugin.study import recipe as recipe_mod
    recipe = read_recipe(quick=True)   # reads the base config once, outside any run
    held, real = [], Config.fromfile

    def checking(path, *args, **kwargs):
        held.append(recipe_mod._CONFIG_LOCK.locked())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Config, 'fromfile', staticmethod(checking))
    recipe_mod.run_overrides(recipe, '/data', 0, 'b', offset_recipe='ramp')
    assert held and all(held)
