"""mmdcn_plugin.benchmark and its command line, tools/benchmark.py, on tiny inputs."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmdcn_plugin.benchmark import run_ops, summarize_model_times

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'tools', 'benchmark.py')
QUICK = osp.join(ROOT, 'configs', 'quickstart')


def _run(args, cwd, ok=True):
    proc = subprocess.run([sys.executable, BENCH, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def noop(x, w, o, m):
    return x


def test_run_ops_interleaves_candidates_and_reports_medians_and_ratios():
    """A fake timer: 'slow' takes 20 times as long as 'conv' in the median."""
    seconds = {'conv': [0.002, 0.004, 0.003], 'slow': [0.03, 0.09, 0.06]}
    calls = []

    def timer(fn, inputs, mode, device):
        name = 'conv' if fn is conv else 'slow'
        calls.append((mode, name))
        return seconds[name][sum(c == (mode, name) for c in calls) - 1]

    conv, slow = (lambda *a: noop(*a)), (lambda *a: noop(*a))
    rows = run_ops(shapes=['c5'], repeat=3, warmup=0, available={'conv': conv, 'slow': slow},
                   timer=timer)
    # Every repetition times each candidate once, in turn (drift hits both alike).
    assert calls == [('fwd', 'conv'), ('fwd', 'slow')] * 3 + \
        [('fwd+bwd', 'conv'), ('fwd+bwd', 'slow')] * 3
    assert [(r['mode'], r['candidate'], r['median_ms'], r['vs_conv']) for r in rows] == [
        ('fwd', 'conv', 3.0, 1.0), ('fwd', 'slow', 60.0, 20.0),
        ('fwd+bwd', 'conv', 3.0, 1.0), ('fwd+bwd', 'slow', 60.0, 20.0)]
    assert all(r['nchw'] == '2x512x13x21' for r in rows)


def test_run_ops_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"candidates: expected names among \['conv', "
                                         r"'slow'\], got \['nope'\]"):
        run_ops(candidates=['nope'], available={'conv': noop, 'slow': noop})
    with pytest.raises(ValueError, match=r"shapes: expected names among .*got \['c9'\]"):
        run_ops(shapes=['c9'])


def test_model_rows_are_medians_relative_to_the_first_variant():
    rows = summarize_model_times(train={'baseline': [1.0, 2.0, 3.0], 'config': [3.0, 4.0, 30.0]},
                                 infer={'baseline': [0.5, 0.5, 1.0], 'config': [1.0, 1.0, 1.0]},
                                 batch_size=2)
    assert rows == [
        dict(variant='baseline', train_iter_s=2.0, infer_images_per_s=4.0,
             train_vs_baseline=1.0),
        dict(variant='config', train_iter_s=4.0, infer_images_per_s=2.0,
             train_vs_baseline=2.0)]
    with pytest.raises(ValueError, match=r"expected the same non-empty variants, got "
                                         r"\['a'\] and \['b'\]"):
        summarize_model_times({'a': [1.0]}, {'b': [1.0]}, 1)


def test_ops_cli_writes_table_csv_json_png_and_peak_memory(tmp_path):
    proc = _run(['ops', '--shapes', 'c5', '--repeat', '2', '--warmup', '0', '--memory',
                 '--candidates', 'plugin:fast', 'plugin:torch', '--out-dir', str(tmp_path)],
                tmp_path)
    out, err = proc.stdout, proc.stderr
    assert '| 2,512,13,21 | conv |' in out and '| 2,512,13,21 | plugin:fast |' in out
    assert 'repetition 2/2' in err  # progress
    rows = json.load(open(tmp_path / 'results.json'))['rows']
    assert {r['candidate'] for r in rows} == {'conv', 'plugin:fast', 'plugin:torch'}
    assert all(r['median_ms'] > 0 for r in rows)
    # The pure-PyTorch backend materialises the sampled columns: more memory than the conv.
    peak = {r['candidate']: r['peak_mb'] for r in rows if r['mode'] == 'fwd+bwd'}
    assert peak['plugin:torch'] > peak['conv'] >= 0, peak
    for name in ('results.csv', 'results.png'):
        assert (tmp_path / name).stat().st_size > 0


def test_model_benchmark_against_its_baseline(tmp_path):
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_coco.py'),
                    '--out-dir', str(tmp_path / 'data'), '--num-train', '4', '--num-val', '1',
                    '--no-progress'], check=True, capture_output=True)
    config = osp.join(QUICK, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
    out = _run(['model', config, '--iters', '1', '--warmup', '0', '--out-dir',
                str(tmp_path / 'out'), '--cfg-options',
                f'train_dataloader.dataset.data_root={tmp_path}/data/'], tmp_path).stdout
    assert '| baseline |' in out and '| config |' in out
    rows = json.load(open(tmp_path / 'out' / 'results.json'))['rows']
    base, dcn = rows
    assert (base['variant'], dcn['variant']) == ('baseline', 'config')
    # The baseline is the config without its deformable layers (c3-c5: 4 + 6 + 3 blocks),
    # so it has fewer parameters: the offset heads.
    assert (base['deformable_layers'], dcn['deformable_layers']) == (0, 13)
    assert dcn['params'] > base['params']
    assert dcn['train_iter_s'] > 0 and dcn['infer_images_per_s'] > 0


def test_model_benchmark_without_dcn_asks_for_a_baseline(tmp_path):
    proc = _run(['model', osp.join(QUICK, 'faster-rcnn_r50-narrow_fpn_synthetic.py'),
                 '--out-dir', str(tmp_path)], tmp_path, ok=False)
    assert proc.returncode == 1
    assert 'model.backbone.dcn is set, got backbone.dcn=None' in proc.stderr, proc.stderr[-2000:]
