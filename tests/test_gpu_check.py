"""The end-to-end GPU check (mmdcn_plugin.benchmark.gpu_check, tools/gpu_check.py) on the
CPU: its orchestration, report and JSON with fake or cheap steps, step failures
(exit status, crash, time limit), the time budget, and the command line.  What it
runs on the GPU is checked here only as far as a CPU can: the steps' command lines
parse and name files that exist."""
import importlib.util
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import load_tool
from mmdcn_plugin.benchmark import gpu_check
from mmdcn_plugin.benchmark.floor import Ceilings, add_floors
from mmdcn_plugin.benchmark.gpu_check import Step

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PY = sys.executable


def py_step(name, code, budget_s=30.0, **kwargs):
    return Step(name, f'step {name}', [PY, '-c', code], budget_s, **kwargs)


class FakeRunner:
    """Records every call and what the JSON said at that moment; returns scripted
    statuses instead of running anything."""

    def __init__(self, out_dir, statuses, seconds=1.0, clock=None):
        self.out_dir, self.statuses, self.seconds, self.clock = out_dir, statuses, seconds, clock
        self.calls, self.saved_before = [], []

    def __call__(self, step, out_dir, timeout_s, cwd, env, log):
        with open(osp.join(self.out_dir, gpu_check.RESULTS)) as f:
            self.saved_before.append([r['name'] for r in json.load(f)['steps']])
        self.calls.append((step.name, timeout_s))
        if self.clock is not None:
            self.clock.now += self.seconds
        status = self.statuses.get(step.name, 'passed')
        return dict(name=step.name, title=step.title, status=status, seconds=self.seconds,
                    reason='' if status == 'passed' else f'{step.name} went wrong')


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_every_step_result_is_written_before_the_next_step_starts(tmp_path):
    steps = [py_step(n, 'pass') for n in ('a', 'b', 'c')]
    runner = FakeRunner(str(tmp_path), {'b': 'failed'})
    state = gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, runner=runner, log=lambda m: None)
    # The JSON on disk when each step started held every earlier step.
    assert runner.saved_before == [[], ['a'], ['a', 'b']]
    # A failed step is recorded and the rest go on.
    assert [(r['name'], r['status']) for r in state['steps']] == [
        ('a', 'passed'), ('b', 'failed'), ('c', 'passed')]
    saved = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert saved['finished'] and [r['status'] for r in saved['steps']] == [
        'passed', 'failed', 'passed']
    report = (tmp_path / 'report.md').read_text()
    assert '| b | failed | 1.0 | b went wrong |' in report
    assert '**not finished**' not in report


def test_a_step_is_skipped_when_what_it_needs_did_not_pass(tmp_path):
    steps = [py_step('data', 'pass'), py_step('train', 'pass', needs=('data',)),
             py_step('test', 'pass', needs=('train',)), py_step('other', 'pass')]
    runner = FakeRunner(str(tmp_path), {'data': 'timeout'})
    state = gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, runner=runner, log=lambda m: None)
    assert [c[0] for c in runner.calls] == ['data', 'other']
    by = {r['name']: r for r in state['steps']}
    assert by['train']['status'] == by['test']['status'] == 'skipped'
    assert by['train']['reason'] == 'needs data, which did not pass'
    assert by['test']['reason'] == 'needs train, which did not pass'


def test_the_total_budget_cuts_each_step_and_skips_what_no_longer_fits(tmp_path):
    clock = Clock()
    steps = [py_step('a', 'pass', budget_s=100), py_step('b', 'pass', budget_s=100),
             py_step('c', 'pass', budget_s=100)]
    runner = FakeRunner(str(tmp_path), {}, seconds=95.0, clock=clock)
    state = gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, budget_s=200, runner=runner,
                                    clock=clock, log=lambda m: None)
    # a: its own 100 s; b: 105 s left, capped at its own 100; c: the 10 s left (the
    # minimum a step starts with).
    assert runner.calls == [('a', 100), ('b', 100), ('c', 10)]
    clock.now = 0.0
    runner = FakeRunner(str(tmp_path), {}, seconds=96.0, clock=clock)
    state = gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, budget_s=200, runner=runner,
                                    clock=clock, log=lambda m: None)
    assert [c[0] for c in runner.calls] == ['a', 'b']
    skipped = state['steps'][2]
    assert skipped['status'] == 'skipped'
    assert skipped['reason'] == 'out of the total time budget (8 s left of 200 s)'
    assert state['wall_s'] == 192.0
    with pytest.raises(ValueError, match=r'budget_s: expected a positive number of seconds, '
                                         r'got 0'):
        gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, budget_s=0)
    with pytest.raises(ValueError, match=r"steps: expected unique names, got \['a', 'a'\]"):
        gpu_check.run_gpu_check(str(tmp_path), steps[:1] * 2, ROOT)


