"""The classic offset head of DCNv1/DCNv2: one convolution with the main conv's geometry."""
from torch import Tensor
from mmdet.registry import MODELS

from .base_offset_head import BaseOffsetHead, ZeroInitConv2d


@MODELS.register_module()
class ConvOffsetHead(BaseOffsetHead):
    """One ``kh x kw`` convolution predicting offsets (and mask logits), zero-initialised.

    This is the head of mmcv's ``DCN``/``DCNv2`` (their ``conv_offset``) with the same
    channel layout, so their checkpoints load: ``3*G*K`` channels for DCNv2, split
    into thirds ``(o1, o2, mask_logits)`` with ``offset = cat(o1, o2)``; ``2*G*K``
    channels of offsets for DCNv1.

    Args:
        in_channels, kernel_size, stride, padding, dilation, deform_groups, modulated:
            the geometry of the deformable layer, passed by it.
        bias (bool): give the offset conv a bias (mmcv does). Default: True.
        max_offset (float or None): smooth bound on each offset component in pixels,
            ``max_offset * tanh(o / max_offset)`` (see :class:`BaseOffsetHead`).
            Default: None, mmcv's unbounded head.

    Shapes:
        x (Tensor[N, in_channels, H, W]) -> offset (Tensor[N, 2*G*kh*kw, H_out, W_out]),
        mask (Tensor[N, G*kh*kw, H_out, W_out] in (0, 1), or None for DCNv1).
    """

    def __init__(self, in_channels, kernel_size, stride=1, padding=0, dilation=1,
                 deform_groups=1, modulated=True, bias=True, max_offset=None):
        super().__init__(in_channels, kernel_size, stride, padding, dilation, deform_groups,
                         modulated, max_offset)
        self.conv = ZeroInitConv2d(in_channels, self.out_channels, self.kernel_size,
                              stride=self.stride, padding=self.padding,
                              dilation=self.dilation, bias=bias)
        self.init_weights()

    def last_layer(self) -> ZeroInitConv2d:
        return self.conv

    def forward(self, x: Tensor):
        return self.split(self.conv(x))
