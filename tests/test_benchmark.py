"""mmdcn_plugin.benchmark and its command line, tools/benchmark.py, on tiny inputs.

Timings are faked where a number is asserted (the structure and the arithmetic of the
rows can fail; a speed target belongs in a benchmark run, not in a test)."""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from helpers import load_tool
from mmdcn_plugin.benchmark import (OP_SHAPES, SHAPE_PRESETS, expand_shapes, make_op_inputs,
                                    op_candidates, ops_summary, ops_table, resolve_config,
                                    run_model, run_ops, summarize_model_times, synthetic_batch)
from mmdcn_plugin.benchmark import ops as ops_module
from mmdcn_plugin.ops import backends

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.join(ROOT, 'tools', 'benchmark.py')
QUICK = osp.join(ROOT, 'configs', 'quickstart')
QUICK_DCN = osp.join(QUICK, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')


def _run(args, cwd, ok=True):
    # The installed package (no PYTHONPATH to the checkout): what a user's tool imports.
    proc = subprocess.run([sys.executable, BENCH, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def named(name, calls):
    """A candidate that records its name when called and returns its first input."""
    def fn(x, w, o, m):
        calls.append(name)
        return x
    return fn


def scripted_measure(seconds, calls):
    """run -> the next scripted seconds of the candidate the run just called."""
    used = {}

    def measure(run):
        run()
        name = calls[-1]
        used[name] = used.get(name, -1) + 1
        return seconds[name][used[name] % len(seconds[name])]
    return measure


def test_run_ops_interleaves_candidates_and_reports_medians_and_ratios():
    """Fake times: 'slow' takes 20 times as long as 'conv' in the median."""
    calls = []
    cands = {'conv': named('conv', calls), 'slow': named('slow', calls)}
    measure = scripted_measure({'conv': [0.002, 0.004, 0.003], 'slow': [0.03, 0.09, 0.06]},
                               calls)
    rows = run_ops(shapes=['c5'], repeat=3, warmup=0, available=cands, measure=measure)
    # Every repetition calls each candidate once, in turn (drift hits both alike).
    assert calls == ['conv', 'slow'] * 6
    assert [(r['mode'], r['candidate'], r['median_ms'], r['vs_conv']) for r in rows] == [
        ('fwd', 'conv', 3.0, 1.0), ('fwd', 'slow', 60.0, 20.0),
        ('fwd+bwd', 'conv', 3.0, 1.0), ('fwd+bwd', 'slow', 60.0, 20.0)]
    assert all(r['nchw'] == '2x512x13x21' and r['device'] == 'cpu' and r['dtype'] == 'float32'
               and r['tf32'] == 'n/a' for r in rows)


def test_a_failing_candidate_gets_an_error_row_and_the_others_go_on():
    calls = []

    def no_bf16(x, w, o, m):
        raise RuntimeError('"modulated_deform_im2col" not implemented for \'BFloat16\'')

    rows = run_ops(shapes=['c5'], repeat=2, warmup=1, measure=scripted_measure(
        {'conv': [0.001], 'plugin:x': [0.002]}, calls),
        available={'conv': named('conv', calls), 'mmcv': no_bf16,
                   'plugin:x': named('plugin:x', calls)})
    by = {(r['mode'], r['candidate']): r for r in rows}
    assert by[('fwd', 'mmcv')]['error'].startswith('RuntimeError: "modulated_deform_im2col"')
    assert 'median_ms' not in by[('fwd', 'mmcv')]
    assert by[('fwd+bwd', 'plugin:x')]['vs_conv'] == 2.0
    table = ops_table(rows)
    assert '| 2,512,13,21 | mmcv | failed: RuntimeError' in table
    assert '| 2,512,13,21 | plugin:x | 2.0 | 2.0x | 2.0 | 2.0x |' in table
    # A failed plain conv leaves nothing to compare with: that is an error.
    with pytest.raises(RuntimeError, match='the plain conv failed at c5 fwd'):
        run_ops(shapes=['c5'], repeat=1, warmup=0, available={'conv': no_bf16})


def test_run_ops_times_each_call_after_an_l2_flush_by_default(monkeypatch):
    """The candidates share their inputs, which fit in a GPU's L2: each timed call
    starts flushed (measure_for's flush_cache), so none finds the previous one's reads."""
    asked = []

    def measure_for(device, flush_cache=False):
        asked.append((device, flush_cache))
        return lambda run: (run(), 0.001)[1]
    monkeypatch.setattr(ops_module, 'measure_for', measure_for)
    rows = run_ops(shapes=['c5'], repeat=1, warmup=0, available={'conv': lambda *a: a[0]})
    assert asked == [('cpu', True)] and rows[0]['median_ms'] == 1.0


def test_run_ops_refuses_unknown_names_and_devices():
    with pytest.raises(ValueError, match=r"candidates: expected names among \['conv', "
                                         r"'slow'\], got \['nope'\]"):
        run_ops(candidates=['nope'], available={'conv': len, 'slow': len})
    with pytest.raises(ValueError, match=r"shapes: expected names among .* or presets "
                                         r"\['r50-c3c5', 'r50-c3c5-400x667'\], got \['c9'\]"):
        run_ops(shapes=['c9'])
    with pytest.raises(ValueError, match=r"dtype: expected one of .*, got 'int8'"):
        run_ops(dtype='int8')
    with pytest.raises(ValueError, match=r"available: expected a 'conv' candidate"):
        run_ops(available={'slow': len})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device: expected 'cpu' on this machine "
                                             r"\(no CUDA device\), got 'cuda'"):
            run_ops(device='cuda')


def test_shape_presets_are_resnet50_c3_c5_of_a_batch_2_800x1216_batch():
    assert expand_shapes(['r50-c3c5']) == ['c3-800x1216', 'c4-800x1216', 'c5-800x1216']
    # Strides 8, 16, 32 of 800x1216; 128, 256, 512 channels in the bottlenecks' conv2.
    assert [OP_SHAPES[s] for s in SHAPE_PRESETS['r50-c3c5']] == [
        (2, 128, 100, 152), (2, 256, 50, 76), (2, 512, 25, 38)]
    assert expand_shapes(['c5', 'r50-c3c5-400x667', 'c3']) == ['c5', 'c3', 'c4']


def test_op_inputs_are_seeded_on_the_cpu_and_optionally_leaves():
    a = make_op_inputs((1, 4, 5, 6), seed=3)
    b = make_op_inputs((1, 4, 5, 6), seed=3, requires_grad=False)
    assert [tuple(t.shape) for t in a] == [(1, 4, 5, 6), (4, 4, 3, 3), (1, 18, 5, 6),
                                           (1, 9, 5, 6)]
    assert all(t.requires_grad and t.is_leaf for t in a)
    assert not any(t.requires_grad for t in b)
    assert all(torch.equal(x.detach(), y) for x, y in zip(a, b))
    mask = a[3].detach()
    assert 0 <= float(mask.min()) and float(mask.max()) <= 1
    half = make_op_inputs((1, 4, 5, 6), dtype=torch.bfloat16, seed=3)
    assert all(t.dtype == torch.bfloat16 for t in half)


def test_candidates_follow_the_backend_table(monkeypatch):
    """Every backend of ours that runs on the device is a candidate; one added to the
    table (as the Triton backend is) appears by itself, one that does not run here not."""
    cands = op_candidates('cpu')
    runnable = [n for n in backends.BACKENDS
                if backends.BACKENDS[n].available()
                and (backends.BACKENDS[n].devices() is None
                     or 'cpu' in backends.BACKENDS[n].devices())]
    assert [k for k in cands if k.startswith('plugin:')] == [f'plugin:{n}' for n in runnable]
    assert 'conv' in cands and 'plugin:auto' not in cands  # on the CPU auto is cpp or fast
    assert ('mmcv' in cands) == backends.BACKENDS['mmcv'].available()
    assert ('torchvision' in cands) == (ops_module._torchvision_deform_conv2d() is not None)

    torch_fn = backends.BACKENDS['torch'].fn
    monkeypatch.setitem(backends.BACKENDS, 'newcomer',
                        backends.Backend(torch_fn, lambda: True, 'test'))
    monkeypatch.setitem(backends.BACKENDS, 'gpu-only',
                        backends.Backend(torch_fn, lambda: True, 'test', devices=lambda: ('cuda',)))
    cands = op_candidates('cpu')
    assert 'plugin:newcomer' in cands and 'plugin:gpu-only' not in cands
    # The candidates compute the same deformable convolution.
    x, w, o, m = make_op_inputs((1, 8, 6, 7), requires_grad=False, dtype=torch.float64)
    ref = cands['plugin:torch'](x, w, o, m)
    for name, fn in cands.items():
        if name != 'conv':
            assert torch.allclose(fn(x, w, o, m), ref, atol=1e-8), name


@pytest.fixture
def tf32_switches():
    """cuDNN's and the matmuls' TF32 switches, restored after the test (torch's
    ``matmul`` object takes no monkeypatch)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_tf32_is_stated_per_side_and_the_strict_switch_is_restored(tf32_switches):
    note = ops_module.tf32_note
    assert note('conv', 'cpu', 'float32') == 'n/a'
    assert note('mmcv', 'cuda', 'float16') == 'n/a'
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    assert note('conv', 'cuda', 'float32') == 'cudnn.allow_tf32=True'
    assert note('mmcv', 'cuda', 'float32') == 'matmul.allow_tf32=False'
    assert note('torchvision', 'cuda', 'float32') == 'matmul.allow_tf32=False'
    torch.backends.cuda.matmul.allow_tf32 = True
    assert note('plugin:fast', 'cuda', 'float32') == 'matmul.allow_tf32=True'
    # Triton's fp32 tl.dot follows the same matmul switch (launch.dot_precision).
    assert note('plugin:triton', 'cuda', 'float32') == 'matmul.allow_tf32=True'
    # strict_fp32_conv turns cuDNN's TF32 off while the candidates run, and back on after.
    seen = []

    def measure(run):
        seen.append(torch.backends.cudnn.allow_tf32)
        run()
        return 0.001
    run_ops(shapes=['c5'], repeat=1, warmup=0, available={'conv': lambda *a: a[0]},
            measure=measure, strict_fp32_conv=True)
    assert seen and not any(seen)
    assert torch.backends.cudnn.allow_tf32 is True


def test_summary_gives_the_ratio_to_mmcv_and_the_worst_shape():
    rows = [dict(shape=s, mode=mode, candidate=c, median_ms=ms)
            for mode in ('fwd', 'fwd+bwd')
            for s, c, ms in (('c3', 'mmcv', 1.0), ('c3', 'plugin:auto', 1.25),
                             ('c4', 'mmcv', 2.0), ('c4', 'plugin:auto', 2.0))]
    text = ops_summary(rows)
    assert text.splitlines()[0] == ("plugin:auto fwd: 0.89x faster than mmcv (geometric mean "
                                    "over shapes); its slowest shape, c3: 1.250x mmcv's time")
    assert ops_summary([r for r in rows if r['candidate'] != 'mmcv']) == ''
    # With each row's spread, the largest closes the summary, mmcv or not.
    for r, spread in zip(rows, (0.02, 0.31, 0.05, 0.0, 0.1, 0.1, 0.1, 0.1)):
        r['spread'] = spread
    noise = ("noise: a row's repetitions spread over at most 31 % of its median "
             "(plugin:auto, c3 fwd); a difference smaller than the rows' spread is not a "
             "result")
    assert ops_summary(rows).splitlines()[-1] == noise
    assert ops_summary([r for r in rows if r['candidate'] != 'mmcv']) == noise


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


def test_synthetic_batch_is_what_pack_det_inputs_makes():
    batch = synthetic_batch(2, (64, 96), boxes=3)
    assert [tuple(t.shape) for t in batch['inputs']] == [(3, 64, 96)] * 2
    assert all(t.dtype == torch.uint8 for t in batch['inputs'])
    sample = batch['data_samples'][1]
    assert sample.img_shape == (64, 96) and sample.scale_factor == (1.0, 1.0)
    boxes = sample.gt_instances.bboxes.tensor
    assert boxes.shape == (3, 4) and (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes[:, 0::2] <= 96).all() and (boxes[:, 1::2] <= 64).all()
    with pytest.raises(ValueError, match=r'batch_size: expected an int >= 1, got 0'):
        synthetic_batch(0, (64, 64))
    with pytest.raises(ValueError, match=r'shape: expected an image of at least 32x32'):
        synthetic_batch(1, (16, 64))


def test_config_paths_resolve_mmdet_configs_and_name_the_argument():
    path = resolve_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    assert osp.isfile(path) and path.endswith(osp.join('.mim', 'configs', 'faster_rcnn',
                                                       'faster-rcnn_r50_fpn_1x_coco.py'))
    with pytest.raises(FileNotFoundError, match=r"baseline: expected a config installed with "
                                                r"mmdet, got 'mmdet::nope.py'"):
        resolve_config('mmdet::nope.py', 'baseline')
    with pytest.raises(FileNotFoundError, match=r"config: expected an existing config file"):
        resolve_config('nope.py')


def test_run_model_times_every_variant_interleaved_on_a_synthetic_batch():
    """The quick-start detector, its baseline and its DCNv1 sibling, one train and
    test step each on a synthetic 64x64 batch, with fake times to check the rows."""
    order = []

    def measure(run):
        run()
        order.append(run)
        return 0.1 * len(order)

    also = osp.join(QUICK, 'faster-rcnn_r50-narrow-dcnv1-c3-c5_fpn_synthetic.py')
    rows = run_model(QUICK_DCN, also=[also], iters=1, warmup=0, synthetic=(64, 64),
                     measure=measure)
    assert [r['variant'] for r in rows] == ['baseline', 'config',
                                            'faster-rcnn_r50-narrow-dcnv1-c3-c5_fpn_synthetic']
    # Per variant a train step then a test step: 0.1 / 0.2, 0.3 / 0.4, 0.5 / 0.6 s.
    assert [r['train_iter_s'] for r in rows] == [0.1, 0.3, 0.5]
    assert [r['infer_images_per_s'] for r in rows] == [10.0, 5.0, round(2 / 0.6, 2)]
    assert [r['train_vs_baseline'] for r in rows] == [1.0, 3.0, 5.0]
    assert [r['deformable_layers'] for r in rows] == [0, 13, 13]
    assert rows[0]['config_path'].endswith('without its backbone DCN')
    assert all(r['device'] == 'cpu' and r['amp'] is False for r in rows)
    with pytest.raises(ValueError, match=r"amp: expected device 'cuda'"):
        run_model(QUICK_DCN, amp=True)


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
    # The conv's weight gradient alone is 512*512*9 floats, 9 MiB; the pure-PyTorch
    # backend also materialises the sampled columns: more memory than the conv.
    peak = {r['candidate']: r['peak_mb'] for r in rows if r['mode'] == 'fwd+bwd'}
    assert peak['plugin:torch'] > peak['conv'] >= 9.0, peak
    for name in ('results.csv', 'results.png'):
        assert (tmp_path / name).stat().st_size > 0


def test_cli_defaults_and_errors_name_the_argument(capsys):
    tool = load_tool('benchmark')
    assert tool.parse_args(['ops', '--out-dir', 'x']).shapes == ['c3', 'c4', 'c5']
    args = tool.parse_args(['ops', '--device', 'cuda', '--dtype', 'bfloat16', '--out-dir', 'x'])
    assert args.shapes == ['r50-c3c5'] and args.dtype == 'bfloat16'
    args = tool.parse_args(['model', 'c.py', '--device', 'cuda', '--amp', '--synthetic', '800',
                            '1216', '--also', 'a.py', 'b.py', '--out-dir', 'x'])
    assert (args.amp, args.synthetic, args.also) == (True, [800, 1216], ['a.py', 'b.py'])
    for argv, message in [
            (['ops', '--strict-fp32-conv', '--out-dir', 'x'],
             '--strict-fp32-conv: expected with --device cuda --dtype float32, got --device cpu'),
            (['ops', '--repeat', '0', '--out-dir', 'x'], '--repeat: expected >= 1, got 0'),
            (['ops', '--warmup', '-1', '--out-dir', 'x'], '--warmup: expected >= 0, got -1'),
            (['model', 'c.py', '--amp', '--out-dir', 'x'],
             '--amp: expected with --device cuda, got --device cpu'),
            (['model', 'c.py', '--synthetic', '8', '8', '--out-dir', 'x'],
             '--synthetic: expected H and W >= 32, got [8, 8]'),
            (['model', 'c.py', '--infer', '--device', 'cuda', '--out-dir', 'x'],
             '--device, --amp, --synthetic: expected without --infer')]:
        with pytest.raises(SystemExit):
            tool.parse_args(argv)
        assert message in capsys.readouterr().err, argv


def test_model_benchmark_against_its_baseline(tmp_path):
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_coco.py'),
                    '--out-dir', str(tmp_path / 'data'), '--num-train', '4', '--num-val', '1',
                    '--no-progress'], check=True, capture_output=True)
    out = _run(['model', QUICK_DCN, '--iters', '1', '--warmup', '0', '--out-dir',
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
                 '--synthetic', '64', '64', '--out-dir', str(tmp_path)], tmp_path, ok=False)
    assert proc.returncode == 1
    assert 'model.backbone.dcn is set, got backbone.dcn=None' in proc.stderr, proc.stderr[-2000:]


def test_overhead_rows_and_the_noop_backend_leaves_no_trace():
    from mmdcn_plugin.benchmark import overhead
    rows = overhead.run_overhead(number=3, rounds=2)
    names = [r['row'] for r in rows]
    assert names[-2:] == ['deform_conv2d() (auto)', 'dispatch only']
    assert ('mmcv raw' in names) == backends.BACKENDS['mmcv'].available()
    assert all(r['us_per_call'] > 0 and r['device'] == 'cpu' for r in rows)
    if 'mmcv raw' in names:
        raw = rows[names.index('mmcv raw')]['us_per_call']
        for r in rows:
            assert r['vs_mmcv_raw'] == pytest.approx(r['us_per_call'] / raw, abs=0.01)
    assert overhead.NOOP_BACKEND not in backends.BACKENDS
    # The no-op backend really is a no-op: the wrapper returns the input.
    with overhead.noop_backend() as name:
        x, w, o, m = make_op_inputs((1, 4, 5, 5), requires_grad=False)
        from mmdcn_plugin.ops import deform_conv2d
        assert deform_conv2d(x, o, w, None, 1, 1, 1, m, backend=name) is x
    assert overhead.NOOP_BACKEND not in backends.BACKENDS
    with pytest.raises(ValueError, match=r'number: expected an int >= 1, got 0'):
        overhead.run_overhead(number=0)
    table = overhead.overhead_table(rows)
    assert table.count('\n') == len(rows) + 1 and '| dispatch only |' in table


def test_overhead_backward_rows_time_forward_and_backward(monkeypatch):
    """With backward=True every row runs once more in a forward+backward mode, whose
    runs call .backward() and whose ratios are to that mode's raw mmcv row."""
    from mmdcn_plugin.benchmark import overhead
    real_backward = torch.Tensor.backward
    calls = []

    def counted(self, *args, **kwargs):
        calls.append(tuple(self.shape))
        return real_backward(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, 'backward', counted)
    with overhead.noop_backend():
        runs = overhead.overhead_runs('cpu', (1, 4, 5, 5), backward=True)
        for run in runs.values():
            run()
    assert calls == [(1, 4, 5, 5)] * len(runs)
    calls.clear()
    with overhead.noop_backend():
        for run in overhead.overhead_runs('cpu', (1, 4, 5, 5)).values():
            run()
    assert calls == []

    rows = overhead.run_overhead(number=2, rounds=1, backward=True)
    half = len(rows) // 2
    assert [r['mode'] for r in rows] == ['forward'] * half + ['forward+backward'] * half
    assert [r['row'] for r in rows[:half]] == [r['row'] for r in rows[half:]]
    for part in (rows[:half], rows[half:]):
        if part[0]['row'] == 'mmcv raw':
            assert part[0]['vs_mmcv_raw'] == 1.0
    assert '| forward+backward |' in overhead.overhead_table(rows)


def test_outputs_without_matplotlib_keep_the_numbers(tmp_path, monkeypatch):
    """The lent GPU machine may have no matplotlib: the JSON and CSV are still written."""
    import builtins

    from mmdcn_plugin.benchmark import write_outputs
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith('matplotlib'):
            raise ImportError('No module named matplotlib')
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_matplotlib)
    rows = [dict(row='dispatch only', device='cpu', us_per_call=5.0)]
    paths = write_outputs(rows, str(tmp_path), 'overhead', 'machine')
    assert [osp.basename(p) for p in paths] == ['results.json', 'results.csv']
    assert json.load(open(paths[0]))['rows'] == rows
    assert not (tmp_path / 'results.png').exists()


def test_mmcv_is_not_called_in_a_dtype_it_has_no_kernels_for():
    """With the source-built mmcv of issue 24 the error mmcv would raise for bfloat16
    can end the process: the candidate is not called, and its row says why."""
    calls = []
    rows = run_ops(shapes=['c5'], dtype='bfloat16', repeat=1, warmup=0,
                   measure=scripted_measure({'conv': [0.001]}, calls),
                   available={'conv': named('conv', calls), 'mmcv': named('mmcv', calls)})
    assert 'mmcv' not in calls
    mmcv_rows = [r for r in rows if r['candidate'] == 'mmcv']
    assert len(mmcv_rows) == 2 and all('not called' in r['error'] for r in mmcv_rows)
    assert all(r['dtype'] == 'bfloat16' for r in rows)
