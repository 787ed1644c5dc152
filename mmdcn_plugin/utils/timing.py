"""The one timing loop every benchmark and the ONNX export check use.

A *run* is a callable without arguments; a *measure* turns one run into seconds.
:func:`interleaved_times` calls every run ``warmup`` times, then ``repeat`` rounds in
which every run is measured once, in turn, so that drift (a neighbour's load, clock
changes, a warming GPU) hits every candidate alike; the benchmarks report medians.

- :func:`wall_seconds`: ``time.perf_counter`` around the call (the CPU);
- :func:`cuda_seconds`: CUDA events around the call, then a synchronize (the GPU's own
  clock, so the host's launch overhead counts only where it starves the GPU); optionally
  with the L2 cache flushed first, outside the timed region;
- :func:`measure_for`: the measure for a device type.
"""
import contextlib
import functools
import statistics
import time
from typing import Callable, Dict, Hashable, Iterator, List, Mapping, Optional

Run = Callable[[], object]
Measure = Callable[[Run], float]


def _no_log(msg: str) -> None:
    pass


def wall_seconds(run: Run) -> float:
    """Seconds of one call of ``run`` by the host's clock."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# Bytes written before a timed CUDA call to flush the L2 cache: four times the 50-60 MB
# of an H100's or H200's, and what triton.testing.do_bench writes.
L2_FLUSH_BYTES = 256 * 2 ** 20


def cuda_seconds(run: Run, device: Optional[str] = None, flush=None) -> float:
    """Seconds of one call of ``run`` between two CUDA events on ``device``'s current
    stream (default: the current device).

    The device is synchronised before (so earlier work does not count) and after (so
    all of this call's kernels do).  With ``flush`` (a device tensor larger than the L2
    cache) that tensor is zeroed first, before the synchronise, so the call starts with
    nothing of its inputs in cache, whatever ran before it.
    """
    import torch
    with torch.cuda.device(device):
        if flush is not None:
            flush.zero_()
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
    return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds


def _flush_buffer(device: str):
    import torch
    return torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)


def measure_for(device: str, flush_cache: bool = False) -> Measure:
    """:func:`cuda_seconds` on that device for ``'cuda'`` or ``'cuda:N'``, else
    :func:`wall_seconds`.

    ``flush_cache``: on CUDA, every timed call starts with the L2 cache flushed (a
    buffer of :data:`L2_FLUSH_BYTES` written outside the timed region).  Timings of
    kernels whose inputs fit in L2 (the op's c3-c5 shapes do) then do not depend on
    what ran before them: the candidate before in a round, or the same kernel a moment
    ago.  Ignored on the CPU.
    """
    if not isinstance(device, str):
        raise TypeError(f'device: expected a str such as \'cpu\' or \'cuda\', got '
                        f'{type(device).__name__}')
    if device.split(':')[0] != 'cuda':
        return wall_seconds
    if flush_cache:
        return functools.partial(cuda_seconds, device=device, flush=_flush_buffer(device))
    return functools.partial(cuda_seconds, device=device)


def interleaved_times(runs: Mapping[Hashable, Run], repeat: int, warmup: int = 1,
                      log: Callable[[str], None] = _no_log, label: str = '', *,
                      measure: Measure = wall_seconds,
                      errors: Optional[Dict[Hashable, str]] = None
                      ) -> Dict[Hashable, List[float]]:
    """Seconds of every run in each of ``repeat`` interleaved rounds, after a warm-up.

    Args:
        runs: name -> run (no arguments); timed in this order in every round.
        repeat (int): timed rounds (>= 1).
        warmup (int): untimed calls of each run first (>= 0), through ``measure`` too
            (a CUDA run's first events and cuDNN's algorithm choice warm up there).
        measure: run -> seconds; default :func:`wall_seconds`.
        log: gets one progress line per round (``'<label>repetition 2/7'``).
        errors (dict or None): when given, a run that raises an ``Exception`` is
            dropped from the rest of the loop and ``errors[name]`` says why (e.g.
            mmcv has no bfloat16 kernel), and the others go on; when None the
            exception propagates.

    Returns:
        name -> list of ``repeat`` seconds, in ``runs``' order, without the dropped runs.
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f'repeat: expected an int >= 1, got {repeat!r}')
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f'warmup: expected an int >= 0, got {warmup!r}')
    if not runs:
        raise ValueError('runs: expected at least one run, got none')
    live = dict(runs)
    times: Dict[Hashable, List[float]] = {name: [] for name in live}

    def attempt(name: Hashable, run: Run) -> Optional[float]:
        if errors is None:
            return measure(run)
        try:
            return measure(run)
        except Exception as e:  # recorded for the report; the other runs go on
            first_line = (str(e).strip().splitlines() or [''])[0]
            errors[name] = f'{type(e).__name__}: {first_line}'
            log(f'{label}{name} failed and is dropped: {errors[name]}')
            del live[name]
            del times[name]
            return None

    if warmup:
        log(f'{label}warm-up ({warmup} call{"s" if warmup > 1 else ""} each)')
    for name, run in list(live.items()):
        for _ in range(warmup):
            if attempt(name, run) is None:
                break
    for rep in range(repeat):
        log(f'{label}repetition {rep + 1}/{repeat}')
        for name, run in list(live.items()):
            seconds = attempt(name, run)
            if seconds is not None:
                times[name].append(seconds)
    return times


def interleaved_medians(runs: Mapping[Hashable, Run], repeat: int, warmup: int = 1,
                        log: Callable[[str], None] = _no_log, label: str = '', *,
                        measure: Measure = wall_seconds,
                        errors: Optional[Dict[Hashable, str]] = None) -> Dict[Hashable, float]:
    """Median seconds of every run of :func:`interleaved_times` (same arguments)."""
    times = interleaved_times(runs, repeat, warmup, log, label, measure=measure, errors=errors)
    return {name: statistics.median(ts) for name, ts in times.items()}


def median_seconds(run: Run, repeat: int = 3, warmup: int = 1,
                   measure: Measure = wall_seconds) -> float:
    """Median seconds of ``repeat`` calls of one run after ``warmup`` calls."""
    return interleaved_medians({'run': run}, repeat, warmup, measure=measure)['run']


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch runs on ``threads`` intra-op threads inside the block (as an onnxruntime
    session given that many), and on as many as before after it."""
    import torch
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f'threads: expected an int >= 1, got {threads!r}')
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
