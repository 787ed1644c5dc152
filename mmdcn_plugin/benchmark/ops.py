"""Time the deformable op (every backend, mmcv's and torchvision's kernels) against a conv.

The candidates and their inputs are made here once, for every benchmark of the op:
:func:`run_ops` (training: forward and forward+backward, CPU or CUDA) and
:mod:`.infer` (CPU inference next to onnxruntime).
"""
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.tf32 import cudnn_conv_tf32, cudnn_conv_tf32_set, matmul_tf32
from ..utils.timing import Measure, interleaved_times, measure_for
from .floor import Ceilings, add_floors

# ResNet-50's c3-c5 DCN inputs (the 3x3 conv2 of each bottleneck, at its output size):
# 'c3'-'c5' for a 400x667 image at batch 2 (the CPU default), and the '-800x1216' ones
# for a batch-2 training batch of mmdet's 1x schedule (800x1333 resized, padded to 32).
OP_SHAPES = {'c3': (2, 128, 50, 84), 'c4': (2, 256, 25, 42), 'c5': (2, 512, 13, 21),
             'c3-800x1216': (2, 128, 100, 152), 'c4-800x1216': (2, 256, 50, 76),
             'c5-800x1216': (2, 512, 25, 38)}
# Names that stand for several shapes on the command line (--shapes r50-c3c5).
SHAPE_PRESETS = {'r50-c3c5': ('c3-800x1216', 'c4-800x1216', 'c5-800x1216'),
                 'r50-c3c5-400x667': ('c3', 'c4', 'c5')}
DTYPES = {'float32': torch.float32, 'float64': torch.float64, 'float16': torch.float16,
          'bfloat16': torch.bfloat16}
MODES = ('fwd', 'fwd+bwd')

Candidate = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

# Candidates not called at all for a (device type, dtype): mmcv's kernels are not built for
# these dtypes, and with a source-built mmcv (issue 24) the error message it would build
# may end the process instead of raising.  They get a row saying so.
NOT_RUN = {('mmcv', 'cuda', 'bfloat16'): "mmcv has no bfloat16 kernels (not called: with a "
                                         'source-built mmcv its error can end the process)',
           ('mmcv', 'cpu', 'bfloat16'): 'mmcv has no bfloat16 CPU kernels (not called)',
           ('mmcv', 'cpu', 'float16'): 'mmcv has no float16 CPU kernels (not called)'}


def _no_log(msg: str) -> None:
    pass


def expand_shapes(names: Sequence[str]) -> List[str]:
    """Shape names with every preset of :data:`SHAPE_PRESETS` replaced by its shapes.

    Raises:
        ValueError: a name that is neither a shape nor a preset.
    """
    unknown = sorted(set(names) - set(OP_SHAPES) - set(SHAPE_PRESETS))
    if unknown:
        raise ValueError(f'shapes: expected names among {sorted(OP_SHAPES)} or presets '
                         f'{sorted(SHAPE_PRESETS)}, got {unknown}')
    out: List[str] = []
    for name in names:
        out.extend(SHAPE_PRESETS.get(name, (name,)))
    return list(dict.fromkeys(out))


