"""The autograd Function around the Triton kernels (see the package docstring)."""
import contextlib

import torch
from torch.autograd.function import once_differentiable

from . import launch


class TritonDeformConv(torch.autograd.Function):
    """forward(input, offset, mask, weight, bias, geo) -> Tensor[N, C_out, H_out, W_out].

    Saves input, offset, mask and the weight in the kernels' layout (copied once, in
    the forward); the backward samples again rather than keeping columns.  The
    input-gradient scatter is deterministic when
    ``torch.are_deterministic_algorithms_enabled()`` at backward time.
    """

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, geo):
        with _on(input.device):
            weight_ocl = launch.output_channels_last(weight)
            out = launch.forward(input, offset, mask, weight_ocl, bias, geo)
        ctx.geo = geo
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, offset, mask, weight_ocl)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, offset, mask, weight = ctx.saved_tensors
        geo = ctx.geo
        need_input, need_offset, need_mask, need_weight, need_bias, _ = ctx.needs_input_grad
        with _on(input.device):
            # Both kernels read the input channels-last: copy it once, not in each.
            input = launch.channels_last(input)
            grad_input, grad_offset, grad_mask = launch.backward_data(
                input, offset, mask, weight, grad_out, geo, need_input, need_offset, need_mask,
                deterministic=torch.are_deterministic_algorithms_enabled())
            grad_weight = grad_bias = None
            if need_weight:
                grad_weight = launch.backward_weight(input, offset, mask, grad_out,
                                                     geo).to(weight.dtype)
        if need_bias and ctx.has_bias:
            grad_bias = grad_out.sum((0, 2, 3), dtype=torch.float32).to(grad_out.dtype)
        return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == 'cuda' else contextlib.nullcontext()
