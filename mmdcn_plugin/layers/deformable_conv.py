"""DeformableConv2d: a drop-in deformable convolution for MMDetection's conv slots.

References:
    Dai et al., "Deformable Convolutional Networks", ICCV 2017 (DCNv1).
    Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019.
"""
import math
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from mmdet.registry import MODELS

from ..ops import deform_conv2d
from ..ops.backends import BACKENDS
from ..ops.checks import to_pair
from .offset_heads import GEOMETRY_ARGS, BaseOffsetHead, ConvOffsetHead


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return value


def _resolve_deform_groups(deform_groups, deformable_groups):
    """``deform_groups``, given under either spelling (mmcv's ``deprecated_api_warning``)."""
    if deformable_groups is None:
        return 1 if deform_groups is None else deform_groups
    _positive_int(deformable_groups, 'deformable_groups')
    if deform_groups is not None and deform_groups != deformable_groups:
        raise ValueError(f'deform_groups={deform_groups!r} and its deprecated spelling '
                         f'deformable_groups={deformable_groups!r} disagree; give only '
                         'deform_groups')
    warnings.warn('DeformableConv2d: deformable_groups is deprecated, use deform_groups '
                  f'(got deformable_groups={deformable_groups!r})', DeprecationWarning,
                  stacklevel=3)
    return deformable_groups


