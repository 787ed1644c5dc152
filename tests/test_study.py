"""mmdcn_plugin.study and tools/study.py: schedule arithmetic, a one-run grid end to end
with resume, the committed report rebuilt from its own CSV, and (slow) the --quick grid."""
import csv
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmdcn_plugin import study
from mmdcn_plugin.study import StudySetup, build_report, make_grid

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
COMMITTED = osp.join(ROOT, 'docs', 'study')


def run_study(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'study.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def test_milestones_scale_the_quickstart_schedule():
    assert study.milestones(24) == [18, 22]
    assert study.milestones(12) == [9, 11]
    assert study.milestones(1) == [1]


def test_overrides_name_the_level_data_and_the_seed():
    opts = study.train_overrides('/d/strong', study.GRIDS['full'], seed=2)
    assert 'train_dataloader.dataset.data_root=/d/strong/' in opts
    assert 'val_evaluator.ann_file=/d/strong/annotations/val.json' in opts
    assert 'randomness.seed=2' in opts
    assert 'param_scheduler.1.milestones=[9,11]' in opts
    assert 'train_cfg.max_epochs=12' in opts
    # The recipe the committed results were trained with, not the quick-start's current one.
    assert 'model.backbone.init_cfg=None' in opts and 'param_scheduler.0.end=100' in opts


def test_every_variant_has_a_config():
    for variant in study.VARIANTS:
        assert osp.isfile(study.variant_config(variant)), variant
    with pytest.raises(ValueError, match=r"variant: expected one of \['baseline', .*got 'x'"):
        study.variant_config('x')


def test_make_grid_overrides_and_checks():
    grid = make_grid('quick', levels=['strong'], epochs=None)
    assert grid['levels'] == ('strong',) and grid['epochs'] == 1
    with pytest.raises(ValueError, match='--num-val must be >= 1, got 0'):
        make_grid('full', num_val=0)
    with pytest.raises(ValueError, match=r'--seeds must be non-negative, got \[0, -1\]'):
        make_grid('full', seeds=[0, -1])
    with pytest.raises(ValueError, match=r"overrides: expected keys among .*got \['lr'\]"):
        make_grid('full', lr=1)


def test_the_command_names_only_what_differs_from_the_grid(tmp_path):
    setup = StudySetup(grid=make_grid('quick', seeds=[0, 1]), grid_name='quick',
                       out_dir=str(tmp_path), docs_dir=str(tmp_path))
    assert setup.command() == 'python tools/study.py --quick --seeds 0 1'
    assert [r.name for r in setup.runs()][:2] == ['none/baseline/seed0', 'none/dcnv2/seed0']


@pytest.mark.parametrize('code, expected', [('raise SystemExit(3)', 3),
                                            ('import os; os.kill(os.getpid(), 9)', -9)])
def test_exit_code_of_a_wait_status(code, expected):
    """What os.waitstatus_to_exitcode gives on Python >= 3.9, on 3.8 too."""
    child = subprocess.Popen([sys.executable, '-c', code])
    _, status, _ = os.wait4(child.pid, 0)
    assert study.grid.exit_code(status) == expected
    if hasattr(os, 'waitstatus_to_exitcode'):
        assert os.waitstatus_to_exitcode(status) == expected


def test_bad_arguments_are_refused(tmp_path):
    rc, out = run_study('--quick', '--out-dir', str(tmp_path), '--epochs', '0')
    assert rc == 2 and '--epochs must be >= 1, got 0' in out
    rc, out = run_study('--quick', '--out-dir', str(tmp_path), '--report-only')
    assert rc != 0 and 'no finished run' in out


def test_a_dataset_of_another_size_is_refused_not_reused(tmp_path):
    root = tmp_path / 'data' / 'none'
    root.mkdir(parents=True)
    (root / 'study_spec.json').write_text(json.dumps(dict(
        level='none', num_train=8, num_val=4, seed=0, image_size=study.IMAGE_SIZE)))
    grid = dict(study.GRIDS['quick'], num_train=9)
    with pytest.raises(ValueError, match=r"expected .*'num_train': 9.* found .*'num_train': 8"):
        study.ensure_dataset(str(tmp_path), 'none', grid)


def _committed_results():
    """The committed runs, as result.json holds them, read back from results.csv."""
    ints = ('seed', 'iterations', 'epochs', 'num_train', 'num_val', 'threads')
    text = ('level', 'variant', 'config')
    with open(osp.join(COMMITTED, 'results.csv')) as f:
        return [{k: (v if k in text else None if v == '' else int(v) if k in ints
                     else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def test_the_committed_report_is_rebuilt_byte_for_byte(tmp_path):
    """The report code, fed the committed runs, writes the committed tables again."""
    summary = json.loads(open(osp.join(COMMITTED, 'summary.json')).read())
    keys = ('params', 'flops', 'offset_params', 'offset_flops', 'sampling_flops',
            'deformable_layers')
    (tmp_path / 'complexity.json').write_text(json.dumps(
        {v: {k: c[k] for k in keys} for v, c in summary['variants'].items()}))
    setup = StudySetup(grid=make_grid('full'), grid_name='full', out_dir=str(tmp_path),
                       docs_dir=str(tmp_path / 'docs'), jobs=summary['jobs'],
                       threads=summary['threads'])
    build_report(setup, _committed_results(), date=summary['date'],
                 machine=summary['machine'])
    for name in ('results.md', 'results.csv', 'summary.json'):
        assert (tmp_path / 'docs' / name).read_text() == \
            open(osp.join(COMMITTED, name)).read(), name
    assert (tmp_path / 'docs' / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def _check_report(docs, cells, variants):
    with open(docs / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted((r['level'], r['variant']) for r in rows) == sorted(cells)
    summary = json.loads((docs / 'summary.json').read_text())
    table = (docs / 'results.md').read_text()
    for variant in variants:
        assert study.variant_label(variant) in table
    assert (docs / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    return summary


def test_one_run_grid_end_to_end_and_resume(tmp_path):
    """The short schedule of every part: dataset, training, result, report, resume."""
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    args = ('--quick', '--levels', 'strong', '--variants', 'dcnv2', '--out-dir', str(out_dir),
            '--docs-dir', str(docs))
    rc, out = run_study(*args)
    assert rc == 0, out[-3000:]
    assert '1 to train' in out
    run = out_dir / 'runs' / 'strong' / 'dcnv2' / 'seed0'
    r = json.loads((run / 'result.json').read_text())
    assert 0.0 <= r['bbox_mAP'] <= 1.0 and r['iterations'] == 1
    assert r['train_iter_s'] > 0 and r['peak_rss_mb'] > 100
    summary = _check_report(docs, [('strong', 'dcnv2')], ['dcnv2'])
    assert summary['command'] == ('python tools/study.py --quick --levels strong '
                                  '--variants dcnv2')
    assert summary['variants']['dcnv2']['offset_params'] > 0
    assert summary['variants']['dcnv2']['offset_flops'] > 0

    # A run without its result (killed after its last checkpoint) is resumed, not
    # restarted: only it is trained, from its checkpoint.
    os.remove(run / 'result.json')
    rc, out = run_study(*args)
    assert rc == 0 and '1 to train' in out, out[-3000:]
    assert (run / 'result.json').is_file()
    log = (run / 'train.log').read_text()
    assert re.search(r'Auto resumed from the latest checkpoint \S*epoch_1\.pth', log), log[-2000:]

    # A finished run is never redone.
    stamp = (run / 'result.json').stat().st_mtime_ns
    rc, out = run_study(*args)
    assert rc == 0 and '0 to train' in out, out[-3000:]
    assert (run / 'result.json').stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    """The 4-run --quick grid, as `make study STUDY_ARGS=--quick` runs it."""
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    rc, out = run_study('--quick', '--out-dir', str(out_dir), '--docs-dir', str(docs))
    assert rc == 0, out[-3000:]
    assert '4 to train' in out
    assert len(list(out_dir.glob('runs/*/*/seed0/result.json'))) == 4
    cells = [(lv, v) for lv in ('none', 'strong') for v in ('baseline', 'dcnv2')]
    summary = _check_report(docs, cells, ['baseline', 'dcnv2'])
    assert '| none | strong |' in (docs / 'results.md').read_text()
    # The report names the command of the grid, not where this test put it.
    assert summary['command'] == 'python tools/study.py --quick'
    # The offset branch is counted for DCN and is empty for the plain baseline.
    assert summary['variants']['baseline']['offset_params'] == 0
    assert summary['variants']['dcnv2']['offset_params'] > 0
