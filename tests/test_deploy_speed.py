"""Inference timing (tools/benchmark.py infer, model --infer) on tiny shapes: it runs and
its rows add up; the numbers themselves are measured on a quiet machine, not here."""
import json
import os.path as osp

import pytest

from helpers import load_tool
from mmdcn_plugin.deploy import speed

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCN = osp.join(ROOT, 'configs', 'quickstart',
                     'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
TINY = {'tiny': (1, 8, 6, 7)}


def load_benchmark_tool():
    return load_tool('benchmark')


def test_infer_ops_rows_on_a_tiny_shape():
    pytest.importorskip('onnxruntime')
    rows = speed.run_infer_ops(['tiny'], threads=1, repeat=1, warmup=0, shape_table=TINY)
    by_name = {r['candidate']: r for r in rows}
    assert {'conv', 'ort:native', 'ort:gather', 'ort:conv'} <= set(by_name)
    assert any(name.startswith('plugin:') for name in by_name)
    assert by_name['conv']['vs_conv'] == 1.0
    assert all(r['shape'] == 'tiny' and r['nchw'] == '1x8x6x7' and r['mode'] == 'infer'
               for r in rows)
    # The onnxruntime candidates compute the same deformable convolution.
    assert by_name['ort:native']['max_abs_err'] < 1e-4
    assert by_name['ort:gather']['max_abs_err'] < 1e-4
    if 'mmcv' in by_name:
        assert by_name['mmcv']['max_abs_err'] < 1e-4
    table = speed.infer_table(rows, 'op')
    assert table.count('\n') == len(rows) + 1 and '| tiny 1,8,6,7 | ort:native |' in table


def test_infer_ops_rejects_unknown_shape():
    with pytest.raises(ValueError, match=r"shapes: expected names among \['c3', 'c4', 'c5'\], "
                                         r"got \['c9'\]"):
        speed.run_infer_ops(['c9'])


def test_model_infer_times_config_against_baseline():
    rows = speed.run_model_infer(QUICK_DCN, what='backbone+neck', shape=(64, 64), threads=1,
                                 repeat=1, warmup=0)
    assert [r['candidate'] for r in rows] == ['baseline', 'config']
    assert rows[0]['vs_conv'] == 1.0
    assert rows[1]['vs_conv'] == pytest.approx(rows[1]['median_ms'] / rows[0]['median_ms'],
                                               rel=0.05, abs=0.002)
    assert all(r['nchw'] == '1x3x64x64' and r['shape'] == 'backbone+neck' for r in rows)


def test_benchmark_tool_infer_and_model_infer(tmp_path, monkeypatch, capsys):
    pytest.importorskip('onnxruntime')
    tool = load_benchmark_tool()
    monkeypatch.setitem(speed.INFER_SHAPES, 'c3', TINY['tiny'])
    out = tmp_path / 'ops'
    assert tool.main(['infer', '--shapes', 'c3', '--threads', '1', '--repeat', '1',
                      '--warmup', '0', '--out-dir', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| c3 1,8,6,7 | ort:native |' in printed and '1 threads' in printed
    saved = json.loads((out / 'results.json').read_text())
    assert saved['kind'] == 'ops' and len(saved['rows']) >= 5

    out = tmp_path / 'model'
    assert tool.main(['model', QUICK_DCN, '--infer', '--shape', '64', '64', '--threads', '1',
                      '--repeat', '1', '--warmup', '0', '--out-dir', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '| backbone 1,3,64,64 | baseline |' in printed
    assert (out / 'results.png').exists()


def test_benchmark_tool_rejects_infer_options_without_infer(capsys):
    tool = load_benchmark_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['model', QUICK_DCN, '--also', QUICK_DCN, '--out-dir', 'x'])
    assert '--also and --what: expected with --infer only' in capsys.readouterr().err
