"""mmdcn_plugin.utils.timing: the one timing loop of every benchmark, with fake clocks."""
import contextlib

import pytest
import torch

from mmdcn_plugin.utils import timing


def scripted(seconds):
    """A measure that calls the run, then returns the next scripted time of the run
    it called (runs say who they are by returning their name)."""
    used = {}

    def measure(run):
        name = run()
        used[name] = used.get(name, -1) + 1
        return seconds[name][used[name] % len(seconds[name])]
    return measure


def test_rounds_interleave_every_run_after_a_warmup():
    calls = []
    runs = {name: (lambda n=name: calls.append(n) or n) for name in ('a', 'b', 'c')}
    logged = []
    times = timing.interleaved_times(runs, repeat=3, warmup=2, log=logged.append, label='[x] ',
                                     measure=scripted({'a': [1.0], 'b': [2.0], 'c': [3.0]}))
    # Warm-up: each run twice; then three rounds of a, b, c in turn.
    assert calls == ['a', 'a', 'b', 'b', 'c', 'c'] + ['a', 'b', 'c'] * 3
    assert times == {'a': [1.0] * 3, 'b': [2.0] * 3, 'c': [3.0] * 3}
    assert logged == ['[x] warm-up (2 calls each)', '[x] repetition 1/3', '[x] repetition 2/3',
                      '[x] repetition 3/3']


def test_medians_skip_the_warmup_and_ignore_outliers():
    runs = {'a': lambda: 'a'}
    # The first (warm-up) call is slow and not counted; one slow timed call is the outlier.
    measure = scripted({'a': [50.0, 1.0, 9.0, 2.0, 1.5]})
    assert timing.interleaved_medians(runs, repeat=4, warmup=1, measure=measure) == {'a': 1.75}
    assert timing.median_seconds(lambda: 'a', repeat=3, warmup=0,
                                 measure=scripted({'a': [3.0, 1.0, 2.0]})) == 2.0


def test_a_failing_run_is_dropped_with_its_reason_when_errors_are_collected():
    def broken():
        raise RuntimeError('no bfloat16 kernel\nC++ stack')
    runs = {'ok': lambda: 'ok', 'broken': broken}
    errors = {}
    times = timing.interleaved_times(runs, repeat=2, warmup=1, errors=errors,
                                     measure=scripted({'ok': [1.0]}))
    assert times == {'ok': [1.0, 1.0]}
    assert errors == {'broken': 'RuntimeError: no bfloat16 kernel'}
    # Without ``errors`` the exception is the caller's.
    with pytest.raises(RuntimeError, match='no bfloat16 kernel'):
        timing.interleaved_times(runs, repeat=1, warmup=0, measure=scripted({'ok': [1.0]}))


@pytest.mark.parametrize('kwargs, message', [
    (dict(repeat=0), r'repeat: expected an int >= 1, got 0'),
    (dict(repeat=1, warmup=-1), r'warmup: expected an int >= 0, got -1'),
])
def test_loop_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timing.interleaved_times({'a': lambda: None}, **kwargs)
    with pytest.raises(ValueError, match=r'runs: expected at least one run, got none'):
        timing.interleaved_times({}, repeat=1)


def test_wall_seconds_measures_the_call(monkeypatch):
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(timing.time, 'perf_counter', lambda: next(ticks))
    called = []
    assert timing.wall_seconds(lambda: called.append(1)) == 0.25 and called == [1]


def test_cuda_seconds_reads_events_around_the_call_after_a_synchronize(monkeypatch):
    """No GPU here: torch.cuda's events are faked, to check the order of the calls and
    the unit (elapsed_time is in milliseconds)."""
    trace = []

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing
            self.name = 'start' if not any(t.startswith('new') for t in trace) else 'end'
            trace.append(f'new {self.name}')

        def record(self):
            trace.append(f'record {self.name}')

        def synchronize(self):
            trace.append(f'sync {self.name}')

        def elapsed_time(self, other):
            return 12.5

    @contextlib.contextmanager
    def on(device):
        trace.append(f'on {device}')
        yield
        trace.append('off')

    monkeypatch.setattr(torch.cuda, 'Event', Event)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: trace.append('device sync'))
    monkeypatch.setattr(torch.cuda, 'device', on)
    seconds = timing.cuda_seconds(lambda: trace.append('run'))
    assert seconds == pytest.approx(0.0125)
    assert trace == ['on None', 'device sync', 'new start', 'new end', 'record start', 'run',
                     'record end', 'sync end', 'off']
    # measure_for('cuda:1') times on cuda:1, whichever device is current.
    trace.clear()
    assert timing.measure_for('cuda:1')(lambda: trace.append('run')) == pytest.approx(0.0125)
    assert trace[0] == 'on cuda:1' and trace[-1] == 'off'


def test_a_flushed_cuda_timing_writes_the_flush_buffer_before_anything_is_timed(monkeypatch):
    """The L2 flush is outside the timed region: before the synchronise that precedes
    the start event (faked: no GPU here)."""
    trace = []

    class Event:
        def __init__(self, enable_timing):
            pass

        def record(self):
            trace.append('record')

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return 1.0

    class Flush:
        def zero_(self):
            trace.append('flush')

    monkeypatch.setattr(torch.cuda, 'Event', Event)
    monkeypatch.setattr(torch.cuda, 'synchronize', lambda: trace.append('device sync'))
    monkeypatch.setattr(torch.cuda, 'device', lambda device: contextlib.nullcontext())
    flush = Flush()
    monkeypatch.setattr(timing, '_flush_buffer', lambda device: flush)
    measure = timing.measure_for('cuda:0', flush_cache=True)
    assert measure.keywords == dict(device='cuda:0', flush=flush)
    assert measure(lambda: trace.append('run')) == pytest.approx(0.001)
    assert trace == ['flush', 'device sync', 'record', 'run', 'record']
    assert timing.measure_for('cpu', flush_cache=True) is timing.wall_seconds
    assert timing.L2_FLUSH_BYTES >= 4 * 60 * 2 ** 20  # four times an H200's L2


def test_measure_for_device():
    assert timing.measure_for('cpu') is timing.wall_seconds
    for device in ('cuda', 'cuda:1'):
        measure = timing.measure_for(device)
        assert measure.func is timing.cuda_seconds and measure.keywords == dict(device=device)
    with pytest.raises(TypeError, match=r"device: expected a str"):
        timing.measure_for(torch.device('cpu'))


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with timing.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with timing.torch_threads(1):
            raise RuntimeError('inside')
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match=r'threads: expected an int >= 1, got 0'):
        with timing.torch_threads(0):
            pass
