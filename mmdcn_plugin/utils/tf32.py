"""Whether CUDA float32 matmuls and cuDNN convolutions may use TF32 now.

PyTorch has two switches for it: the legacy ``torch.backends.cuda.matmul.allow_tf32`` /
``torch.backends.cudnn.allow_tf32``, and (torch >= 2.9) ``fp32_precision`` on
``torch.backends``, ``torch.backends.cuda.matmul``, ``torch.backends.cudnn`` and
``torch.backends.cudnn.conv``, where ``'none'`` defers to the parent.  Once a user sets
the new one, reading a legacy flag that disagrees raises ("mix of the legacy and new
APIs"), so everything in this package that reports or follows TF32 asks here: the most
specific ``'tf32'``/``'ieee'`` of the new switches decides, else the legacy flag.
"""
import contextlib
from typing import Iterator, Sequence

import torch


def _allowed(nodes: Sequence[object], legacy_owner: object) -> bool:
    for node in nodes:
        precision = getattr(node, 'fp32_precision', 'none')
        if precision in ('tf32', 'ieee'):
            return precision == 'tf32'
    try:
        return bool(legacy_owner.allow_tf32)
    except RuntimeError:  # a state only the new switches describe
        return False


def matmul_tf32() -> bool:
    """True when CUDA float32 matmuls (cuBLAS, and so ``tl.dot`` here) may use TF32."""
    return _allowed([torch.backends.cuda.matmul, torch.backends], torch.backends.cuda.matmul)


def cudnn_conv_tf32() -> bool:
    """True when cuDNN float32 convolutions may use TF32 (PyTorch's default: yes)."""
    cudnn = torch.backends.cudnn
    return _allowed([getattr(cudnn, 'conv', None), cudnn, torch.backends], cudnn)


@contextlib.contextmanager
def _switch_set(legacy_owner: object, precision_node: object, allowed: bool
                ) -> Iterator[None]:
    """One TF32 switch set to ``allowed`` inside the block, and as before after it:
    through the legacy flag where it can be read, else (a user set the new switches, and
    reading the legacy one would raise) through ``precision_node.fp32_precision``."""
    try:
        owner, name, value = legacy_owner, 'allow_tf32', legacy_owner.allow_tf32
        setting = allowed
    except RuntimeError:
        owner, name, value = precision_node, 'fp32_precision', precision_node.fp32_precision
        setting = 'tf32' if allowed else 'ieee'
    setattr(owner, name, setting)
    try:
        yield
    finally:
        setattr(owner, name, value)


def matmul_tf32_set(allowed: bool) -> contextlib.AbstractContextManager:
    """CUDA float32 matmuls may use TF32 inside the block iff ``allowed``; the switch is
    as before after it."""
    node = torch.backends.cuda.matmul
    return _switch_set(node, node, allowed)


def cudnn_conv_tf32_set(allowed: bool) -> contextlib.AbstractContextManager:
    """cuDNN float32 convolutions may use TF32 inside the block iff ``allowed``; the
    switch is as before after it."""
    cudnn = torch.backends.cudnn
    return _switch_set(cudnn, getattr(cudnn, 'conv', cudnn), allowed)