def make_op_inputs(shape: Sequence[int], device: str = 'cpu', dtype: torch.dtype = torch.float32,
                   seed: int = 0, requires_grad: bool = True
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random inputs of a 3x3 DCNv2 (stride 1, padding 1) that keeps the channel count.

    Drawn on the CPU from one seeded generator (the same numbers on every device),
    then moved.  Offsets are a few pixels, the mask is in [0, 1].

    Returns:
        (x (Tensor[N, C, H, W]), weight (Tensor[C, C, 3, 3]),
        offset (Tensor[N, 18, H, W]), mask (Tensor[N, 9, H, W])), all leaves that
        require grad when ``requires_grad``.
    """
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)

    def rand(*s, scale=1.0):
        return (torch.randn(*s, generator=gen) * scale).to(device=device, dtype=dtype)

    x = rand(n, c, h, w)
    weight = rand(c, c, 3, 3, scale=0.05)
    offset = rand(n, 18, h, w, scale=2.0)
    mask = torch.rand(n, 9, h, w, generator=gen).to(device=device, dtype=dtype)
    inputs = (x, weight, offset, mask)
    return tuple(t.requires_grad_() for t in inputs) if requires_grad else inputs


def _runs_on(backend: str, device: torch.device) -> bool:
    """Whether backend ``backend`` of ours takes ``device``'s tensors here (the public
    resolver answers; it never runs a kernel on the CPU)."""
    from ..ops.backends import resolve_backend
    try:
        return resolve_backend(backend, device) == backend
    except (RuntimeError, ValueError):
        return False


def _torchvision_deform_conv2d() -> Optional[Callable]:
    try:
        from torchvision.ops import deform_conv2d
    except (ImportError, RuntimeError):  # not installed, or built for another torch
        return None
    return deform_conv2d


def op_candidates(device: str = 'cpu') -> Dict[str, Candidate]:
    """name -> fn(x, weight, offset, mask) of every candidate that runs on ``device`` here.

    - ``'conv'``: a plain ``F.conv2d`` of the same shape (cuDNN on CUDA), the floor;
    - ``'plugin:auto'`` (on CUDA; on the CPU it is ``plugin:cpp`` or ``plugin:fast``)
      and ``'plugin:<name>'`` for every backend in
      :data:`mmdcn_plugin.ops.backends.BACKENDS` that runs on ``device`` here
      (a backend added to the table appears by itself);
    - ``'mmcv'``: mmcv's raw kernel (``mmcv.ops.modulated_deform_conv2d``), when its
      ops are built for ``device``;
    - ``'torchvision'``: ``torchvision.ops.deform_conv2d``, when importable.
    """
    from ..ops import deform_conv2d
    from ..ops.backends import BACKENDS

    dev = torch.device(device)
    cands: Dict[str, Candidate] = {'conv': lambda x, w, o, m: F.conv2d(x, w, None, 1, 1)}
    names = (['auto'] if dev.type != 'cpu' else []) + [n for n in BACKENDS if _runs_on(n, dev)]
    for name in names:
        cands[f'plugin:{name}'] = (
            lambda x, w, o, m, b=name: deform_conv2d(x, o, w, None, 1, 1, 1, m, backend=b))
    if _runs_on('mmcv', dev):
        from mmcv.ops import modulated_deform_conv2d
        cands['mmcv'] = lambda x, w, o, m: modulated_deform_conv2d(x, o, m, w, None,
                                                                   1, 1, 1, 1, 1)
    tv = _torchvision_deform_conv2d()
    if tv is not None:
        cands['torchvision'] = lambda x, w, o, m: tv(x, o, w, None, (1, 1), (1, 1), (1, 1),
                                                     mask=m)
    return cands


def op_run(fn: Candidate, inputs: Sequence[Tensor], mode: str) -> Callable[[], None]:
    """A run (no arguments) of ``fn`` on ``inputs``: its forward under ``no_grad``
    (``mode='fwd'``), or its forward and the backward of the output's sum."""
    if mode not in MODES:
        raise ValueError(f'mode: expected one of {list(MODES)}, got {mode!r}')

    def run():
        for t in inputs:
            t.grad = None
        if mode == 'fwd':
            with torch.no_grad():
                fn(*inputs)
        else:
            fn(*inputs).sum().backward()
    return run


def tf32_flags() -> Dict[str, bool]:
    """Whether TF32 may be used: by cuDNN convolutions, and by matmuls (the ``addmm``
    of mmcv's and torchvision's kernels, the GEMMs of our backends)."""
    return dict(cudnn=cudnn_conv_tf32(), matmul=matmul_tf32())


def tf32_note(candidate: str, device: str, dtype: str) -> str:
    """Which TF32 switch governs ``candidate``'s arithmetic and how it is set now
    (``'cudnn.allow_tf32=True'``); ``'n/a'`` outside CUDA float32."""
    if not device.startswith('cuda') or dtype != 'float32':
        return 'n/a'
    flags = tf32_flags()
    if candidate == 'conv':
        return f"cudnn.allow_tf32={flags['cudnn']}"
    # mmcv's and torchvision's addmm, our backends' GEMMs and triton's tl.dot alike.
    return f"matmul.allow_tf32={flags['matmul']}"