def test_real_steps_passing_failing_crashing_and_over_time(tmp_path):
    """Cheap subprocesses: the log keeps each one's output, a crash (SIGSEGV, as mmcv's
    info functions do) and a time-out end that step only, and the time-out kills the
    step's whole process group."""
    marker = tmp_path / 'grandchild-alive'
    sleeper = (f'import subprocess, sys, time; subprocess.Popen([sys.executable, "-c", '
               f'"import time; time.sleep(4); open({str(marker)!r}, \'w\')"]); '
               'print("sleeping", flush=True); time.sleep(60)')
    steps = [py_step('ok', 'print("all good")'),
             py_step('exit3', 'import sys; print("bad input"); sys.exit(3)'),
             py_step('segv', 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)'),
             py_step('slow', sleeper, budget_s=1.5),
             py_step('after', 'print("still runs")')]
    logs = []
    start = time.monotonic()
    state = gpu_check.run_gpu_check(str(tmp_path), steps, ROOT, log=logs.append)
    assert time.monotonic() - start < 30
    by = {r['name']: r for r in state['steps']}
    assert by['ok']['status'] == 'passed' and by['ok']['rc'] == 0
    assert by['exit3']['status'] == 'failed'
    assert by['exit3']['reason'] == 'exit status 3; last line: bad input'
    assert by['segv']['status'] == 'failed' and by['segv']['reason'] == 'killed by SIGSEGV'
    assert by['slow']['status'] == 'timeout' and by['slow']['rc'] is None
    assert by['after']['status'] == 'passed'
    assert 'all good' in (tmp_path / 'logs' / 'ok.log').read_text()
    slow_log = (tmp_path / 'logs' / 'slow.log').read_text()
    assert 'sleeping' in slow_log and 'stopped after 2 s (its budget)' in slow_log
    time.sleep(4.5)
    assert not marker.exists(), 'the timed-out step left a process running'
    assert any(m.startswith('[gpu-check] done in') and '2 passed, 2 failed, 1 timeout' in m
               for m in logs), logs


@pytest.mark.parametrize('xdist, cores, workers', [(True, 16, 4), (True, 64, 4), (True, 4, 0),
                                                   (False, 16, 0)])
def test_tests_steps_compile_in_parallel_where_xdist_is_installed(monkeypatch, tmp_path,
                                                                   xdist, cores, workers):
    from mmdcn_plugin.benchmark import gpu_steps
    real = gpu_steps.importlib.util.find_spec
    monkeypatch.setattr(gpu_steps.importlib.util, 'find_spec',
                        lambda name: (object() if xdist else None) if name == 'xdist'
                        else real(name))
    monkeypatch.setattr(gpu_steps.os, 'cpu_count', lambda: cores)
    assert gpu_steps.xdist_workers() == workers
    steps = {s.name: s for s in gpu_steps.default_steps(ROOT, str(tmp_path), str(tmp_path))}
    for name in ('tests', 'tests-triton'):
        argv = steps[name].argv
        assert ('-n' in argv) == bool(workers), argv
        if workers:
            assert argv[argv.index('-n') + 1] == str(workers)


XDIST = pytest.mark.skipif(importlib.util.find_spec('xdist') is None,
                           reason='pytest-xdist is not installed (the GPU machine has it)')