@MODELS.register_module()
class DeformableConv2d(nn.Module):
    """Deformable convolution whose offsets (and DCNv2 masks) come from an offset head.

    ``y = deform_conv2d(x, *offset_head(x), weight, bias)``; see
    :func:`mmdcn_plugin.ops.deform_conv2d` for the op and the offset layout.

    Differences from mmcv's ``DCN``/``DCNv2``: one class for both versions
    (``modulated``), a pluggable ``offset_head`` and ``backend``, every batch size and
    small feature maps accepted, arguments validated with readable errors.  mmcv's
    state dicts load into it (``conv_offset.*`` becomes ``offset_head.conv.*``).

    A fresh layer samples the regular grid: its offset head's last layer is zero.
    DCNv1 then computes exactly ``conv2d(x, weight, bias)``; DCNv2 multiplies every
    sample by the mask ``sigmoid(0) = 0.5``, as mmcv's DCNv2 does, so it computes
    ``0.5 * conv2d(x, weight) + bias``, unless ``mask_scale=2`` makes the mask
    ``2 * sigmoid(0) = 1`` and the layer starts as exactly ``conv2d(x, weight, bias)``.

    Args:
        in_channels (int), out_channels (int), kernel_size (int or pair),
        stride, padding, dilation (int or pair), groups (int): as ``nn.Conv2d``.
        deform_groups (int): groups of input channels sharing one offset field.
            Default: 1.
        bias (bool): learn a bias. Default: False (mmdet's backbones use norms).
        modulated (bool): DCNv2 (True, with masks) or DCNv1 (False). Default: True.
        offset_head (dict or None): ``dict(type=..., **options)`` of a head registered
            in ``mmdet.registry.MODELS``; the layer adds its own geometry.
            Default: ``dict(type='ConvOffsetHead')``.
        backend (str or None): see :func:`mmdcn_plugin.ops.deform_conv2d`.
        mask_scale (float): DCNv2 only: the mask is ``mask_scale * sigmoid(logits)``,
            in ``(0, mask_scale)``.  1 is mmcv's DCNv2 (a fresh layer halves its
            conv's response); 2 starts the layer equal to the plain conv it replaces,
            so the weights of a plain-conv pretrained backbone keep their meaning.
            Default: 1.
        deformable_groups (int, deprecated): mmcv's old spelling of ``deform_groups``,
            still used by some of mmdet's configs (SOLOv2, TOOD).  Accepted with a
            ``DeprecationWarning``, as mmcv does; giving both spellings with different
            values is an error.

    Shapes:
        x (Tensor[N, in_channels, H, W]) -> Tensor[N, out_channels, H_out, W_out]
    """

    _version = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, deform_groups: Optional[int] = None,
                 bias: bool = False, modulated: bool = True, offset_head: Optional[dict] = None,
                 backend: Optional[str] = None, mask_scale: float = 1.0, *,
                 deformable_groups: Optional[int] = None):
        super().__init__()
        deform_groups = _resolve_deform_groups(deform_groups, deformable_groups)
        self.in_channels = _positive_int(in_channels, 'in_channels')
        self.out_channels = _positive_int(out_channels, 'out_channels')
        self.groups = _positive_int(groups, 'groups')
        self.deform_groups = _positive_int(deform_groups, 'deform_groups')
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'groups={groups} must divide in_channels ({in_channels}) and '
                             f'out_channels ({out_channels})')
        if in_channels % deform_groups:
            raise ValueError(f'deform_groups={deform_groups} must divide in_channels '
                             f'({in_channels})')
        self.kernel_size = to_pair(kernel_size, 'kernel_size', 1)
        self.stride = to_pair(stride, 'stride', 1)
        self.padding = to_pair(padding, 'padding', 0)
        self.dilation = to_pair(dilation, 'dilation', 1)
        if backend is not None and backend != 'auto' and backend not in BACKENDS:
            raise ValueError(f'unknown backend {backend!r}; expected None or one of '
                             f"{['auto'] + sorted(BACKENDS)}")
        self.backend = backend
        self.modulated = bool(modulated)
        if isinstance(mask_scale, bool) or not isinstance(mask_scale, (int, float)) \
                or not math.isfinite(mask_scale) or mask_scale <= 0:
            raise ValueError(f'mask_scale: expected a positive finite number, got '
                             f'{mask_scale!r}')
        if mask_scale != 1 and not self.modulated:
            raise ValueError(f'mask_scale={mask_scale} needs modulated=True: DCNv1 has '
                             'no mask')
        self.mask_scale = float(mask_scale)
        # mmcv's ConvModule reads these from whatever conv it wraps (as mmcv's DCN has).
        self.transposed = False
        self.output_padding = (0, 0)

        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()
        self.offset_head = self._build_offset_head(offset_head)

    def _build_offset_head(self, cfg: Optional[dict]) -> BaseOffsetHead:
        cfg = dict(type='ConvOffsetHead') if cfg is None else dict(cfg)
        if 'type' not in cfg:
            raise ValueError(f"offset_head must be a dict with a 'type', got {cfg!r}")
        clash = sorted(set(cfg) & set(GEOMETRY_ARGS))
        if clash:
            raise ValueError(f'offset_head must not set {clash}: the layer passes its own '
                             'geometry to the head')
        head_type = cfg.pop('type')
        head_cls = MODELS.get(head_type) if isinstance(head_type, str) else head_type
        if head_cls is None:
            raise ValueError(f'offset_head type {head_type!r} is not registered in '
                             "mmdet.registry.MODELS (known: 'ConvOffsetHead', "
                             "'SeparableOffsetHead')")
        head = head_cls(in_channels=self.in_channels, kernel_size=self.kernel_size,
                        stride=self.stride, padding=self.padding, dilation=self.dilation,
                        deform_groups=self.deform_groups, modulated=self.modulated, **cfg)
        if not isinstance(head, BaseOffsetHead):
            raise TypeError(f'offset_head type {head_type!r} must build a BaseOffsetHead, '
                            f'got {type(head).__name__}')
        return head

    def reset_parameters(self) -> None:
        """Initialise the kernel like ``nn.Conv2d``; the bias to zero."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def init_weights(self) -> None:
        """Re-zero the offset head after a backbone's initialiser swept over it.

        mmdet's ResNet applies Kaiming init to every ``Conv2d`` in the model, the
        head's convs included, and then calls each child's ``init_weights``.
        """
        self.offset_head.init_weights()

    def offset_and_mask(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """The sampling field: the head's offsets and its mask times ``mask_scale``.

        Shapes: x (Tensor[N, C_in, H, W]) -> offset (Tensor[N, 2*G*kh*kw, H_out, W_out]),
        mask (Tensor[N, G*kh*kw, H_out, W_out] in (0, mask_scale), or None for DCNv1).
        Hooks on ``offset_head`` (pictures, :class:`OffsetStatsHook`) see the mask
        before the scaling, in (0, 1).
        """
        offset, mask = self.offset_head(x)
        if mask is not None and self.mask_scale != 1:
            mask = mask * self.mask_scale
        return offset, mask

    def forward(self, x: Tensor) -> Tensor:
        offset, mask = self.offset_and_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask, backend=self.backend)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # mmcv's DCN/DCNv2 keep their offset conv as `conv_offset`; ConvOffsetHead has
        # the same shape and channel layout, under `offset_head.conv`.
        if isinstance(self.offset_head, ConvOffsetHead):
            for name in ('weight', 'bias'):
                old = f'{prefix}conv_offset.{name}'
                if old in state_dict:
                    state_dict[f'{prefix}offset_head.conv.{name}'] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        s = (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
             f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
             f'groups={self.groups}, deform_groups={self.deform_groups}, '
             f'bias={self.bias is not None}, modulated={self.modulated}')
        if self.backend is not None:
            s += f', backend={self.backend!r}'
        if self.mask_scale != 1:
            s += f', mask_scale={self.mask_scale}'
        return s