def _conv_tf32(allowed: Optional[bool]) -> contextlib.AbstractContextManager:
    """cuDNN's TF32 switch set to ``allowed`` inside (left alone when None)."""
    return contextlib.nullcontext() if allowed is None else cudnn_conv_tf32_set(allowed)


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
    warms up and its gradients are dropped, so the measured call's own gradients count
    in its peak; then the kernel's peak-RSS counter is reset (writing 5 to
    /proc/self/clear_refs) so the peak covers the measured call only.
    """
    inputs = make_op_inputs(OP_SHAPES[shape_name], 'cpu', DTYPES[dtype])
    run = op_run(op_candidates()[candidate], inputs, 'fwd+bwd')
    run()
    for t in inputs:
        t.grad = None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    rss_before = _rss_bytes()
    run()
    return max(_peak_rss_bytes() - rss_before, 0) / 2**20


def peak_memory_in_child(shape_name: str, candidate: str, dtype: str) -> float:
    """:func:`peak_memory_mb` measured in a fresh Python process.

    The child runs with glibc's mmap threshold fixed at 64 KiB, so every tensor-sized
    block is mapped on allocation and unmapped on free.  With glibc's default (a
    threshold that rises after the first large free), the warm-up's freed blocks stay
    resident in the heap and the measured call reuses some of them, so its peak varied
    from run to run (plugin:torch at c5 read 9.5-76.5 MiB and the conv 0.0, over four
    fresh processes each; with the fixed threshold, each repeated to within 0.4 MiB).
    """
    code = ('import json, sys; from mmdcn_plugin.benchmark.ops import peak_memory_mb; '
            'print(json.dumps(peak_memory_mb(*sys.argv[1:])))')
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    out = subprocess.run([sys.executable, '-c', code, shape_name, candidate, dtype],
                         capture_output=True, text=True, check=True, env=env)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def peak_cuda_memory_mb(run: Callable[[], None]) -> float:
    """MiB of CUDA memory one call of ``run`` allocates above what was held before."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return max(torch.cuda.max_memory_allocated() - before, 0) / 2**20