@pytest.mark.parametrize('workers', [0, pytest.param(2, marks=XDIST)], ids=['one', 'xdist'])
def test_timed_out_tests_keep_the_tests_that_ran(tmp_path, workers):
    """A tests step stopped at its budget is interrupted first (SIGINT, even where the
    check itself was started with SIGINT ignored), so pytest writes its junit file: the
    report keeps the counts and the failing test of what ran, also with xdist workers."""
    (tmp_path / 'test_x.py').write_text(
        'import time\n'
        'def test_a(): pass\n'
        'def test_b(): assert 1 == 2\n'
        'def test_slow(): time.sleep(60)\n'
        'def test_never(): pass\n')
    out, step_dir = tmp_path / 'out', tmp_path / 'out' / 'tests'
    step = Step('tests', 'CUDA tests', [
        PY, '-m', 'pytest', str(tmp_path / 'test_x.py'), '-q', '-p', 'no:cacheprovider',
        *(['-n', str(workers)] if workers else []),
        '--junitxml', str(step_dir / 'junit.xml')], 8.0, kind='tests', out_dir=str(step_dir))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        start = time.monotonic()
        state = gpu_check.run_gpu_check(str(out), [step], str(tmp_path), log=lambda m: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 25
    result = state['steps'][0]
    assert result['status'] == 'timeout'
    # Workers may run test_never beside test_slow; one process stops before it.
    ran = '[23] tests ran before: [12] passed' if workers else '2 tests ran before: 1 passed'
    assert re.search(f'; {ran}, 1 failed, 0 errors, 0 skipped$', result['reason']), \
        result['reason']
    assert result['summary']['failing'] == ['test_x::test_b']
    assert 'KeyboardInterrupt' in (out / 'logs' / 'tests.log').read_text()


def test_results_are_read_from_each_steps_files(tmp_path):
    """A zero exit status with missing or failing results is a failure; the report
    shows the tests' counts, the op and model tables and the mAP."""
    out = tmp_path / 'out'
    (out / 'tests').mkdir(parents=True)
    (out / 'tests' / 'junit.xml').write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_cuda" name="test_a"/>'
        '<testcase classname="tests.test_cuda" name="test_b"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_cuda" name="test_c"><skipped/></testcase>'
        '<testcase classname="tests.test_cuda" name="test_d"/></testsuite></testsuites>')
    (out / 'ops').mkdir()
    rows = [dict(shape='c3', nchw='2x128x100x152', mode=mode, candidate=c, median_ms=ms,
                 vs_conv=ms / 0.5, tf32='n/a', dtype='float32')
            for mode in ('fwd', 'fwd+bwd')
            for c, ms in (('conv', 0.5), ('mmcv', 2.0), ('plugin:auto', 2.1))]
    ceilings = dict(memory=3e12, matmul={'float32': 5e13}, source='measured on cuda, n=8192')
    add_floors(rows, Ceilings(**ceilings))
    (out / 'ops' / 'results.json').write_text(json.dumps(dict(kind='ops', machine='GPU X',
                                                              ceilings=ceilings, rows=rows)))
    (out / 'train').mkdir()
    (out / 'train' / 'epoch_1.pth').write_bytes(b'x')
    write_log = 'import sys; print(sys.argv[1])'
    steps = [Step('tests', 'CUDA tests', [PY, '-c', 'pass'], 30, kind='tests',
                  out_dir=str(out / 'tests')),
             Step('ops-float32', 'the op, float32', [PY, '-c', 'pass'], 30, kind='ops',
                  out_dir=str(out / 'ops')),
             Step('model-fp32', 'model', [PY, '-c', 'pass'], 30, kind='model',
                  out_dir=str(out / 'nothing-here')),
             Step('train', 'train', [PY, '-c', write_log, 'Epoch(val) [6/6] coco/bbox_mAP: '
                                     '0.1230  coco/bbox_mAP_50: 0.3'], 30, kind='train',
                  out_dir=str(out / 'train')),
             Step('test', 'test', [PY, '-c', 'print("no metric here")'], 30, kind='test')]
    state = gpu_check.run_gpu_check(str(out), steps, ROOT, log=lambda m: None)
    by = {r['name']: r for r in state['steps']}
    assert by['tests']['status'] == 'failed'  # exit 0, but the junit file says 1 failed
    assert by['tests']['summary'] == dict(tests=4, failed=1, errors=0, skipped=1, passed=2,
                                          failing=['tests.test_cuda::test_b'])
    assert by['ops-float32']['status'] == 'passed'
    assert by['model-fp32']['status'] == 'failed'
    assert by['model-fp32']['summary']['summary_error'].startswith('FileNotFoundError')
    assert 'Traceback' in (out / 'logs' / 'model-fp32.log').read_text()
    assert by['train']['status'] == 'passed' and by['train']['summary']['val_bbox_mAP'] == 0.123
    assert by['test']['status'] == 'failed' and by['test']['summary']['test_bbox_mAP'] is None
    report = (out / 'report.md').read_text()
    assert '2 passed, 1 failed, 0 errors, 1 skipped (4 in all).' in report
    assert '- failing: `tests.test_cuda::test_b`' in report
    # c3's deformable forward: 8.965 GFLOP at 50 TFLOP/s = 0.1793 ms; 2.1 ms is 11.71x it.
    assert ('| 2,128,100,152 | plugin:auto | 2.1 | 4.2x | 2.1 | 4.2x | 0.1793 (matmul) / '
            '0.5379 (matmul) | 11.71x / 3.9x |') in report
    assert ('ceilings (measured on cuda, n=8192): memory 3 TB/s; matmul TFLOP/s: float32 50; '
            'the floor of a row') in report
    assert "plugin:auto fwd: 0.95x faster than mmcv" in report
    assert 'bbox mAP: 0.123 (passed; one epoch' in report


