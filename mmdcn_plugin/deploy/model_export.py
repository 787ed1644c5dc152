"""Export part of a detector config to ONNX and check it: what ``tools/export_onnx.py`` runs."""
import os.path as osp
from typing import List, NamedTuple, Optional, Tuple

import torch

from .check import Check, check_export
from .deform_conv_onnx import resolve_mode
from .export import ExportResult, export_onnx
from ..layers import deformable_layers
from .parts import deformable_calls, export_part
from .runtime import check_opset, default_opset, require


class ModelExport(NamedTuple):
    config: str
    what: str
    shape: Tuple[int, int]
    deformable_layers: int
    deformable_calls: int    # layers shared across levels count once per level
    export: ExportResult
    check: Check
    atol: float
    threads: int

    @property
    def nodes_ok(self) -> bool:
        """One ``DeformConv`` node per deformable-layer call (native), none (gather graph)."""
        expected = self.deformable_calls if self.export.deform_conv == 'native' else 0
        return self.check.deform_conv_nodes == expected

    @property
    def max_abs_error(self) -> float:
        return max((d.max_abs for d in self.check.diffs), default=0.0)

    @property
    def numerics_ok(self) -> bool:
        return self.max_abs_error <= self.atol  # False for NaN and inf too

    @property
    def ok(self) -> bool:
        return self.nodes_ok and self.numerics_ok


def default_out(what: str, checkpoint: Optional[str] = None) -> str:
    """``<checkpoint stem>_<what>.onnx`` next to the checkpoint, else ``<what>.onnx`` here."""
    name = what.replace('+', '_')
    if checkpoint:
        stem = osp.splitext(osp.basename(checkpoint))[0]
        return osp.join(osp.dirname(osp.abspath(checkpoint)), f'{stem}_{name}.onnx')
    return f'{name}.onnx'


def export_model(config: str, *, checkpoint: Optional[str] = None, what: str = 'backbone',
                 shape: Tuple[int, int] = (128, 128), out: Optional[str] = None,
                 opset: Optional[int] = None, deform_conv: str = 'auto',
                 exporter: str = 'torchscript', atol: float = 1e-4,
                 threads: Optional[int] = None, repeat: int = 3, seed: int = 0) -> ModelExport:
    """Build ``config``, export its ``what`` on a random ``1 x 3 x H x W`` input, check it.

    Args:
        config (str): MMDetection config; its model must hold :class:`DeformableConv2d`
            layers in the exported part.
        checkpoint (str or None): weights to load (default: random, seeded).
        what (str): ``'backbone'``, ``'backbone+neck'`` or ``'dense-model'`` (see
            :func:`~mmdcn_plugin.deploy.parts.export_part`).
        shape ((int, int)): the sample's height and width.
        out (str or None): the file (default: :func:`default_out`).
        opset (int or None): default: :func:`~mmdcn_plugin.deploy.runtime.default_opset`.
        deform_conv, exporter: see :func:`~mmdcn_plugin.deploy.export.export_onnx`.
        atol (float): largest accepted absolute difference from PyTorch.
        threads (int or None): for both runtimes' timing (default: torch's current).
        repeat (int): timed runs after one warm-up; the median is reported.

    Raises:
        ValueError: no deformable layer in the part; ``deform_conv='native'`` below
            opset 19; an unknown ``what``/``exporter``/``deform_conv``.
        ImportError: ``onnx`` or ``onnxruntime`` (``onnxscript`` for dynamo) is missing.
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
    """
    from ..apis import build_model_from_config

    require('onnx', 'onnxruntime', *(['onnxscript'] if exporter == 'dynamo' else []))
    if opset is None:
        opset = default_opset(dynamo=exporter == 'dynamo')
    # Fail on a bad opset before building anything.
    resolve_mode(deform_conv, opset)
    check_opset(opset, dynamo=exporter == 'dynamo')
    if not (atol >= 0):
        raise ValueError(f'atol must be >= 0, got {atol!r}')
    model = build_model_from_config(config, checkpoint, seed=seed)
    part = export_part(model, what)
    layers = deformable_layers(part)
    if not layers:
        raise ValueError(f'{config}: expected DeformableConv2d layers in the {what}, found '
                         'none (a config without deformable layers has no DeformConv to '
                         'export; export its DCN variant)')
    gen = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 3, *shape, generator=gen)
    calls = deformable_calls(part, sample)
    result = export_onnx(part, sample, out or default_out(what, checkpoint), opset=opset,
                         deform_conv=deform_conv, exporter=exporter)
    threads = threads or torch.get_num_threads()
    check = check_export(result.path, part, sample, result.input_names[0],
                         result.output_names, threads, repeat)
    return ModelExport(config, what, tuple(shape), len(layers), calls, result, check, atol,
                       threads)


def report_lines(done: ModelExport) -> List[str]:
    """What ``tools/export_onnx.py`` prints about an export and its check."""
    res, check = done.export, done.check
    h, w = done.shape
    lines = [f'exported {done.what} of {done.config} ({h} x {w} input, dynamic batch) to '
             f'{res.path}: opset {res.opset}, {res.exporter} exporter, '
             f'deformable convolutions as {res.deform_conv}']
    expected = done.deformable_calls if res.deform_conv == 'native' else 0
    flag = '' if done.nodes_ok else f'  (expected {expected})'
    shared = ('' if done.deformable_calls == done.deformable_layers else
              f' run {done.deformable_calls} times (heads shared across levels)')
    lines.append(f'DeformConv nodes: {check.deform_conv_nodes} for {done.deformable_layers} '
                 f'deformable layer(s){shared}{flag}')
    lines.append(f'file size: {check.file_bytes / 2**20:.2f} MiB ({check.file_bytes} bytes)')
    for d in check.diffs:
        over = '' if d.max_abs <= done.atol else f'  > atol {done.atol:g}'
        lines.append(f'output {d.name} {d.shape}: max abs error {d.max_abs:.3g}{over}')
    lines.append(f'largest difference from PyTorch: {done.max_abs_error:.3g} '
                 f'(atol {done.atol:g})')
    lines.append(f'latency, batch 1, {done.threads} thread(s), median after a warm-up: PyTorch '
                 f'{check.torch_seconds * 1e3:.1f} ms, onnxruntime '
                 f'{check.ort_seconds * 1e3:.1f} ms')
    return lines
