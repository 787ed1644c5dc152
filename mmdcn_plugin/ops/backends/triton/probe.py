"""Whether the Triton kernels work on a device, tried once before ``'auto'`` takes them.

``'auto'`` makes ``'triton'`` the default on CUDA tensors, on GPUs and Triton versions
this package was never run on.  So, as for mmcv's kernels
(:func:`..mmcv_impl.mmcv_kernels_run_on`), it first runs them once on a small DCNv2
problem on the device, forward and backward in float32, and compares the output and
the four gradients with the ``'fast'`` backend in float64.  A compile error (an
unsupported GPU, a Triton too old or too new), a launch failure or wrong numbers make
``'auto'`` take the next backend, with a warning that says why; ``backend='triton'``
asked by name still runs the kernels (and raises their error).

The problem (64 -> 64 channels, 3x3, bias, a 5x7 map) gets the largest tiles
:func:`.launch.choose_tiles` gives float32; offsets of a few pixels put points across
the border.  Its cost is one compilation of each kernel, once a process.
"""
import functools
import warnings

import torch

# Largest |triton - fast| over the largest |fast|, per tensor.  TF32 (when PyTorch's
# matmul flag allows it) errs near 1e-3; wrong indexing or garbage errs near 1.
PROBE_TOLERANCE = 1e-2
# Input and output channels of the probe's layer: enough for float32's largest tiles.
PROBE_CHANNELS = 64


def _probe_problem(device: torch.device, c: int):
    """input, offset, mask, weight, bias of a small DCNv2 layer and a gradient of its
    output (float64, CPU-seeded; a random gradient, so that every output channel's
    weight gradient differs)."""
    gen = torch.Generator().manual_seed(0)
    n, h, w = 1, 5, 7

    def rand(*size, scale=1.0):
        return (torch.randn(*size, generator=gen, dtype=torch.float64) * scale).to(device)

    return (rand(n, c, h, w), rand(n, 18, h, w, scale=2.0),
            torch.sigmoid(rand(n, 9, h, w)), rand(c, c, 3, 3, scale=(9 * c) ** -0.5),
            rand(c, scale=0.1)), rand(n, c, h, w)


def _output_and_grads(fn, tensors, grad_out, dtype):
    leaves = [t.detach().to(dtype).requires_grad_() for t in tensors]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves[:4], grad_out.to(dtype))
    return [out.detach().double()] + [g.double() for g in grads]


def triton_kernels_run_on(device: torch.device, channels: int = PROBE_CHANNELS) -> bool:
    """Run the kernels once on ``device`` (see the module docstring), on a layer of
    ``channels`` -> ``channels`` (fewer make a quicker test under the interpreter).

    True when the output and the gradients of input, offset, mask and weight agree
    with ``'fast'`` within :data:`PROBE_TOLERANCE`; False, with a warning, otherwise.
    """
    from ...checks import check_deform_conv2d_args
    from ..fast_impl import deform_conv2d_fast
    from .function import TritonDeformConv

    try:
        # The first 'auto' call may come inside no_grad, inference_mode or autocast.
        with torch.inference_mode(False), torch.enable_grad(), \
                torch.autocast(device.type, enabled=False):
            tensors, grad_out = _probe_problem(device, channels)
            x, offset, mask, weight, bias = tensors
            geo = check_deform_conv2d_args(x, offset, weight, bias, 1, 1, 1, mask)
            got = _output_and_grads(
                lambda x, o, m, w, b: TritonDeformConv.apply(x, o, m, w, b, geo),
                tensors, grad_out, torch.float32)
            want = _output_and_grads(
                lambda x, o, m, w, b: deform_conv2d_fast(x, o, w, b, m, geo),
                tensors, grad_out, torch.float64)
    except Exception as err:  # compile errors, out of resources, launch failures
        _warn_unusable(device, f'failed ({type(err).__name__}: {str(err)[:300]})')
        return False
    names = ('output', 'grad input', 'grad offset', 'grad mask', 'grad weight')
    for name, a, b in zip(names, got, want):
        error = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
        if not error <= PROBE_TOLERANCE:  # NaN fails too
            _warn_unusable(device, f'computed a wrong {name} (relative error {error:.3g})')
            return False
    return True


def _warn_unusable(device: torch.device, what: str) -> None:
    warnings.warn(f"this package's Triton deformable-convolution kernels {what} on a probe "
                  f"on {device}: 'auto' takes another backend for {device.type} tensors "
                  "(backend='triton' still runs them)", RuntimeWarning, stacklevel=3)


@functools.lru_cache(maxsize=None)
def triton_cuda_usable() -> bool:
    """True when the kernels pass the probe on this process's CUDA device (decided once
    a process; False without a GPU or without Triton)."""
    from . import triton_importable
    if not triton_importable() or not torch.cuda.is_available():
        return False
    return triton_kernels_run_on(torch.device('cuda', torch.cuda.current_device()))