def test_the_environment_never_asks_mmcv_for_its_build_info(tmp_path, monkeypatch):
    """mmcv's info functions end the process with some source builds (issue 24): the
    environment step must not call them."""
    import mmcv.ops

    def crash(*args):
        raise AssertionError('called an mmcv info function')
    for name in ('get_compiling_cuda_version', 'get_compiler_version'):
        monkeypatch.setattr(mmcv.ops, name, crash, raising=False)
    env = gpu_check.write_environment(str(tmp_path / 'env.json'), ROOT)
    saved = json.loads((tmp_path / 'env.json').read_text())
    assert saved == json.loads(json.dumps(env))
    for key in ('date', 'commit', 'torch', 'mmcv', 'mmdet', 'mmengine', 'tf32', 'backends'):
        assert key in saved, key
    import numpy
    assert saved['numpy'] == numpy.__version__
    assert saved['tf32']['cudnn_allow_tf32'] in (True, False)
    assert saved['backends']['cpu']['torch'] == 'runs'
    assert saved['backends']['cpu']['auto'].startswith('picks ')


def test_a_failed_probe_says_why_auto_took_another_backend(monkeypatch):
    """On a GPU where the Triton kernels fail their probe, the environment says so and
    why, and the report carries the reason whole (not cut to a table cell's 80
    characters, and without a '|' to break the table)."""
    import warnings

    import torch
    from mmdcn_plugin.benchmark import gpu_environment
    from mmdcn_plugin.ops.backends import BACKENDS, mmcv_impl
    from mmdcn_plugin.ops.backends.triton import probe

    reason = ("this package's Triton deformable-convolution kernels failed (CompilationError: "
              "a|b at 12:4) on a probe on cuda:0: 'auto' takes another backend")

    def failing_probe():
        warnings.warn(reason, RuntimeWarning)
        return False
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(probe, 'triton_cuda_usable', failing_probe)
    monkeypatch.setitem(BACKENDS, 'triton', BACKENDS['triton']._replace(
        available=lambda: True, devices=lambda: ('cuda',)))
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: False)
    table = gpu_environment.backends_by_device()['cuda']
    assert table['auto'] == 'picks fast' and table['triton'] == 'runs'
    assert table['probes'] == reason
    lines = gpu_check._env_lines({'backends': {'cuda': table}})
    row = next(ln for ln in lines if ln.startswith('| failed probes on cuda |'))
    assert reason.replace('|', '/') in row and row.count('|') == 3


def test_the_commit_comes_from_git_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('MMDCN_GIT_COMMIT', 'abc123')
    assert gpu_check.git_commit(str(tmp_path)) == 'abc123'  # no .git in tmp_path
    monkeypatch.delenv('MMDCN_GIT_COMMIT')
    assert gpu_check.git_commit(str(tmp_path)).startswith('unknown')


def test_default_steps_run_the_right_commands_on_files_that_exist(tmp_path):
    """What the GPU machine will run, checked here: every step's command line parses
    with its tool, and every config it names exists."""
    from mmdcn_plugin.benchmark import resolve_config
    steps = gpu_check.default_steps(ROOT, str(tmp_path / 'out'), str(tmp_path / 'work'))
    names = [s.name for s in steps]
    triton = ['tests-triton'] if osp.isfile(osp.join(ROOT, gpu_check.TRITON_TESTS[0])) else []
    assert names == ['environment', 'tests', 'data', 'train', 'test', *triton, 'ops-float32',
                     'overhead', 'ops-float16', 'model-fp32', 'ops-bfloat16',
                     'ops-float32-strict-conv', 'model-amp']
    # The steps' own budgets add up to more than the total: the total cuts the last ones.
    assert sum(s.budget_s for s in steps) > gpu_check.DEFAULT_BUDGET_S
    assert gpu_check.DEFAULT_BUDGET_S <= 400  # + kit install and build: one 8-minute call
    by = {s.name: s for s in steps}
    assert by['tests'].argv[by['tests'].argv.index('--device') + 1] == 'cuda'
    for name in gpu_check.DEFAULT_TESTS:
        assert osp.isfile(osp.join(ROOT, name)), name
        assert name in by['tests'].argv
    # A test file that is not there (yet) is left out instead of failing the step.
    steps = gpu_check.default_steps(ROOT, str(tmp_path / 'out'), str(tmp_path / 'work'),
                                    tests=['tests/test_cuda.py', 'tests/test_not_yet.py'])
    assert 'tests/test_not_yet.py' not in steps[1].argv and 'tests/test_cuda.py' in steps[1].argv
    # None there at all: the step fails and says so (pytest alone would run the whole suite).
    steps = gpu_check.default_steps(ROOT, str(tmp_path / 'out'), str(tmp_path / 'work'),
                                    tests=['tests/test_not_yet.py'])
    assert 'pytest' not in steps[1].argv and 'no test files found' in steps[1].argv[-1]
    bench = load_tool('benchmark')
    for name in ('ops-float32', 'ops-float16', 'ops-bfloat16', 'ops-float32-strict-conv'):
        args = bench.parse_args(by[name].argv[2:])
        assert (args.cmd, args.device, args.shapes) == ('ops', 'cuda', ['r50-c3c5'])
    assert bench.parse_args(by['ops-bfloat16'].argv[2:]).dtype == 'bfloat16'
    args = bench.parse_args(by['overhead'].argv[2:])
    assert (args.cmd, args.device) == ('overhead', 'cuda')
    assert bench.parse_args(by['ops-float32-strict-conv'].argv[2:]).strict_fp32_conv
    for name, amp in (('model-fp32', False), ('model-amp', True)):
        args = bench.parse_args(by[name].argv[2:])
        assert (args.device, args.amp, args.synthetic, args.batch_size) == (
            'cuda', amp, [800, 1216], 2)
        for path in [args.config, args.baseline] + args.also:
            assert osp.isfile(resolve_config(path)), path
        assert args.baseline == 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
        assert 'mmdet::dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py' in args.also
    assert osp.isfile(by['train'].argv[2]) and by['test'].argv[3].endswith('epoch_1.pth')
    assert by['test'].needs == ('train',) and by['train'].needs == ('data',)
    with pytest.raises(ValueError, match=r"steps: expected step names among .*got \['nope'\]"):
        gpu_check.select_steps(steps, ['nope'])
    assert [s.name for s in gpu_check.select_steps(steps, ['test', 'data'], skip=['test'])] == [
        'data']


