"""The op's floor on a machine (mmdcn_plugin.benchmark.floor) and where it shows:
the op benchmark's rows and table, and ``tools/benchmark.py floor``."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from helpers import load_tool
from mmdcn_plugin.benchmark import OP_SHAPES, ops_table, run_ops
from mmdcn_plugin.benchmark.floor import (Ceilings, add_floors, ceiling_keys, floor_rows,
                                          floor_seconds, matmul_key, measure_ceilings, op_work,
                                          parse_ceilings)
from mmdcn_plugin.utils.tf32 import matmul_tf32, matmul_tf32_set


def test_work_of_a_tiny_layer_counted_by_hand():
    # N=1, C=2, 3x4: 12 positions, 216 sampled values; x and out 24, weight 36, offset
    # and mask 27 * 12 elements.
    assert op_work((1, 2, 3, 4), 'fwd', False, 4) == dict(
        matmul_flops=864, bilinear_flops=0, bytes=(24 + 36 + 24) * 4)
    assert op_work((1, 2, 3, 4), 'fwd', True, 2) == dict(
        matmul_flops=864, bilinear_flops=8 * 216, bytes=(24 + 36 + 324 + 24) * 2)
    assert op_work((1, 2, 3, 4), 'fwd+bwd', True, 2) == dict(
        matmul_flops=3 * 864, bilinear_flops=27 * 216, bytes=2 * (24 + 36 + 324 + 24) * 2)
    with pytest.raises(ValueError, match=r"mode: expected one of \['fwd', 'fwd\+bwd'\], "
                                         r"got 'bwd'"):
        op_work((1, 2, 3, 4), 'bwd', True, 4)


@pytest.mark.parametrize('name', ['c5', 'c3-800x1216'])
def test_matmul_flops_agree_with_torchs_flop_counter_for_the_conv(name):
    """The GEMM of a DCNv2 layer is that of the 3x3 conv of the same shape: torch's own
    count of the conv's forward, and of its forward with the backward of x and the
    weight, must be ours."""
    n, c, h, w = OP_SHAPES[name]
    x = torch.randn(n, c, h, w, device='meta', requires_grad=True)
    weight = torch.randn(c, c, 3, 3, device='meta', requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        F.conv2d(x, weight, None, 1, 1)
    with FlopCounterMode(display=False) as both:
        F.conv2d(x, weight, None, 1, 1).sum().backward()
    assert op_work((n, c, h, w), 'fwd', True, 4)['matmul_flops'] == fwd.get_total_flops()
    assert op_work((n, c, h, w), 'fwd+bwd', True, 4)['matmul_flops'] == both.get_total_flops()


def test_the_floor_is_the_largest_time_and_says_what_sets_it():
    work = dict(matmul_flops=4e9, bilinear_flops=1e9, bytes=3e6)
    fast = Ceilings(memory=1e12, matmul={'bfloat16': 1e15, 'float32': 1e13})
    assert floor_seconds(work, 'bfloat16', fast) == pytest.approx((1e-4, 'bilinear'))
    slow_memory = Ceilings(memory=1e9, matmul={'bfloat16': 1e15, 'float32': 1e13})
    assert floor_seconds(work, 'bfloat16', slow_memory) == pytest.approx((3e-3, 'memory'))
    assert floor_seconds(work, 'float32', fast) == pytest.approx((4e-4, 'matmul'))
    with pytest.raises(ValueError, match=r"ceilings: expected a 'tf32' matmul rate, got "
                                         r"\['bfloat16', 'float32'\]"):
        floor_seconds(work, 'tf32', fast)


def test_float32_is_held_to_the_rate_its_tf32_switch_allowed():
    assert matmul_key('float32', 'cudnn.allow_tf32=True') == 'tf32'
    assert matmul_key('float32', 'matmul.allow_tf32=False') == 'float32'
    assert matmul_key('float32', 'n/a') == 'float32'
    assert matmul_key('bfloat16', 'n/a') == 'bfloat16'
    assert ceiling_keys('float32') == ['tf32', 'float32']
    assert ceiling_keys('float16') == ['float16', 'float32']
    with pytest.raises(ValueError, match=r"dtype: expected one of .*, got 'int8'"):
        matmul_key('int8', 'n/a')


def test_rows_of_the_op_benchmark_get_their_floor_and_the_table_shows_it():
    """Fake times against given ceilings: c5 forward is 2*9*546*512*512 = 2.576 GFLOP
    of matmul, 2.576 ms at 1 TFLOP/s; the failed candidate keeps its error row."""
    def fails(*args):
        raise RuntimeError('no kernel')

    times = iter([0.002, 0.005, 0.004, 0.010, 0.003, 0.005] * 2)

    def measure(run):
        run()
        return next(times)

    ceilings = Ceilings(memory=1e12, matmul={'float32': 1e12})
    rows = run_ops(shapes=['c5'], repeat=3, warmup=0, ceilings=ceilings,
                   available={'conv': lambda *a: a[0], 'plugin:x': lambda *a: a[0],
                              'mmcv': fails},
                   measure=measure)
    by = {(r['mode'], r['candidate']): r for r in rows}
    conv, x = by[('fwd', 'conv')], by[('fwd', 'plugin:x')]
    assert conv['median_ms'] == 3.0 and x['median_ms'] == 5.0
    assert conv['floor_ms'] == x['floor_ms'] == 2.5764 and conv['bound'] == 'matmul'
    assert (conv['vs_floor'], x['vs_floor']) == (1.16, 1.94)
    assert by[('fwd+bwd', 'plugin:x')]['floor_ms'] == 7.7291
    # (slowest - fastest) / median of the three repetitions
    assert (conv['spread'], x['spread']) == (pytest.approx(2 / 3, abs=1e-3), 1.0)
    assert 'floor_ms' not in by[('fwd', 'mmcv')]
    table = ops_table(rows)
    assert table.splitlines()[0].endswith('| floor ms fwd / fwd+bwd | x floor fwd / fwd+bwd |')
    assert '| plugin:x | 5.0 | 1.667x | 5.0 | 1.667x | 2.5764 (matmul) / 7.7291 (matmul) | ' \
           '1.94x / 0.65x |' in table
    assert '| mmcv | failed: RuntimeError: no kernel | - |' in table
    assert 'floor' not in ops_table([{k: v for k, v in r.items()
                                      if k not in ('floor_ms', 'vs_floor', 'bound')}
                                     for r in rows])


def test_add_floors_uses_each_rows_tf32_note():
    rows = [dict(nchw='2x512x13x21', mode='fwd', candidate=c, dtype='float32', tf32=note,
                 median_ms=1.0)
            for c, note in (('conv', 'cudnn.allow_tf32=True'),
                            ('mmcv', 'matmul.allow_tf32=False'))]
    add_floors(rows, Ceilings(memory=1e15, matmul={'tf32': 8e12, 'float32': 1e12}))
    assert [r['floor_ms'] for r in rows] == [0.322, 2.5764]


def test_ceilings_are_measured_on_random_data_with_each_precision_switch():
    """On the CPU, tiny: every matmul key is timed once with TF32 allowed exactly for
    'tf32', and each rate is 2 n**3 over the fastest repetition."""
    seen = []
    times = iter([0.5, 0.25, 0.4] + [0.2, 0.1, 0.3] * 2)

    def measure(run):
        out = run()
        seen.append((matmul_tf32(), out.shape, bool(out.abs().sum() > 0)))
        return next(times)
    before = matmul_tf32()
    got = measure_ceilings('cpu', ['tf32', 'float32'], n=4, copy_elements=1000, repeat=2,
                           warmup=1, measure=measure)
    assert got.memory == 2 * 1000 * 4 / 0.25
    assert got.matmul == {'tf32': 2 * 64 / 0.1, 'float32': 2 * 64 / 0.1}
    assert [s[0] for s in seen] == [before] * 3 + [True] * 3 + [False] * 3
    assert seen[0][1] == (1000,) and seen[3][1] == (4, 4) and all(s[2] for s in seen)
    assert matmul_tf32() is before
    assert got.source == 'measured on cpu, n=4'
    with pytest.raises(ValueError, match=r"keys: expected names among .*, got \['int8'\]"):
        measure_ceilings('cpu', ['int8'])


def test_measured_ceilings_on_this_cpu_are_positive_and_describe_themselves():
    got = measure_ceilings('cpu', ['float32', 'bfloat16'], n=64, copy_elements=2 ** 16,
                           repeat=1, warmup=0)
    assert got.memory > 0 and set(got.matmul) == {'float32', 'bfloat16'}
    assert all(v > 0 for v in got.matmul.values())
    assert got.describe().startswith('ceilings (measured on cpu, n=64): memory ')


def test_given_ceilings_are_parsed_and_refused_when_malformed():
    got = parse_ceilings(['memory=3.0', 'bfloat16=798', 'float32=51'])
    assert got == Ceilings(3e12, {'bfloat16': 798e12, 'float32': 51e12}, 'given')
    for bad in (['bfloat16=798'], ['memory=3', 'int8=1'], ['memory=x'], ['memory=-1'],
                ['memory']):
        with pytest.raises(ValueError, match='ceilings: expected'):
            parse_ceilings(bad)


def test_floor_rows_hold_each_side_of_float32_to_its_own_switch():
    ceilings = Ceilings(memory=3e12, matmul={'tf32': 4e14, 'float32': 5e13})
    with matmul_tf32_set(False):
        rows = floor_rows(['c3-800x1216'], 'float32', ceilings, 'cuda')
    fwd = {r['candidate']: r for r in rows if r['mode'] == 'fwd'}
    assert fwd['conv']['tf32'] == f'cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}'
    assert fwd['deformable']['tf32'] == 'matmul.allow_tf32=False'
    assert fwd['deformable']['matmul_gflop'] == 8.965
    assert fwd['deformable']['floor_ms'] == 0.1793
    assert [(r['mode'], r['candidate']) for r in rows] == [
        ('fwd', 'conv'), ('fwd', 'deformable'), ('fwd+bwd', 'conv'), ('fwd+bwd', 'deformable')]


def test_the_floor_command_prints_the_table_and_refuses_bad_ceilings(tmp_path, capsys):
    bench = load_tool('benchmark')
    assert bench.main(['floor', '--dtype', 'bfloat16', '--shapes', 'c5',
                       '--ceilings', 'memory=3.0', 'bfloat16=798', 'float32=51',
                       '--out-dir', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert 'ceilings (given): memory 3 TB/s; matmul TFLOP/s: bfloat16 798, float32 51' in out
    assert '| 2,512,13,21 | fwd | deformable | 2.576 | 0.02 | 5.87 | 0.0032 | matmul | n/a |' \
        in out
    assert (tmp_path / 'floor.json').is_file()
    for argv, message in (
            (['floor', '--ceilings', 'memory=3', 'int8=1'], '--ceilings: expected memory='),
            (['ops', '--ceilings', 'memory=3', 'float32=1', '--no-floor', '--out-dir', 'x'],
             '--ceilings: expected without --no-floor')):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.parse_args(['floor'])
        assert '--ceilings: expected with --device cuda on a machine without CUDA' in \
            capsys.readouterr().err


def test_ops_with_floors_and_without_them_when_the_ceilings_cannot_be_measured(
        tmp_path, capsys, monkeypatch):
    """The op benchmark's timings matter more than its floors: a failed measurement of
    the ceilings is logged and the table comes without them."""
    import json
    bench = load_tool('benchmark')
    argv = ['ops', '--shapes', 'c5', '--candidates', 'plugin:fast', '--repeat', '1',
            '--warmup', '0', '--floor', '--out-dir', str(tmp_path)]
    monkeypatch.setattr(bench, 'measure_ceilings', lambda *a, **k: Ceilings(
        1e11, {'float32': 1e11}, 'measured on cpu, n=1'))
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert 'ceilings (measured on cpu, n=1): memory 0.1 TB/s' in out
    assert '| 2,512,13,21 | plugin:fast |' in out and ' x floor fwd / fwd+bwd |' in out
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['ceilings'] == dict(memory=1e11, matmul={'float32': 1e11},
                                     source='measured on cpu, n=1')
    assert all(r['floor_ms'] == 25.7635 for r in saved['rows'] if r['mode'] == 'fwd')

    def out_of_memory(*args, **kwargs):
        raise RuntimeError('CUDA out of memory')
    monkeypatch.setattr(bench, 'measure_ceilings', out_of_memory)
    assert bench.main(argv) == 0
    captured = capsys.readouterr()
    assert 'ceilings not measured, so no floors: RuntimeError: CUDA out of memory' in \
        captured.err
    assert '| 2,512,13,21 | plugin:fast |' in captured.out and 'x floor' not in captured.out
    assert 'ceilings' not in json.loads((tmp_path / 'results.json').read_text())
