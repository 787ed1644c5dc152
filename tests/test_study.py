"""tools/study.py: the --quick grid end to end, resume, and the schedule arithmetic."""
import csv
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import study  # noqa: E402


def run_study(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'study.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
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


def test_every_variant_has_a_config():
    for config, _ in study.VARIANTS.values():
        assert osp.isfile(osp.join(study.QUICKSTART, config)), config


def test_bad_arguments_are_refused(tmp_path):
    rc, out = run_study('--quick', '--out-dir', str(tmp_path), '--epochs', '0')
    assert rc == 2 and '--epochs must be >= 1, got 0' in out
    rc, out = run_study('--quick', '--out-dir', str(tmp_path), '--report-only')
    assert rc != 0 and 'no finished run' in out


def test_quick_study_end_to_end_and_resume(tmp_path):
    out_dir, docs = tmp_path / 'study', tmp_path / 'docs'
    rc, out = run_study('--quick', '--out-dir', str(out_dir), '--docs-dir', str(docs))
    assert rc == 0, out[-3000:]
    assert '4 to train' in out
    results = list(out_dir.glob('runs/*/*/seed0/result.json'))
    assert len(results) == 4
    for path in results:
        r = json.loads(path.read_text())
        assert 0.0 <= r['bbox_mAP'] <= 1.0 and r['iterations'] == 1
        assert r['train_iter_s'] > 0 and r['peak_rss_mb'] > 100

    table = (docs / 'results.md').read_text()
    for label in ('plain conv (baseline)', 'DCNv2, ConvOffsetHead', '| none | strong |'):
        assert label in table
    with open(docs / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted((r['level'], r['variant']) for r in rows) == [
        ('none', 'baseline'), ('none', 'dcnv2'), ('strong', 'baseline'), ('strong', 'dcnv2')]
    summary = json.loads((docs / 'summary.json').read_text())
    # The report names the command of the grid, not where this test put it.
    assert summary['command'] == 'python tools/study.py --quick'
    # The offset branch is counted for DCN and is empty for the plain baseline.
    assert summary['variants']['baseline']['offset_params'] == 0
    assert summary['variants']['dcnv2']['offset_params'] > 0
    assert summary['variants']['dcnv2']['offset_flops'] > 0
    assert (docs / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    # Finished runs are never redone.
    stamps = {p: p.stat().st_mtime_ns for p in results}
    rc, out = run_study('--quick', '--out-dir', str(out_dir), '--docs-dir', str(docs))
    assert rc == 0 and '0 to train' in out, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in results} == stamps

    # A run without its result (killed after its last checkpoint) is resumed, not
    # restarted: only it is trained, from its checkpoint.
    lost = out_dir / 'runs' / 'strong' / 'dcnv2' / 'seed0'
    os.remove(lost / 'result.json')
    rc, out = run_study('--quick', '--out-dir', str(out_dir), '--docs-dir', str(docs))
    assert rc == 0 and '1 to train' in out, out[-3000:]
    assert (lost / 'result.json').is_file()
    log = (lost / 'train.log').read_text()
    assert re.search(r'Auto resumed from the latest checkpoint \S*epoch_1\.pth', log), log[-2000:]


def test_a_dataset_of_another_size_is_refused_not_reused(tmp_path):
    root = tmp_path / 'data' / 'none'
    root.mkdir(parents=True)
    (root / 'study_spec.json').write_text(json.dumps(dict(
        level='none', num_train=8, num_val=4, seed=0, image_size=study.IMAGE_SIZE)))
    grid = dict(study.GRIDS['quick'], num_train=9)
    with pytest.raises(SystemExit, match=r"expected .*'num_train': 9.* found .*'num_train': 8"):
        study.ensure_dataset(str(tmp_path), 'none', grid)