def test_cli_errors_name_the_argument(capsys):
    tool = load_tool('gpu_check')
    for argv, message in [
            ([], '--out-dir: expected a folder for the report, got nothing'),
            (['--out-dir', 'd', '--budget-s', '-5'],
             '--budget-s: expected a positive number of seconds, got -5.0'),
            (['--out-dir', 'd', '--steps', 'ops', 'tests'],
             "--steps: expected step names among ['environment', 'tests'"),
            (['--out-dir', 'd', '--skip', 'nope'], "got ['nope']"),
            (['--out-dir', 'd', '--op-repeat', '0'], '--op-repeat: expected >= 1, got 0')]:
        with pytest.raises(SystemExit) as e:
            tool.parse_args(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_cli_lists_and_runs_selected_steps(tmp_path, capsys):
    tool = load_tool('gpu_check')
    assert tool.main(['--list', '--steps', 'data', 'model-amp']) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split(' ')[0] for line in listed] == ['data', 'model-amp']
    assert '--amp' in listed[1]
    # One real, cheap step through the command line: exit 0, report and JSON written.
    assert tool.main(['--out-dir', str(tmp_path), '--steps', 'environment']) == 0
    state = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert [r['status'] for r in state['steps']] == ['passed']
    assert state['environment']['torch']
    assert '| environment | passed |' in (tmp_path / 'report.md').read_text()


def _fake_checkout(tmp_path, kit=True):
    """A folder shaped like the checkout on the GPU machine: a kit whose setup.sh marks
    the environment, a setup.py that pretends to build, and a tools/gpu_check.py that
    records how it was called and exits 3."""
    root = tmp_path / 'checkout'
    (root / 'tools').mkdir(parents=True)
    if kit:
        (root / '.gpu-kit').mkdir()
        (root / '.gpu-kit' / 'setup.sh').write_text('echo "gpu-kit: installed"\n'
                                                    'export KIT_MARK=1\n')
        (root / '.gpu-kit' / 'COMMIT').write_text('abc123+dirty\n')
    (root / 'setup.py').write_text('import sys; print("building", sys.argv[1:])\n')
    (root / 'tools' / 'gpu_check.py').write_text(
        'import json, os, sys\n'
        'json.dump(dict(argv=sys.argv[1:], kit=os.environ.get("KIT_MARK"), '
        'commit=os.environ.get("MMDCN_GIT_COMMIT"), '
        'cache=os.environ.get("TRITON_CACHE_DIR")), open(os.environ["RECORD"], "w"))\n'
        # a kernel compiled during the check: a new entry in Triton's cache
        'os.makedirs(os.path.join(os.environ["TRITON_CACHE_DIR"], "new"))\n'
        'sys.exit(3)\n')
    return root


