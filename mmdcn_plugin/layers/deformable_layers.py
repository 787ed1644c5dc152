"""Finding the deformable layers of a model (for hooks, pictures and studies)."""
from typing import List, Tuple

from mmengine.model import is_model_wrapper
from torch import nn

from .deformable_conv import DeformableConv2d


def deformable_layers(model: nn.Module) -> List[Tuple[str, DeformableConv2d]]:
    """``(module path, layer)`` of every :class:`DeformableConv2d`, in module order.

    Model wrappers (DDP, MMEngine's wrappers) are unwrapped first, so the paths are
    those of the bare model, e.g. ``backbone.layer3.0.conv2``.
    """
    if is_model_wrapper(model):
        model = model.module
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DeformableConv2d)]
