"""tools/benchmark.py runs on tiny inputs and writes its files."""
import json
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'tools', 'benchmark.py')


def _run(args, cwd):
    proc = subprocess.run([sys.executable, BENCH, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def test_ops_benchmark_writes_table_csv_json_png(tmp_path):
    out, err = _run(['ops', '--shapes', 'c5', '--repeat', '2', '--warmup', '0', '--memory',
                     '--candidates', 'plugin:fast', 'plugin:torch', '--out-dir',
                     str(tmp_path)], tmp_path)
    assert '| 2,512,13,21 | conv |' in out and '| 2,512,13,21 | plugin:fast |' in out
    assert 'repetition 2/2' in err  # progress
    rows = json.load(open(tmp_path / 'results.json'))['rows']
    assert {r['candidate'] for r in rows} == {'conv', 'plugin:fast', 'plugin:torch'}
    assert all(r['median_ms'] > 0 and r['peak_mb'] >= 0 for r in rows)
    conv = [r for r in rows if r['candidate'] == 'conv']
    assert all(r['vs_conv'] == 1.0 for r in conv)
    for name in ('results.csv', 'results.png'):
        assert (tmp_path / name).stat().st_size > 0


def test_model_benchmark_against_its_baseline(tmp_path):
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_coco.py'),
                    '--out-dir', str(tmp_path / 'data'), '--num-train', '4', '--num-val', '1',
                    '--no-progress'], check=True, capture_output=True)
    config = osp.join(ROOT, 'configs', 'quickstart',
                      'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
    out, _ = _run(['model', config, '--iters', '1', '--warmup', '0', '--out-dir',
                   str(tmp_path / 'out'), '--cfg-options',
                   f'train_dataloader.dataset.data_root={tmp_path}/data/'], tmp_path)
    assert '| baseline |' in out and '| config |' in out
    rows = json.load(open(tmp_path / 'out' / 'results.json'))['rows']
    assert [r['variant'] for r in rows] == ['baseline', 'config']
    assert rows[0]['train_vs_baseline'] == 1.0 and rows[1]['train_iter_s'] > 0
