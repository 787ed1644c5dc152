"""What the wrapper :func:`mmdcn_plugin.ops.deform_conv2d` costs per call (issue 24 item 4).

On tensors so small that the kernels' own work is negligible, the time of a call is
the host's: the Python of the wrapper (argument checks, backend choice, tracing and
autocast tests), of the backend function (mmcv's: offset sanitising, copies) and the
launches of the kernels.  Every row is timed interleaved with the others
(:mod:`mmdcn_plugin.utils.timing`), min over rounds, and reported in microseconds:

- ``mmcv raw``: ``mmcv.ops.modulated_deform_conv2d`` (the floor);
- ``backend fn``: our mmcv backend function, called with checked arguments;
- ``deform_conv2d(backend='mmcv')`` and ``deform_conv2d()`` (the default, ``auto``);
- ``dispatch only``: ``deform_conv2d`` with a backend that returns its input,
  registered for the measurement and removed after, so only the wrapper is timed.

With ``backward``, every row is also timed forward+backward (inputs that require grad,
``.backward()`` of a fixed gradient): the host's work in the backward counts there,
e.g. autograd nodes the wrapper adds.

``tools/benchmark.py overhead [--device cpu|cuda] [--backward]`` prints them.
"""
import contextlib
from typing import Callable, Dict, Iterator, List, Sequence

import torch

from ..utils.timing import interleaved_times, measure_for
from .ops import make_op_inputs

NOOP_BACKEND = '_benchmark_noop'


@contextlib.contextmanager
def noop_backend() -> Iterator[str]:
    """A backend that returns its input, in the backend table inside the block only."""
    from ..ops.backends import BACKENDS, Backend
    if NOOP_BACKEND in BACKENDS:
        raise RuntimeError(f'{NOOP_BACKEND!r} is already in the backend table')
    BACKENDS[NOOP_BACKEND] = Backend(lambda input, offset, weight, bias, mask, geo: input,
                                     lambda: True, 'returns its input (overhead benchmark)')
    try:
        yield NOOP_BACKEND
    finally:
        del BACKENDS[NOOP_BACKEND]


def overhead_runs(device: str, shape: Sequence[int],
                  backward: bool = False) -> Dict[str, Callable[[], object]]:
    """name -> run of every row that runs here (mmcv's only where its ops run on
    ``device``), on inputs of ``shape``: forward only, or with ``backward`` forward and
    ``.backward()`` of a fixed gradient (the inputs then require grad)."""
    from ..ops import deform_conv2d
    from ..ops.backends import BACKENDS
    from ..ops.checks import check_deform_conv2d_args
    from .ops import op_candidates

    x, w, o, m = make_op_inputs(shape, device, requires_grad=backward)
    geo = check_deform_conv2d_args(x, o, w, None, 1, 1, 1, m)
    calls: Dict[str, Callable[[], torch.Tensor]] = {}
    cands = op_candidates(device)
    if 'mmcv' in cands:
        calls['mmcv raw'] = lambda: cands['mmcv'](x, w, o, m)
        calls['backend fn (mmcv)'] = lambda: BACKENDS['mmcv'].fn(x, o, w, None, m, geo)
        calls["deform_conv2d(backend='mmcv')"] = (
            lambda: deform_conv2d(x, o, w, None, 1, 1, 1, m, backend='mmcv'))
    calls['deform_conv2d() (auto)'] = lambda: deform_conv2d(x, o, w, None, 1, 1, 1, m)
    calls['dispatch only'] = (
        lambda: deform_conv2d(x, o, w, None, 1, 1, 1, m, backend=NOOP_BACKEND))
    if not backward:
        return calls
    grad = torch.randn_like(x)  # the op keeps the shape: 3x3, stride 1, padding 1

    def with_backward(call):
        return lambda: call().backward(grad)
    return {name: with_backward(call) for name, call in calls.items()}


def run_overhead(device: str = 'cpu', shape: Sequence[int] = (1, 4, 5, 5), number: int = 2000,
                 rounds: int = 9, log: Callable[[str], None] = lambda msg: None,
                 backward: bool = False) -> List[dict]:
    """Microseconds per call of every row (see the module docstring): the minimum over
    ``rounds`` of the mean of ``number`` calls; forward under ``no_grad``, and with
    ``backward`` also forward+backward.

    Returns:
        list of dicts: ``row``, ``mode`` (``'forward'`` or ``'forward+backward'``),
        ``device``, ``us_per_call``, ``vs_mmcv_raw`` (against the same mode's raw row;
        absent where mmcv does not run on ``device``).
    """
    if not isinstance(number, int) or number < 1:
        raise ValueError(f'number: expected an int >= 1, got {number!r}')
    timer = measure_for(device)

    def batch(run):
        return lambda: [run() for _ in range(number)]
    rows = []
    with noop_backend():
        for mode in ('forward', 'forward+backward') if backward else ('forward',):
            with torch.set_grad_enabled(mode != 'forward'):
                runs = overhead_runs(device, shape, backward=mode != 'forward')
                times = interleaved_times({k: batch(r) for k, r in runs.items()}, rounds, 1,
                                          log, f'[overhead {mode}] ', measure=timer)
            best = {k: min(ts) / number * 1e6 for k, ts in times.items()}
            for name, us in best.items():
                row = dict(row=name, mode=mode, device=device, us_per_call=round(us, 2))
                if 'mmcv raw' in best:
                    row['vs_mmcv_raw'] = round(us / best['mmcv raw'], 3)
                rows.append(row)
    return rows


def overhead_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`run_overhead`'s rows."""
    lines = ['| call | mode | us per call | x mmcv raw |', '|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['row']} | {r.get('mode', 'forward')} | {r['us_per_call']} | "
                     f"{r.get('vs_mmcv_raw', '')} |")
    return '\n'.join(lines)