def run_ops(device: str = 'cpu', dtype: str = 'float32', shapes: Sequence[str] = ('c3',),
            candidates: Optional[Sequence[str]] = None, repeat: int = 7, warmup: int = 2,
            memory: bool = False, log: Callable[[str], None] = _no_log,
            available: Optional[Dict[str, Candidate]] = None,
            measure: Optional[Measure] = None,
            strict_fp32_conv: bool = False, ceilings: Optional[Ceilings] = None,
            on_rows: Optional[Callable[[List[dict]], None]] = None) -> List[dict]:
    """Median time of every candidate per shape and mode, and its ratio to ``'conv'``.

    Candidates are interleaved in every repetition (so drift hits all alike), through
    :func:`mmdcn_plugin.utils.timing.interleaved_times`: wall clock on the CPU, CUDA
    events on CUDA, where every timed call starts with the L2 cache flushed (the
    shapes' inputs fit in it, and the candidates share them: unflushed, each would
    find in cache what the one before it read).  A candidate that fails (e.g. mmcv has
    no bfloat16 kernel) gets a row with its ``error`` instead of times; the others go on.

    Args:
        shapes: names of :data:`OP_SHAPES` or presets of :data:`SHAPE_PRESETS`.
        candidates: names to time (``'conv'`` is always timed); default: all.
        available: name -> candidate; default :func:`op_candidates` for ``device``
            (tests pass their own).
        measure: run -> seconds; default :func:`~mmdcn_plugin.utils.timing.measure_for`
            ``device``.
        strict_fp32_conv (bool): turn cuDNN's TF32 off for the run, so that the conv
            computes in strict float32 as the ``addmm`` of mmcv and torchvision do
            (by default PyTorch lets cuDNN use TF32 and matmuls not).
        ceilings (Ceilings): the machine's, from :func:`.floor.measure_ceilings`: every
            timed row then gets its floor (:func:`.floor.add_floors`).
        on_rows: called with all rows so far after every shape (a caller saves them, so
            a run stopped part-way keeps what it measured).

    Returns:
        list of dicts: ``shape``, ``nchw``, ``mode``, ``candidate``, ``device``,
        ``dtype``, ``tf32`` (which TF32 switch governed that side, ``'n/a'`` outside
        CUDA float32), ``median_ms``, ``vs_conv`` (median / conv's median), ``spread``
        ((slowest - fastest repetition) / median: a difference between candidates
        smaller than it is noise), with ``ceilings`` ``floor_ms``, ``vs_floor`` and
        ``bound``, and with ``memory`` ``peak_mb`` (fwd+bwd); or, for a failed
        candidate, ``error``.
    """
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError("device: expected 'cpu' on this machine (no CUDA device), got "
                         f"{device!r}")
    if dtype not in DTYPES:
        raise ValueError(f'dtype: expected one of {sorted(DTYPES)}, got {dtype!r}')
    shape_names = expand_shapes(shapes)
    cands = op_candidates(device) if available is None else dict(available)
    if 'conv' not in cands:
        raise ValueError(f"available: expected a 'conv' candidate, got {sorted(cands)}")
    if candidates:
        unknown = sorted(set(candidates) - set(cands))
        if unknown:
            raise ValueError(f'candidates: expected names among {sorted(cands)}, '
                             f'got {unknown}')
        cands = {k: v for k, v in cands.items() if k in candidates or k == 'conv'}
    measure = measure_for(device, flush_cache=True) if measure is None else measure
    skipped = {name: NOT_RUN[(name, torch.device(device).type, dtype)] for name in cands
               if (name, torch.device(device).type, dtype) in NOT_RUN}
    cands = {k: v for k, v in cands.items() if k not in skipped}
    rows = []
    with _conv_tf32(False if strict_fp32_conv else None):
        for shape_name in shape_names:
            shape = OP_SHAPES[shape_name]
            inputs = make_op_inputs(shape, device, DTYPES[dtype])
            for mode in MODES:
                errors: Dict[str, str] = dict(skipped)
                runs = {name: op_run(fn, inputs, mode) for name, fn in cands.items()}
                times = interleaved_times(runs, repeat, warmup, log,
                                          f'[ops] {shape_name} {mode}: ', measure=measure,
                                          errors=errors)
                if 'conv' not in times:
                    raise RuntimeError(f"the plain conv failed at {shape_name} {mode}: "
                                       f"{errors['conv']}")
                conv = statistics.median(times['conv'])
                for name in list(cands) + list(skipped):
                    row = dict(shape=shape_name, nchw='x'.join(map(str, shape)), mode=mode,
                               candidate=name, device=device, dtype=dtype,
                               tf32=tf32_note(name, device, dtype))
                    if name in errors:
                        row['error'] = errors[name]
                    else:
                        med = statistics.median(times[name])
                        row.update(median_ms=round(med * 1e3, 3), vs_conv=round(med / conv, 3),
                                   spread=round((max(times[name]) - min(times[name])) / med, 3))
                    rows.append(row)
                if ceilings is not None:
                    add_floors(rows, ceilings)
            if memory and device.startswith('cuda'):
                for name in _succeeded(rows, shape_name, cands):
                    peak = peak_cuda_memory_mb(op_run(cands[name], inputs, 'fwd+bwd'))
                    _set_peak(rows, shape_name, name, peak)
            del inputs
            if on_rows is not None:
                on_rows(list(rows))
    if memory and device == 'cpu':
        for shape_name in shape_names:
            for name in _succeeded(rows, shape_name, cands):
                log(f'[ops] peak memory {shape_name} {name}')
                _set_peak(rows, shape_name, name, peak_memory_in_child(shape_name, name, dtype))
    return rows


def _succeeded(rows: List[dict], shape_name: str, cands) -> List[str]:
    failed = {r['candidate'] for r in rows if r['shape'] == shape_name and 'error' in r}
    return [name for name in cands if name not in failed]


def _set_peak(rows: List[dict], shape_name: str, candidate: str, peak: float) -> None:
    for row in rows:
        if row['shape'] == shape_name and row['candidate'] == candidate:
            row['peak_mb'] = round(peak, 1)
