"""Which part of a detector an export covers: backbone, backbone + neck, or the dense model.

Each part is a module of one image tensor ``Tensor[N, 3, H, W]`` (already normalised,
as after the data preprocessor) that returns a flat tuple of tensors, so that every
output gets an ONNX name.
"""
from typing import List, Tuple

import torch
from torch import Tensor, nn

from ..layers import DeformableConv2d

PARTS = ('backbone', 'backbone+neck', 'dense-model')
# The raw per-level outputs of mmdet's dense heads, in the order their forward returns them.
DENSE_OUTPUTS = ('cls_score', 'bbox_pred', 'centerness')


def _flat(out) -> Tuple[Tensor, ...]:
    if isinstance(out, Tensor):
        return (out,)
    return tuple(t for item in out for t in _flat(item))


class BackbonePart(nn.Module):
    """``model.backbone`` (and ``model.neck``): one feature map per level."""

    def __init__(self, model: nn.Module, with_neck: bool):
        super().__init__()
        self.backbone = model.backbone
        self.neck = model.neck if with_neck else None

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        feats = self.backbone(x)
        return _flat(self.neck(feats) if self.neck is not None else feats)

    def output_names(self, count: int) -> List[str]:
        prefix = 'neck' if self.neck is not None else 'feat'
        return [f'{prefix}{i}' for i in range(count)]


class DensePart(nn.Module):
    """Backbone, neck and the dense head up to its raw outputs, before decoding and NMS.

    The head is ``model.bbox_head`` of a single-stage detector (RetinaNet, FCOS, ...)
    or ``model.rpn_head`` of a two-stage one (its second stage works on sampled boxes).
    Outputs: every level of ``cls_score``, then of ``bbox_pred`` (then ``centerness``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        head = getattr(model, 'bbox_head', None) if not hasattr(model, 'roi_head') else None
        head = head if head is not None else getattr(model, 'rpn_head', None)
        if head is None or not hasattr(model, 'extract_feat'):
            raise ValueError(f'what=dense-model: expected a detector with a dense bbox_head '
                             f'(RetinaNet, FCOS) or an rpn_head, got {type(model).__name__}')
        self.model = model
        self.head = head

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return _flat(self.head(self.model.extract_feat(x)))

    def output_names(self, count: int) -> List[str]:
        """Names of the ``count`` flat outputs: each kind of output holds one map per
        level of the head's prior generator (``cls_score0``, ..., ``bbox_pred0``, ...);
        ``output0``, ... when ``count`` is no multiple of the levels."""
        levels = getattr(getattr(self.head, 'prior_generator', None), 'num_levels', None)
        if not levels or count % levels:
            return [f'output{i}' for i in range(count)]
        kinds = [DENSE_OUTPUTS[i] if i < len(DENSE_OUTPUTS) else f'out{i}_'
                 for i in range(count // levels)]
        return [f'{kind}{level}' for kind in kinds for level in range(levels)]


def export_part(model: nn.Module, what: str) -> nn.Module:
    """The module of ``model`` that an export with ``--what what`` covers, in eval mode.

    Raises:
        ValueError: ``what`` is unknown, or the model lacks the part.
    """
    if what not in PARTS:
        raise ValueError(f'what must be one of {list(PARTS)}, got {what!r}')
    if not hasattr(model, 'backbone'):
        raise ValueError(f'what={what}: expected a detector with a backbone, got '
                         f'{type(model).__name__}')
    if what == 'dense-model':
        return DensePart(model).eval()
    with_neck = what == 'backbone+neck'
    if with_neck and getattr(model, 'neck', None) is None:
        raise ValueError(f'what=backbone+neck: expected a detector with a neck, '
                         f'{type(model).__name__} has none')
    return BackbonePart(model, with_neck).eval()


def deformable_calls(module: nn.Module, sample: Tensor) -> int:
    """How many times one forward of ``module`` on ``sample`` runs a deformable layer.

    The number of ``DeformConv`` nodes an export holds: a head shared across FPN levels
    (FCOS's, RetinaNet's) runs, and is exported, once per level.
    """
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1))
             for m in module.modules() if isinstance(m, DeformableConv2d)]
    try:
        with torch.no_grad():
            module(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return len(calls)
