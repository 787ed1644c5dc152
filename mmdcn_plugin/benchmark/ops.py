"""Time the deformable op (every backend, mmcv's kernels) against a plain conv."""
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# ResNet-50 c3-c5 DCN inputs for a 400x667 image, batch 2.
OP_SHAPES = {'c3': (2, 128, 50, 84), 'c4': (2, 256, 25, 42), 'c5': (2, 512, 13, 21)}
DTYPES = {'float32': torch.float32, 'float64': torch.float64, 'bfloat16': torch.bfloat16}
MODES = ('fwd', 'fwd+bwd')

Candidate = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def _no_log(msg: str) -> None:
    pass


def make_op_inputs(shape: Sequence[int], device: str, dtype: torch.dtype,
                   seed: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random inputs of a 3x3 DCNv2 that keeps the channel count, all requiring grad.

    Returns:
        (x (Tensor[N, C, H, W]), weight (Tensor[C, C, 3, 3]),
        offset (Tensor[N, 18, H, W]), mask (Tensor[N, 9, H, W]))
    """
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)

    def rand(*s, scale=1.0):
        return (torch.randn(*s, generator=gen) * scale).to(device=device, dtype=dtype)

    x = rand(n, c, h, w).requires_grad_()
    weight = rand(c, c, 3, 3, scale=0.05).requires_grad_()
    offset = rand(n, 18, h, w, scale=2.0).requires_grad_()
    mask = torch.rand(n, 9, h, w, generator=gen).to(device=device, dtype=dtype)
    return x, weight, offset, mask.requires_grad_()


def op_candidates() -> Dict[str, Candidate]:
    """name -> fn(x, weight, offset, mask) for every candidate available here.

    ``'conv'`` (a plain ``F.conv2d``, the floor), ``'plugin:<backend>'`` per backend
    of :func:`mmdcn_plugin.ops.deform_conv2d`, and ``'mmcv'`` when mmcv's compiled
    ops are built.
    """
    from ..ops import available_backends, deform_conv2d

    cands = {'conv': lambda x, w, o, m: F.conv2d(x, w, None, 1, 1)}
    for name in available_backends():
        if name != 'auto':
            cands[f'plugin:{name}'] = (
                lambda x, w, o, m, b=name: deform_conv2d(x, o, w, None, 1, 1, 1, m, backend=b))
    try:
        from ..ops.backends.mmcv_impl import mmcv_ops_available
        if mmcv_ops_available():
            from mmcv.ops import modulated_deform_conv2d
            cands['mmcv'] = lambda x, w, o, m: modulated_deform_conv2d(
                x, o, m, w, None, 1, 1, 1, 1, 1)
    except ImportError:
        pass
    return cands


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_once(fn: Candidate, inputs, mode: str, device: str) -> float:
    """Seconds of one call of ``fn`` (``mode='fwd'``) or of its forward+backward."""
    for t in inputs:
        t.grad = None
    _sync(device)
    start = time.perf_counter()
    if mode == 'fwd':
        with torch.no_grad():
            fn(*inputs)
    else:
        fn(*inputs).sum().backward()
    _sync(device)
    return time.perf_counter() - start


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _peak_rss_bytes() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory_mb(shape_name: str, candidate: str, dtype: str) -> float:
    """MiB that one forward+backward of ``candidate`` adds to this process's peak RSS.

    Meant for a fresh process (see :func:`peak_memory_in_child`).  A first call
    warms up; then the kernel's peak-RSS counter is reset (writing 5 to
    /proc/self/clear_refs) so the peak covers the measured call only.
    """
    inputs = make_op_inputs(OP_SHAPES[shape_name], 'cpu', DTYPES[dtype])
    fn = op_candidates()[candidate]
    fn(*inputs).sum().backward()
    for t in inputs:
        t.grad = None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    rss_before = _rss_bytes()
    fn(*inputs).sum().backward()
    return max(_peak_rss_bytes() - rss_before, 0) / 2**20


def peak_memory_in_child(shape_name: str, candidate: str, dtype: str) -> float:
    """:func:`peak_memory_mb` measured in a fresh Python process."""
    code = ('import json, sys; from mmdcn_plugin.benchmark.ops import peak_memory_mb; '
            'print(json.dumps(peak_memory_mb(*sys.argv[1:])))')
    out = subprocess.run([sys.executable, '-c', code, shape_name, candidate, dtype],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def run_ops(device: str = 'cpu', dtype: str = 'float32', shapes: Sequence[str] = ('c3',),
            candidates: Optional[Sequence[str]] = None, repeat: int = 7, warmup: int = 2,
            memory: bool = False, log: Callable[[str], None] = _no_log,
            available: Optional[Dict[str, Candidate]] = None,
            timer: Callable[..., float] = time_once) -> List[dict]:
    """Median time of every candidate per shape and mode, and its ratio to ``'conv'``.

    Candidates are interleaved within every repetition (so drift hits all alike).

    Args:
        candidates: names to time (``'conv'`` is always timed); default: all.
        available: name -> candidate; default :func:`op_candidates` (tests pass
            their own).
        timer: ``timer(fn, inputs, mode, device)`` -> seconds; default :func:`time_once`.

    Returns:
        list of dicts: ``shape``, ``nchw``, ``mode``, ``candidate``, ``median_ms``,
        ``vs_conv`` (median / conv's median) and, with ``memory``, ``peak_mb``.
    """
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError("device: expected 'cpu' on this machine (no CUDA device), got 'cuda'")
    unknown = sorted(set(shapes) - set(OP_SHAPES))
    if unknown:
        raise ValueError(f'shapes: expected names among {sorted(OP_SHAPES)}, got {unknown}')
    cands = op_candidates() if available is None else dict(available)
    if 'conv' not in cands:
        raise ValueError(f"available: expected a 'conv' candidate, got {sorted(cands)}")
    if candidates:
        unknown = sorted(set(candidates) - set(cands))
        if unknown:
            raise ValueError(f'candidates: expected names among {sorted(cands)}, '
                             f'got {unknown}')
        cands = {k: v for k, v in cands.items() if k in candidates or k == 'conv'}
    rows = []
    for shape_name in shapes:
        shape = OP_SHAPES[shape_name]
        inputs = make_op_inputs(shape, device, DTYPES[dtype])
        for mode in MODES:
            times = {name: [] for name in cands}
            for fn in cands.values():
                for _ in range(warmup):
                    timer(fn, inputs, mode, device)
            for rep in range(repeat):
                log(f'[ops] {shape_name} {mode}: repetition {rep + 1}/{repeat}')
                for name, fn in cands.items():
                    times[name].append(timer(fn, inputs, mode, device))
            conv = statistics.median(times['conv'])
            for name, ts in times.items():
                med = statistics.median(ts)
                rows.append(dict(shape=shape_name, nchw='x'.join(map(str, shape)), mode=mode,
                                 candidate=name, median_ms=round(med * 1e3, 2),
                                 vs_conv=round(med / conv, 2)))
    if memory and device == 'cpu':
        for shape_name in shapes:
            for name in cands:
                log(f'[ops] peak memory {shape_name} {name}')
                peak = peak_memory_in_child(shape_name, name, dtype)
                for row in rows:
                    if row['shape'] == shape_name and row['candidate'] == name:
                        row['peak_mb'] = round(peak, 1)
    return rows


def ops_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`run_ops`'s rows: one line per shape and candidate."""
    mem = any('peak_mb' in r for r in rows)
    head = '| shape (N,C,H,W) | candidate | fwd ms | fwd x conv | fwd+bwd ms | fwd+bwd x conv |'
    head += ' peak MB (fwd+bwd) |' if mem else ''
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    keyed = {(r['shape'], r['candidate'], r['mode']): r for r in rows}
    for shape in dict.fromkeys(r['shape'] for r in rows):
        for cand in dict.fromkeys(r['candidate'] for r in rows):
            f, b = keyed[(shape, cand, 'fwd')], keyed[(shape, cand, 'fwd+bwd')]
            line = (f"| {f['nchw'].replace('x', ',')} | {cand} | {f['median_ms']} | "
                    f"{f['vs_conv']}x | {b['median_ms']} | {b['vs_conv']}x |")
            if mem:
                line += f" {b.get('peak_mb', '')} |"
            lines.append(line)
    return '\n'.join(lines)


def geomean(values) -> float:
    values = list(values)
    prod = 1.0
    for v in values:
        prod *= v
    return prod ** (1.0 / len(values))


def ops_summary(rows: List[dict]) -> str:
    """Geometric-mean speed-ups of each plugin backend over mmcv, per mode ('' without mmcv)."""
    out = []
    cands = list(dict.fromkeys(r['candidate'] for r in rows))
    if 'mmcv' not in cands:
        return ''
    for mode in MODES:
        for cand in cands:
            if not cand.startswith('plugin:'):
                continue
            ratios = []
            for shape in dict.fromkeys(r['shape'] for r in rows):
                get = {r['candidate']: r['median_ms'] for r in rows
                       if r['shape'] == shape and r['mode'] == mode}
                ratios.append(get['mmcv'] / get[cand])
            out.append(f'{cand} {mode}: {geomean(ratios):.2f}x faster than mmcv '
                       '(geometric mean over shapes)')
    return '\n'.join(out)
