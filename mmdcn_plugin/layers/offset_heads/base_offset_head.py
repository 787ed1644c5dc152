"""What every offset head shares: the geometry it is given, the output contract and the
optional smooth bound on the offsets."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.checks import to_pair

# Arguments the deformable layer passes to its head; a user's head config must not set them.
GEOMETRY_ARGS = ('in_channels', 'kernel_size', 'stride', 'padding', 'dilation',
                 'deform_groups', 'modulated')


class ZeroInitConv2d(nn.Module):
    """A zero-initialised convolution that model initialisers leave alone.

    Deliberately not an ``nn.Conv2d``: MMEngine's initialisers pick layers by class
    name (``init_cfg=dict(type='Normal', layer='Conv2d')`` in every dense head,
    Kaiming on ``Conv2d`` in ResNet) and would overwrite the zero initialisation
    that makes a fresh deformable layer sample the regular grid.  Inside mmcv's
    ``ConvModule`` nobody calls the layer's ``init_weights`` afterwards to repair it.

    Shapes: x (Tensor[N, in_channels, H, W]) -> Tensor[N, out_channels, H_out, W_out]
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True):
        super().__init__()
        self.kernel_size = to_pair(kernel_size, 'kernel_size', 1)
        self.stride = to_pair(stride, 'stride', 1)
        self.padding = to_pair(padding, 'padding', 0)
        self.dilation = to_pair(dilation, 'dilation', 1)
        self.groups = groups
        self.weight = nn.Parameter(
            torch.zeros(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def extra_repr(self) -> str:
        return (f'{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'bias={self.bias is not None}')


class BaseOffsetHead(nn.Module):
    """Base class of offset heads.

    A head maps the deformable layer's input to ``(offset, mask)`` on the output grid
    of the layer's main convolution: ``offset`` is ``Tensor[N, 2*G*kh*kw, H_out,
    W_out]`` in pixels and ``mask`` is ``Tensor[N, G*kh*kw, H_out, W_out]``, already
    passed through a sigmoid, or ``None`` when ``modulated=False`` (DCNv1).

    Subclasses build their layers, return the layer that produces the raw output in
    :meth:`last_layer` and call :meth:`init_weights`; zero-initialising that layer
    makes a fresh deformable layer sample the regular grid.

    ``max_offset`` bounds the offsets smoothly, ``max_offset * tanh(o / max_offset)``:
    the identity near 0 (slope 1), never beyond ``max_offset`` pixels in x or y.
    Runaway offsets (points thrown far outside the map, where they sample zeros and
    get no gradient back) are a known cause of unstable DCN training.
    """

    def __init__(self, in_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 deform_groups: int = 1, modulated: bool = True,
                 max_offset: Optional[float] = None):
        super().__init__()
        if max_offset is not None and (isinstance(max_offset, bool) or not isinstance(
                max_offset, (int, float)) or not math.isfinite(max_offset) or max_offset <= 0):
            raise ValueError(f'max_offset must be a positive finite number or None, '
                             f'got {max_offset!r}')
        self.max_offset = float(max_offset) if max_offset is not None else None
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        if not isinstance(deform_groups, int) or deform_groups < 1:
            raise ValueError(f'deform_groups must be a positive int, got {deform_groups!r}')
        self.in_channels = in_channels
        self.kernel_size = to_pair(kernel_size, 'kernel_size', 1)
        self.stride = to_pair(stride, 'stride', 1)
        self.padding = to_pair(padding, 'padding', 0)
        self.dilation = to_pair(dilation, 'dilation', 1)
        self.deform_groups = deform_groups
        self.modulated = bool(modulated)
        self.num_points = deform_groups * self.kernel_size[0] * self.kernel_size[1]
        self.out_channels = (3 if self.modulated else 2) * self.num_points

    def last_layer(self) -> nn.Module:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Zero the last layer, so offsets start at 0 and masks at sigmoid(0) = 0.5.

        The last layer is a :class:`ZeroInitConv2d`, which class-name-based
        initialisers skip; the layer's ``init_weights`` calls this again anyway.
        """
        last = self.last_layer()
        nn.init.zeros_(last.weight)
        if getattr(last, 'bias', None) is not None:
            nn.init.zeros_(last.bias)

    def split(self, out: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """Split the raw output into offsets (bounded by ``max_offset`` if set) and an
        activated mask (mmcv's layout)."""
        if not self.modulated:
            return self.bound(out), None
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        return self.bound(torch.cat((o1, o2), dim=1)), torch.sigmoid(mask)

    def bound(self, offset: Tensor) -> Tensor:
        """``max_offset * tanh(offset / max_offset)``, or ``offset`` without a bound."""
        if self.max_offset is None:
            return offset
        return self.max_offset * torch.tanh(offset / self.max_offset)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'deform_groups={self.deform_groups}, modulated={self.modulated}, '
                f'max_offset={self.max_offset}')
