"""Inference speed on the CPU: the deformable op under each runtime, and a backbone vs its baseline.

``tools/benchmark.py infer`` and ``tools/benchmark.py model CONFIG --infer`` call
:func:`run_infer_ops` and :func:`run_model_infer`.  The method is issue 14's: batch 1,
a fixed number of threads for every runtime, a warm-up, then the median of interleaved
repetitions (so drift hits every candidate alike).  The op's inputs and its PyTorch
candidates are :mod:`.ops`'s; the loop is :mod:`mmdcn_plugin.utils.timing`'s.

Rows follow :func:`mmdcn_plugin.benchmark.run_ops`'s schema (``shape``, ``nchw``,
``mode='infer'``, ``candidate``, ``median_ms``, ``vs_conv``) so that
:func:`mmdcn_plugin.benchmark.write_outputs` (``kind='ops'``) writes and plots them;
``vs_conv`` is the ratio to the plain convolution, or to the plain-conv baseline model.

(This was ``mmdcn_plugin.deploy.speed``; its names are still importable from there.)
"""
import os.path as osp
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..deploy.deform_conv_onnx import DEFORM_CONV_OPSET
from ..deploy.export import export_onnx
from ..deploy.parts import export_part
from ..deploy.runtime import inference_session, require
from ..ops import deform_conv2d
from ..utils.timing import Measure, interleaved_medians, torch_threads, wall_seconds
from .ops import make_op_inputs, op_candidates

# ResNet-50's c3-c5 DCN inputs (the 3x3 conv of each bottleneck) for a batch-1 800x1333 image.
INFER_SHAPES = {'c3': (1, 128, 100, 167), 'c4': (1, 256, 50, 84), 'c5': (1, 512, 25, 42)}

Runner = Callable[[], object]


def _no_log(msg: str) -> None:
    pass


