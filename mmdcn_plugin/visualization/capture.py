"""Recording what deformable layers do during a forward pass, and switching their offsets off.

* :func:`capture_layers`: forward hooks that record, for image 0 of the batch, each
  deformable layer's input size, offsets, masks and (optionally) output, as
  :class:`LayerCapture` objects in forward order.
* :func:`zero_offsets`: forward hooks that replace offsets by zeros, so a layer
  computes a plain convolution with its own weights (times its DCNv2 mask).
* :func:`check_layer_name`: resolve a user's ``--layer`` argument.

Both context managers remove their hooks on exit, also when the block raises.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import deformable_layers

Pair = Tuple[int, int]


@dataclass
class LayerCapture:
    """What one call of a deformable layer looked like, for image 0 of the batch.

    Attributes:
        name (str): module path, e.g. ``backbone.layer4.2.conv2``.
        input_size, output_size ((H, W)): the layer's input and output maps.
        kernel_size, stride, padding, dilation ((int, int)): its geometry.
        offset (Tensor[2*G*kh*kw, H_out, W_out]): (dy, dx) per group and kernel point,
            float32 on the CPU (mmcv's layout, see :func:`mmdcn_plugin.ops.deform_conv2d`).
        mask (Tensor[G*kh*kw, H_out, W_out] or None): DCNv2 masks (after the sigmoid).
        output (Tensor[C_out, H_out, W_out] or None): the layer's output, when kept.
    """

    name: str
    input_size: Pair
    output_size: Pair
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    offset: Tensor
    mask: Optional[Tensor] = None
    output: Optional[Tensor] = None

    @property
    def deform_groups(self) -> int:
        return self.offset.shape[0] // (2 * self.kernel_size[0] * self.kernel_size[1])

    def response_map(self) -> np.ndarray:
        """Channel mean of ``|output|``: ``ndarray[H_out, W_out]``.

        Raises:
            ValueError: the output was not kept (see ``keep_output`` of
                :func:`capture_layers`).
        """
        if self.output is None:
            raise ValueError(f'layer {self.name!r}: expected a capture with its output '
                             '(capture_layers(..., keep_output=[name])), got output=None')
        return self.output.abs().mean(0).numpy()


def check_layer_name(model: nn.Module, layer: Optional[str]) -> str:
    """``layer`` if it names a deformable layer of ``model``; the last one if None.

    Raises:
        ValueError: the model has no deformable layer, or ``layer`` is not one.
    """
    names = [name for name, _ in deformable_layers(model)]
    if not names:
        raise ValueError('no deformable layer found: the model has no DeformableConv2d')
    if layer is None:
        return names[-1]
    if layer not in names:
        raise ValueError(f'unknown layer {layer!r}: expected the module path of a '
                         f'deformable layer, one of {names}')
    return layer


@contextmanager
def zero_offsets(model: nn.Module, names: Optional[Sequence[str]] = None) -> Iterator[None]:
    """Make deformable layers sample their regular grid (offsets zeroed, masks kept).

    Each chosen layer then computes a plain convolution with its own weights
    (times its DCNv2 mask).  Implemented as forward hooks on the offset heads
    that replace the offsets by zeros; removed on exit.

    Args:
        model (nn.Module): the model (wrappers are unwrapped).
        names (sequence of str or None): module paths; None zeroes every layer.
    """
    handles = []

    def zero(head, inputs, output):
        offset, mask = output
        return torch.zeros_like(offset), mask

    try:
        for name, layer in deformable_layers(model):
            if names is None or name in names:
                handles.append(layer.offset_head.register_forward_hook(zero))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture_layers(model: nn.Module, keep_output: Sequence[str] = ()
                   ) -> Iterator[List[LayerCapture]]:
    """Record every deformable layer's first call while the block runs.

    Yields the list that fills up in forward order.  Only the first call of each
    layer is kept (a head shared across FPN levels runs once per level).

    Args:
        model (nn.Module): the model (wrappers are unwrapped).
        keep_output (sequence of str): layers whose output to keep as well.
    """
    captures: List[LayerCapture] = []
    seen = set()
    pending: Dict[str, tuple] = {}
    handles = []

    def on_head(name):
        def hook(head, inputs, output):
            if name not in seen:
                offset, mask = output
                pending[name] = (tuple(inputs[0].shape[-2:]), offset[0].detach().float().cpu(),
                                 None if mask is None else mask[0].detach().float().cpu())
        return hook

    def on_layer(name, layer):
        def hook(module, inputs, output):
            if name in seen or name not in pending:
                return
            seen.add(name)
            input_size, offset, mask = pending.pop(name)
            captures.append(LayerCapture(
                name, input_size, tuple(output.shape[-2:]), layer.kernel_size, layer.stride,
                layer.padding, layer.dilation, offset, mask,
                output[0].detach().float().cpu() if name in keep_output else None))
        return hook

    try:
        for name, layer in deformable_layers(model):
            handles.append(layer.offset_head.register_forward_hook(on_head(name)))
            handles.append(layer.register_forward_hook(on_layer(name, layer)))
        yield captures
    finally:
        for h in handles:
            h.remove()