def test_device_script_installs_the_kit_builds_and_runs_the_check(tmp_path):
    root = _fake_checkout(tmp_path)
    env = dict(os.environ, OUT=str(tmp_path / 'out'), RECORD=str(tmp_path / 'record.json'),
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               TRITON_CACHE_DIR=str(tmp_path / 'triton-cache'))
    env.pop('MMDCN_GIT_COMMIT', None)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'gpu_device_run.sh'), '--steps',
                           'ops-float32'], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the check's own exit status
    record = json.loads((tmp_path / 'record.json').read_text())
    dest = str(tmp_path / 'out' / 'gpu-check')
    argv = record['argv']
    assert argv[:2] == ['--out-dir', dest] and argv[2] == '--budget-s'
    assert 400 < int(argv[3]) <= 450 and argv[4:] == ['--steps', 'ops-float32']
    assert record['kit'] == '1'  # the kit was sourced, not run in a subshell
    assert record['commit'] == 'abc123+dirty'  # from .gpu-kit/COMMIT: the copy has no .git
    logs = tmp_path / 'out' / 'gpu-check' / 'logs'
    assert 'gpu-kit: installed' in (logs / 'kit.log').read_text()
    assert "building ['build_ext', '--inplace']" in (logs / 'build_ext.log').read_text()
    assert 'C++ extension built' in proc.stdout and 'exit status 3' in proc.stdout
    # No Triton cache carried: said, and the kernels compiled during the check counted
    assert record['cache'] == str(tmp_path / 'triton-cache')
    cache_log = (logs / 'triton-cache.log').read_text()
    assert 'no .gpu-kit/triton-cache.tar.xz: every kernel compiles here' in cache_log
    assert '1 Triton kernels compiled here during the check' in cache_log


def test_device_script_stops_without_the_kit(tmp_path):
    root = _fake_checkout(tmp_path, kit=False)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'gpu_device_run.sh')], cwd=root,
                          env=dict(os.environ, OUT=str(tmp_path / 'out')), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert 'no .gpu-kit/setup.sh: copy ../shared/device to .gpu-kit and carry it' in proc.stdout


def _run_triton_device_script(tmp_path, root, **env):
    """Run tools/gpu_triton_run.sh in ``root`` with a python3 that records each call
    (kit mark, TRITON_DUMP_PTXAS_LOG, TRITON_CACHE_DIR, argv). Its tune sleeps 60 s
    unless interrupted, after adding one entry to the Triton cache (a kernel compiled
    there); ``precompile --check`` prints what it was asked. Returns (proc, calls)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / 'python3'
    fake.write_text(f'#!{sys.executable}\n'
                    'import json, os, sys, time\n'
                    'with open(os.environ["RECORD"], "a") as f:\n'
                    '    f.write(json.dumps([os.environ.get(k) for k in ("KIT_MARK",\n'
                    '        "TRITON_DUMP_PTXAS_LOG", "TRITON_CACHE_DIR")] + sys.argv[1:])\n'
                    '            + "\\n")\n'
                    'if sys.argv[2].endswith(".precompile"):\n'
                    '    print("checked", sys.argv[3:])\n'
                    'if sys.argv[2].endswith(".tune"):\n'
                    '    os.makedirs(os.path.join(os.environ["TRITON_CACHE_DIR"], "new"))\n'
                    '    try:\n'
                    '        time.sleep(60)\n'
                    '    except KeyboardInterrupt:\n'
                    '        print("tune interrupted")\n'
                    '        sys.exit(130)\n')
    fake.chmod(0o755)
    record = tmp_path / 'calls.jsonl'
    env = dict(os.environ, OUT=str(tmp_path / 'out'), RECORD=str(record),
               TRITON_CACHE_DIR=str(tmp_path / 'triton-cache'),
               PATH=str(bin_dir) + os.pathsep + os.environ['PATH'], **env)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'gpu_triton_run.sh')], cwd=root,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, [json.loads(line) for line in record.read_text().splitlines()]


def test_triton_device_script_runs_the_sweep_then_the_stages_within_its_budget(tmp_path):
    """tools/gpu_triton_run.sh: the kit sourced, the tile sweep stopped at its limit with
    SIGINT (so it can keep its rows), then the stage timing with the time that is left;
    both with Triton's ptxas logs asked for, and the kernels each compiled counted."""
    root = _fake_checkout(tmp_path)
    start = time.monotonic()
    proc, calls = _run_triton_device_script(tmp_path, root, TUNE_S='5',
                                            TRITON_RUN_TOTAL_S='30')
    assert time.monotonic() - start < 20  # the sweep did not run its 60 s
    dest = tmp_path / 'out' / 'triton'
    cache = str(tmp_path / 'triton-cache')
    assert calls == [
        ['1', '1', cache, '-m', 'mmdcn_plugin.ops.backends.triton.tune', '--dtypes',
         'fp16,bf16,fp32', '--shapes', 'c3,c4,c5', '--json', str(dest / 'tune.json')],
        ['1', '1', cache, '-m', 'mmdcn_plugin.ops.backends.triton.stages', '--dtypes', 'fp16',
         '--shapes', 'c3,c4,c5', '--json', str(dest / 'stages.json')]]
    assert 'tune interrupted' in (dest / 'tune.log').read_text()
    assert 'no .gpu-kit/triton-cache.tar.xz: every kernel compiles here' in proc.stdout
    assert 'tune: exit status 124 (124: stopped at its limit); 1 kernels compiled here' \
        in proc.stdout
    assert 'stages: exit status 0 (124: stopped at its limit); 0 kernels compiled here' \
        in proc.stdout
    assert 'tune: exit status 124' in (dest / 'cache.log').read_text()


