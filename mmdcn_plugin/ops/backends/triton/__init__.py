"""The ``'triton'`` backend: this package's own GPU kernels, written in Triton.

The numbers are mmcv's (border rule included, see :mod:`..sampling`); the kernels
differ from mmcv's and torchvision's in how they get there:

* forward (:mod:`.forward`): an implicit GEMM.  A program owns a tile of output
  pixels x output channels; for every kernel tap and block of input channels it
  samples a ``[BLOCK_P, BLOCK_C]`` tile of the input at the deformed points straight
  into registers and multiplies it with the weight tile on the tensor cores
  (``tl.dot``).  No column buffer is written to memory.  One offset, one mask and
  one set of bilinear weights per point serve every channel of its deform group;
  the input is read channels-last, so the channels of a point are contiguous.
* backward (:mod:`.backward`): the weight gradient is the same implicit GEMM over
  recomputed samples (fp32 partial sums per row split, added in a fixed order); the
  input, offset and mask gradients come from one kernel per (pixel tile, deform
  group, tap) that forms ``grad_cols = grad_out @ W`` tile by tile and uses it at
  once: offset and mask gradients are per-point sums over the group's channels
  (owned by one program, no atomics), the input gradient a scatter of the bilinear
  weights with fp32 atomics.
* determinism: with ``torch.use_deterministic_algorithms(True)`` the scatter adds
  64-bit fixed-point integers instead of floats (:mod:`.launch`), and integer
  addition does not depend on the order: bitwise-identical gradients run to run.
  Everything else is deterministic by construction.
* dtypes: float16 and bfloat16 natively (fp32 sampling and accumulation, the tile
  rounded to the input dtype for the tensor cores, as cuDNN does); float32 with
  TF32 tensor cores only when PyTorch allows TF32 for CUDA matmuls (either of its
  switches: :func:`mmdcn_plugin.utils.tf32.matmul_tf32`), else full fp32
  ("ieee").  float64 has no tensor-core path: it is served by the ``'fast'``
  backend (the same numbers, exact in float64).

Triton is imported lazily: this package imports without it, and the backend then
reports itself unavailable.  With ``TRITON_INTERPRET=1`` set before the kernels are
first used, Triton's interpreter runs them on CPU tensors (that is how CI tests them).
"""
import functools
import importlib
import sys
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...checks import DeformGeometry

@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    """True when ``import triton`` works here (checked once a process)."""
    try:
        importlib.import_module('triton')
        importlib.import_module('triton.language')
    except Exception:  # missing, or broken (e.g. a wheel for another platform)
        return False
    return True


def interpreting() -> bool:
    """True when the kernels run (or will run) in Triton's interpreter.

    Triton decides when a kernel is decorated, i.e. when :mod:`.forward` is first
    imported; after that the decision is fixed for the process, whatever the
    environment says later.
    """
    kernels = sys.modules.get(__name__ + '.forward')
    if kernels is not None:
        return kernels.INTERPRETED
    if not triton_importable():
        return False
    import triton
    return bool(triton.knobs.runtime.interpret)  # reads TRITON_INTERPRET now


def triton_devices() -> Tuple[str, ...]:
    """Device types the kernels take here: CUDA, plus CPU under the interpreter."""
    return ('cuda', 'cpu') if interpreting() else ('cuda',)


def triton_available() -> bool:
    """Triton imports, and there is something to run it on (a GPU, or the interpreter).

    A machine with Triton installed but neither a GPU nor ``TRITON_INTERPRET=1`` has
    no device for it, so the backend is not listed there.
    """
    if not triton_importable():
        return False
    return interpreting() or torch.cuda.is_available()


def deform_conv2d_triton(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                         mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution with this package's Triton kernels (see module docstring).

    Args are those of every backend (already checked); float64 goes to ``'fast'``.

    Returns:
        Tensor[N, C_out, H_out, W_out] of the input's dtype, contiguous.
    """
    if input.dtype == torch.float64:
        from ..fast_impl import deform_conv2d_fast
        return deform_conv2d_fast(input, offset, weight, bias, mask, geo)
    from .function import TritonDeformConv
    return TritonDeformConv.apply(input, offset, mask, weight, bias, geo)


__all__ = ['deform_conv2d_triton', 'triton_available', 'triton_devices', 'triton_importable',
           'interpreting']