class _DCNv2(nn.Module):
    """A 3x3 DCNv2 (stride 1, padding 1, no bias) whose offsets and mask are inputs."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return deform_conv2d(x, offset, self.weight, None, 1, 1, 1, mask)


class _Conv(nn.Module):
    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, None, 1, 1)


def _session_runner(module: nn.Module, args: Tuple[Tensor, ...], path: str, mode: str,
                    threads: int) -> Runner:
    names = ['x', 'offset', 'mask'][:len(args)]
    export_onnx(module, args, path, opset=DEFORM_CONV_OPSET, deform_conv=mode,
                input_names=names, output_names=['y'], dynamic_batch=False)
    session = inference_session(path, threads)
    feed = {name: a.numpy() for name, a in zip(names, args)}
    return lambda: session.run(None, feed)[0]


def infer_candidates(shape: Sequence[int], threads: int, workdir: str) -> Dict[str, Runner]:
    """name -> runner (no arguments, returns the output) of every candidate available here.

    From :func:`.ops.op_candidates` on the CPU: ``conv`` (PyTorch's plain conv, the
    floor), ``plugin:cpp`` (this package's compiled kernels; ``plugin:fast`` when they
    are not built) and ``mmcv`` (mmcv's CPU kernel, when built); and under onnxruntime
    ``ort:native`` (the ``DeformConv`` node), ``ort:gather`` (the exported gather
    graph) and ``ort:conv`` (its plain ``Conv``).
    """
    x, weight, offset, mask = make_op_inputs(shape, requires_grad=False)
    torch_cands = op_candidates('cpu')
    backend = 'plugin:cpp' if 'plugin:cpp' in torch_cands else 'plugin:fast'
    cands: Dict[str, Runner] = {
        name: (lambda fn=torch_cands[name]: fn(x, weight, offset, mask))
        for name in ('conv', backend, 'mmcv') if name in torch_cands}
    if _has_onnxruntime():
        dcn, conv = _DCNv2(weight).eval(), _Conv(weight).eval()
        for mode in ('native', 'gather'):
            cands[f'ort:{mode}'] = _session_runner(dcn, (x, offset, mask),
                                                   osp.join(workdir, f'{mode}.onnx'), mode,
                                                   threads)
        cands['ort:conv'] = _session_runner(conv, (x,), osp.join(workdir, 'conv.onnx'),
                                            'gather', threads)  # no DeformConv in it
    return cands


def _has_onnxruntime() -> bool:
    try:
        require('onnx', 'onnxruntime')
        return True
    except ImportError:
        return False


def _as_tensor(out) -> Tensor:
    return torch.from_numpy(out) if isinstance(out, np.ndarray) else out


def max_abs_errors(cands: Dict[str, Runner], reference: str,
                   skip: Sequence[str] = ('conv', 'ort:conv')) -> Dict[str, float]:
    """The largest absolute difference of every runner's output from ``reference``'s
    (the runners in ``skip`` compute something else: a plain conv)."""
    if reference not in cands:
        raise ValueError(f'reference: expected one of {sorted(cands)}, got {reference!r}')
    ref = _as_tensor(cands[reference]())
    return {name: float((_as_tensor(run()) - ref).abs().max())
            for name, run in cands.items() if name not in skip}


def run_infer_ops(shapes: Sequence[str] = ('c3', 'c4', 'c5'), threads: int = 2,
                  repeat: int = 3, warmup: int = 1, log: Callable[[str], None] = _no_log,
                  shape_table: Optional[Dict[str, Tuple[int, int, int, int]]] = None,
                  candidates: Optional[Callable[..., Dict[str, Runner]]] = None,
                  measure: Measure = wall_seconds) -> List[dict]:
    """Inference time of the DCNv2 op under every runtime, per shape, against a plain conv.

    Args:
        shapes: names in ``shape_table`` (default :data:`INFER_SHAPES`).
        threads (int): for PyTorch and every onnxruntime session.
        candidates: ``fn(shape, threads, workdir)`` -> name -> runner; default
            :func:`infer_candidates` (tests pass their own).
        measure: run -> seconds (default: the wall clock).

    Returns:
        list of dicts: ``shape``, ``nchw``, ``mode`` (``'infer'``), ``candidate``,
        ``median_ms``, ``vs_conv`` (median / PyTorch conv's median) and ``max_abs_err``
        (largest difference from the plugin backend's output; ``''`` for the convs).
    """
    table = INFER_SHAPES if shape_table is None else shape_table
    unknown = sorted(set(shapes) - set(table))
    if unknown:
        raise ValueError(f'shapes: expected names among {sorted(table)}, got {unknown}')
    make = infer_candidates if candidates is None else candidates
    rows = []
    with torch_threads(threads), torch.no_grad(), tempfile.TemporaryDirectory() as workdir:
        for name in shapes:
            shape = table[name]
            cands = make(shape, threads, workdir)
            plugin = [k for k in cands if k.startswith('plugin:')]
            if 'conv' not in cands or not plugin:
                raise ValueError(f"candidates: expected 'conv' and a 'plugin:' runner, got "
                                 f'{sorted(cands)}')
            errors = max_abs_errors(cands, plugin[0])
            medians = interleaved_medians(cands, repeat, warmup, log, f'[infer] {name} ',
                                          measure=measure)
            for cand, med in medians.items():
                rows.append(dict(shape=name, nchw='x'.join(map(str, shape)), mode='infer',
                                 candidate=cand, median_ms=round(med * 1e3, 2),
                                 vs_conv=round(med / medians['conv'], 2),
                                 max_abs_err=errors.get(cand, '')))
    return rows


def run_model_infer(config: str, baseline: Optional[str] = None, also: Sequence[str] = (),
                    what: str = 'backbone', shape: Tuple[int, int] = (800, 1216),
                    threads: int = 2, repeat: int = 3, warmup: int = 1,
                    cfg_options: Optional[dict] = None,
                    log: Callable[[str], None] = _no_log,
                    measure: Measure = wall_seconds) -> List[dict]:
    """Inference time of a config's backbone (or backbone + neck) against its baseline.

    Random weights (seed 0), one random ``1 x 3 x H x W`` image, ``threads`` threads,
    ``warmup`` calls each, then the median of ``repeat`` interleaved rounds.

    Args:
        config (str): the DCN config.
        baseline (str or None): default: ``config`` with the backbone's deformable
            layers removed (see :func:`mmdcn_plugin.apis.strip_backbone_dcn`).
        also (sequence of str): more configs timed in the same rounds (e.g. mmdet's
            mmcv DCNv2 config).
        what (str): ``'backbone'`` or ``'backbone+neck'``.
        measure: run -> seconds (default: the wall clock).

    Returns:
        list of dicts, baseline first: ``shape`` (``what``), ``nchw``, ``mode``
        (``'infer'``), ``candidate`` (``'baseline'``, ``'config'``, then the ``also``
        configs' file names), ``median_ms``, ``vs_conv`` (median / the baseline's median).
    """
    from ..apis import build_model_from_config
    from .model import resolve_config
    if what not in ('backbone', 'backbone+neck'):
        raise ValueError(f"what: expected 'backbone' or 'backbone+neck', got {what!r}")

    def build(path, strip=False, argument='config'):
        model = build_model_from_config(resolve_config(path, argument),
                                        cfg_options=cfg_options, strip_dcn=strip, seed=0)
        return export_part(model, what)

    parts = {'baseline': (build(baseline, argument='baseline') if baseline
                          else build(config, strip=True)),
             'config': build(config)}
    for path in also:
        name = osp.splitext(osp.basename(path))[0]
        parts[path if name in parts else name] = build(path, argument='also')
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch_threads(threads), torch.no_grad():
        cands = {name: (lambda p=part: p(x)) for name, part in parts.items()}
        medians = interleaved_medians(cands, repeat, warmup, log, f'[infer] {what} ',
                                          measure=measure)
    base = medians['baseline']
    return [dict(shape=what, nchw='x'.join(map(str, x.shape)), mode='infer', candidate=name,
                 median_ms=round(med * 1e3, 1), vs_conv=round(med / base, 3))
            for name, med in medians.items()]


def infer_table(rows: List[dict], what: str = 'op') -> str:
    """A Markdown table of :func:`run_infer_ops`'s or :func:`run_model_infer`'s rows."""
    ratio = 'x plain conv' if what == 'op' else 'x baseline'
    lines = [f'| shape (N,C,H,W) | candidate | ms | {ratio} |'
             + (' max abs error |' if what == 'op' else ''), '|---|---|---|---|'
             + ('---|' if what == 'op' else '')]
    for r in rows:
        err = r.get('max_abs_err', '')
        err = f' {err:.2g} |' if isinstance(err, float) else ' |'
        lines.append(f"| {r['shape']} {r['nchw'].replace('x', ',')} | {r['candidate']} | "
                     f"{r['median_ms']} | {r['vs_conv']}x |" + (err if what == 'op' else ''))
    return '\n'.join(lines)