def test_triton_device_script_unpacks_the_carried_cache_and_checks_it(tmp_path):
    """A cache compiled before the call (.gpu-kit/triton-cache.tar.xz) is unpacked into
    TRITON_CACHE_DIR and checked against this machine's Triton before the sweep."""
    root = _fake_checkout(tmp_path)
    packed = tmp_path / 'packed'
    (packed / 'KERNELHASH').mkdir(parents=True)
    (packed / 'manifest.json').write_text('{}')
    subprocess.run(['tar', '-cJf', str(root / '.gpu-kit' / 'triton-cache.tar.xz'), '-C',
                    str(packed), '.'], check=True)
    proc, calls = _run_triton_device_script(tmp_path, root, TUNE_S='5',
                                            TRITON_RUN_TOTAL_S='20')
    cache = tmp_path / 'triton-cache'
    assert (cache / 'KERNELHASH').is_dir() and (cache / 'manifest.json').is_file()
    assert calls[0][3:] == ['-m', 'mmdcn_plugin.ops.backends.triton.precompile', '--check',
                            str(cache)]
    assert [c[4] for c in calls[1:]] == ['mmdcn_plugin.ops.backends.triton.tune',
                                         'mmdcn_plugin.ops.backends.triton.stages']
    assert f"checked ['--check', '{cache}']" in (tmp_path / 'out' / 'triton' /
                                                  'cache.log').read_text()
    assert 'tune: exit status 124 (124: stopped at its limit); 1 kernels compiled here' \
        in proc.stdout


def _prepare(repo, kit, **env):
    """Run tools/gpu_prepare.sh in the git repository ``repo`` with the kit ``kit``."""
    env = dict(os.environ, KIT_SRC=str(kit), **env)
    return subprocess.run(['bash', osp.join(ROOT, 'tools', 'gpu_prepare.sh')], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=60)


def _git_repo_and_kit(tmp_path):
    repo, kit = tmp_path / 'repo', tmp_path / 'device'
    (kit / 'wheels').mkdir(parents=True)
    (kit / 'setup.sh').write_text('echo kit\n')
    (kit / 'wheels' / 'a-1.0-py3-none-any.whl').write_text('')
    repo.mkdir()
    (repo / 'f.txt').write_text('one\n')
    git = ['git', '-c', 'user.name=t', '-c', 'user.email=t@t', '-C', str(repo)]
    subprocess.run(['git', 'init', '-q', str(repo)], check=True)
    subprocess.run(git + ['add', 'f.txt'], check=True)
    subprocess.run(git + ['commit', '-qm', 'one'], check=True)
    head = subprocess.run(git + ['rev-parse', 'HEAD'], capture_output=True, text=True,
                          check=True).stdout.strip()
    return repo, kit, head


def test_prepare_script_copies_the_kit_as_an_ignored_folder_with_the_commit(tmp_path):
    repo, kit, head = _git_repo_and_kit(tmp_path)
    for path in [kit / 'setup.sh', kit / 'wheels' / 'a-1.0-py3-none-any.whl',
                 kit / 'wheels', kit]:  # read-only, as ../shared/device is
        path.chmod(0o555 if path.is_dir() else 0o444)
    for _ in range(2):  # a second run replaces the copy and adds no second exclude line
        proc = _prepare(repo, kit, NO_CACHE='1')
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / '.gpu-kit' / 'wheels' / 'a-1.0-py3-none-any.whl').is_file()
    assert (repo / '.gpu-kit' / 'COMMIT').read_text() == head + '\n'
    assert all(os.stat(p).st_mode & 0o200 for p in [repo / '.gpu-kit', repo / '.gpu-kit' /
                                                     'wheels', repo / '.gpu-kit' / 'setup.sh'])
    exclude = (repo / '.git' / 'info' / 'exclude').read_text().splitlines()
    assert exclude.count('/.gpu-kit/') == 1
    status = subprocess.run(['git', '-C', str(repo), 'status', '--porcelain'],
                            capture_output=True, text=True).stdout
    assert status == ''  # the kit is not seen by git
    assert 'NO_CACHE=1: no Triton cache' in proc.stdout
    (repo / 'f.txt').write_text('two\n')
    assert _prepare(repo, kit, NO_CACHE='1').returncode == 0
    assert (repo / '.gpu-kit' / 'COMMIT').read_text() == head + '+dirty\n'
    proc = _prepare(repo, tmp_path / 'nowhere', NO_CACHE='1')
    assert proc.returncode == 2 and 'no GPU kit at' in proc.stdout


