"""Inference timing (tools/benchmark.py infer, model --infer; mmdcn_plugin.benchmark.infer,
formerly mmdcn_plugin.deploy.speed) on tiny shapes.

Where numbers are asserted the clock is faked, so the rows' arithmetic is what is
tested; real timings belong in a benchmark run on a quiet machine."""
import json
import os.path as osp

import pytest
import torch

from helpers import load_tool
from mmdcn_plugin.benchmark import infer

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCN = osp.join(ROOT, 'configs', 'quickstart',
                     'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
TINY = {'tiny': (1, 8, 6, 7)}


def load_benchmark_tool():
    return load_tool('benchmark')


def tensor_runners(shape, threads, workdir):
    """Fake candidates whose outputs are one-element tensors: 0 (conv), 1 (the
    plugin), 3 (onnxruntime; so 2 off the plugin)."""
    assert (shape, threads) == (TINY['tiny'], 1) and osp.isdir(workdir)
    return {name: (lambda v=v: torch.full((1,), v))
            for name, v in (('conv', 0.0), ('plugin:fast', 1.0), ('ort:native', 3.0))}


def test_infer_rows_are_medians_and_ratios_of_the_measured_times():
    seconds = {0.0: [0.002, 0.003, 0.001], 1.0: [0.006], 3.0: [0.0045, 0.5, 0.004]}
    used = {}

    def measure(run):
        value = float(run()[0])
        used[value] = used.get(value, -1) + 1
        return seconds[value][used[value] % len(seconds[value])]

    rows = infer.run_infer_ops(['tiny'], threads=1, repeat=3, warmup=0, shape_table=TINY,
                               candidates=tensor_runners, measure=measure)
    assert [(r['candidate'], r['median_ms'], r['vs_conv']) for r in rows] == [
        ('conv', 2.0, 1.0), ('plugin:fast', 6.0, 3.0), ('ort:native', 4.5, 2.25)]
    assert all(r['shape'] == 'tiny' and r['nchw'] == '1x8x6x7' and r['mode'] == 'infer'
               for r in rows)
    # Errors are measured against the first plugin runner; the conv is not compared.
    by = {r['candidate']: r for r in rows}
    assert by['conv']['max_abs_err'] == '' and by['plugin:fast']['max_abs_err'] == 0.0
    assert by['ort:native']['max_abs_err'] == 2.0


def test_infer_needs_a_conv_and_a_plugin_runner():
    with pytest.raises(ValueError, match=r"candidates: expected 'conv' and a 'plugin:' runner, "
                                         r"got \['conv', 'ort:native'\]"):
        infer.run_infer_ops(['tiny'], threads=1, repeat=1, warmup=0, shape_table=TINY,
                            candidates=lambda *a: {'conv': lambda: 0, 'ort:native': lambda: 0})


def test_real_candidates_compute_the_same_convolution():
    """Every deformable candidate (the plugin's, mmcv's, onnxruntime's) agrees with the
    plugin within float32 rounding; a wrong one would show a large error."""
    pytest.importorskip('onnxruntime')
    rows = infer.run_infer_ops(['tiny'], threads=1, repeat=1, warmup=0, shape_table=TINY)
    by_name = {r['candidate']: r for r in rows}
    assert {'conv', 'ort:native', 'ort:gather', 'ort:conv'} <= set(by_name)
    assert any(name.startswith('plugin:') for name in by_name)
    for name in ('ort:native', 'ort:gather', 'mmcv'):
        if name in by_name:
            assert by_name[name]['max_abs_err'] < 1e-4, name
    table = infer.infer_table(rows, 'op')
    assert table.count('\n') == len(rows) + 1 and '| tiny 1,8,6,7 | ort:native |' in table


def test_max_abs_errors_finds_a_wrong_runner():
    ref = torch.arange(6.0)
    errors = infer.max_abs_errors({'conv': lambda: ref * 9, 'plugin:x': lambda: ref,
                                   'bad': lambda: ref + 0.5}, 'plugin:x')
    assert errors == {'plugin:x': 0.0, 'bad': 0.5}
    with pytest.raises(ValueError, match=r"reference: expected one of .*, got 'nope'"):
        infer.max_abs_errors({'conv': lambda: ref}, 'nope')


def test_infer_ops_rejects_unknown_shape():
    with pytest.raises(ValueError, match=r"shapes: expected names among \['c3', 'c4', 'c5'\], "
                                         r"got \['c9'\]"):
        infer.run_infer_ops(['c9'])


def test_model_infer_times_config_against_baseline_in_interleaved_rounds():
    calls = []

    def measure(run):
        calls.append(run)
        return 0.010 if len(calls) % 2 else 0.025  # baseline, then config, each round

    rows = infer.run_model_infer(QUICK_DCN, what='backbone+neck', shape=(64, 64), threads=1,
                                 repeat=3, warmup=0, measure=measure)
    assert len(calls) == 6
    assert [(r['candidate'], r['median_ms'], r['vs_conv']) for r in rows] == [
        ('baseline', 10.0, 1.0), ('config', 25.0, 2.5)]
    assert all(r['nchw'] == '1x3x64x64' and r['shape'] == 'backbone+neck' for r in rows)


def test_old_import_paths_still_work():
    """deploy.speed moved to benchmark.infer; what users imported from deploy stays."""
    import mmdcn_plugin.deploy as deploy
    from mmdcn_plugin.deploy import speed
    for name in ('INFER_SHAPES', 'infer_table', 'run_infer_ops', 'run_model_infer'):
        assert getattr(deploy, name) is getattr(infer, name)
        assert getattr(speed, name) is getattr(infer, name)
    x, weight, offset, mask = speed.op_inputs((1, 4, 5, 6))
    assert not x.requires_grad and offset.shape == (1, 18, 5, 6)
    assert speed.op_candidates is infer.infer_candidates
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        deploy.nope


def test_benchmark_tool_infer_and_model_infer(tmp_path, monkeypatch, capsys):
    pytest.importorskip('onnxruntime')
    tool = load_benchmark_tool()
    monkeypatch.setitem(infer.INFER_SHAPES, 'c3', TINY['tiny'])
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


def test_benchmark_tool_rejects_what_without_infer(capsys):
    tool = load_benchmark_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(['model', QUICK_DCN, '--what', 'backbone+neck', '--out-dir', 'x'])
    assert '--what: expected with --infer only' in capsys.readouterr().err