def test_prepare_script_packs_the_precompiled_cache_into_the_kit(tmp_path):
    """With a scratch stack (here a stand-in Python that records its calls), the kit's
    wheels go into its site folder and precompile's cache is packed into the kit."""
    repo, kit, _ = _git_repo_and_kit(tmp_path)
    fake = tmp_path / 'python'
    fake.write_text(f'#!{sys.executable}\n'
                    'import json, os, sys\n'
                    'with open(os.environ["RECORD"], "a") as f:\n'
                    '    f.write(json.dumps(sys.argv[1:]) + "\\n")\n'
                    'if sys.argv[2].endswith(".precompile") and os.environ.get("FAIL"):\n'
                    '    sys.exit("boom")\n'
                    'if sys.argv[2].endswith(".precompile"):\n'
                    '    os.makedirs(os.path.join(sys.argv[4], "KERNEL"))\n'
                    '    open(os.path.join(sys.argv[4], "manifest.json"), "w").write("{}")\n'
                    '    print("450 entries")\n')
    fake.chmod(0o755)
    record = tmp_path / 'calls.jsonl'
    proc = _prepare(repo, kit, STACK_PY=str(fake), STACK_SITE=str(tmp_path / 'site'),
                    RECORD=str(record))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls[0][:2] == ['-m', 'pip'] and str(tmp_path / 'site') in calls[0]
    assert calls[1][:3] == ['-m', 'mmdcn_plugin.ops.backends.triton.precompile', '--out']
    listing = subprocess.run(['tar', '-tJf', str(repo / '.gpu-kit' / 'triton-cache.tar.xz')],
                             capture_output=True, text=True, check=True).stdout.split()
    assert './KERNEL/' in listing and './manifest.json' in listing
    assert '450 entries' in proc.stdout and 'Triton cache: .gpu-kit' in proc.stdout
    proc = _prepare(repo, kit, STACK_PY=str(fake), STACK_SITE=str(tmp_path / 'site'),
                    RECORD=str(record), FAIL='1')
    assert proc.returncode == 2 and 'boom' in proc.stdout
    assert 'precompile failed (.gpu-kit/precompile.log): no Triton cache' in proc.stdout
    assert not (repo / '.gpu-kit' / 'triton-cache.tar.xz').exists()


def test_a_stopped_op_benchmark_keeps_the_shapes_it_measured(tmp_path):
    """tools/benchmark.py ops saves results.json after every shape; when the step runs
    out of time, the report still shows those rows, marked partial."""
    out = tmp_path / 'out'
    rows = [dict(shape='c3-800x1216', nchw='2x128x100x152', mode=mode, candidate=c,
                 median_ms=1.0, vs_conv=1.0, tf32='n/a')
            for mode in ('fwd', 'fwd+bwd') for c in ('conv', 'mmcv')]
    code = ('import json, sys, time; json.dump(dict(kind="ops", machine="GPU X", partial=True, '
            f'rows={rows!r}), open(sys.argv[1], "w")); print("shape 1 of 3 done", flush=True); '
            'time.sleep(60)')
    step_dir = out / 'ops-float32'
    step = Step('ops-float32', 'the op, float32', [PY, '-c', code, str(step_dir / 'results.json')],
                2.0, kind='ops', out_dir=str(step_dir))
    state = gpu_check.run_gpu_check(str(out), [step], ROOT, log=lambda m: None)
    result = state['steps'][0]
    assert result['status'] == 'timeout'
    assert result['reason'].endswith('kept the 4 rows measured before')
    assert result['summary']['partial'] is True
    report = (out / 'report.md').read_text()
    assert '**Partial: the step stopped before its last shape.**' in report
    assert '| 2,128,100,152 | mmcv | 1.0 | 1.0x |' in report


def test_the_ops_benchmark_saves_its_rows_after_every_shape(tmp_path):
    from mmdcn_plugin.benchmark import run_ops, write_partial
    saved = []

    def save(rows):
        write_partial(rows, str(tmp_path), 'ops', 'machine')
        saved.append(json.loads((tmp_path / 'results.json').read_text()))

    run_ops(shapes=['c5', 'c4'], repeat=1, warmup=0, available={'conv': lambda *a: a[0]},
            measure=lambda run: run() or 0.001, on_rows=save)
    # Two modes per shape: 2 rows after c5, 4 after c4.
    assert [len(s['rows']) for s in saved] == [2, 4]
    assert all(s['partial'] and s['kind'] == 'ops' for s in saved)
