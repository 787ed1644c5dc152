"""Whether TF32 is allowed, read from either of PyTorch's switches (mmdcn_plugin.utils.tf32)."""
import pytest
import torch

from helpers import FakeCudaTensor
from mmdcn_plugin.benchmark.ops import tf32_flags
from mmdcn_plugin.ops.backends.triton import triton_importable
from mmdcn_plugin.utils.tf32 import (cudnn_conv_tf32, cudnn_conv_tf32_set, matmul_tf32,
                                     matmul_tf32_set)

NEW_API = hasattr(torch.backends.cuda.matmul, 'fp32_precision')
NODES = [torch.backends, torch.backends.cuda.matmul, torch.backends.cudnn,
         getattr(torch.backends.cudnn, 'conv', None)]


@pytest.fixture(autouse=True)
def restore_switches():
    legacy = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    new = [getattr(node, 'fp32_precision', None) for node in NODES]
    yield
    # Legacy first: writing it also sets the new switches, which are then put back.
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy
    for node, value in zip(NODES, new):
        if value is not None:
            node.fp32_precision = value


def fp32_cuda():
    return torch.zeros(1).as_subclass(FakeCudaTensor)


def test_legacy_switches():
    for allowed in (True, False):
        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = not allowed
        assert matmul_tf32() is allowed and cudnn_conv_tf32() is (not allowed)
        assert tf32_flags() == dict(cudnn=not allowed, matmul=allowed)


@pytest.mark.skipif(not NEW_API, reason='torch < 2.9 has no fp32_precision switches')
def test_new_switches_decide_where_reading_the_legacy_flag_would_raise():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.fp32_precision = 'tf32'
    assert matmul_tf32() is True
    torch.backends.cuda.matmul.fp32_precision = 'ieee'
    assert matmul_tf32() is False
    # 'none' defers to the parent switch.
    torch.backends.cuda.matmul.fp32_precision = 'none'
    torch.backends.fp32_precision = 'tf32'
    assert matmul_tf32() is True
    torch.backends.cudnn.conv.fp32_precision = 'ieee'
    assert cudnn_conv_tf32() is False
    assert tf32_flags() == dict(cudnn=False, matmul=True)


@pytest.mark.skipif(not NEW_API, reason='torch < 2.9 has no fp32_precision switches')
@pytest.mark.skipif(not triton_importable(), reason='Triton is not installed')
def test_triton_dot_follows_the_new_switch():
    from mmdcn_plugin.ops.backends.triton.launch import dot_precision
    torch.backends.cuda.matmul.fp32_precision = 'tf32'
    assert dot_precision(fp32_cuda()) == 'tf32'
    assert dot_precision(torch.zeros(1)) == 'ieee'  # a CPU tensor: the interpreter
    torch.backends.cuda.matmul.fp32_precision = 'ieee'
    assert dot_precision(fp32_cuda()) == 'ieee'
    assert dot_precision(fp32_cuda().half()) is None


@pytest.mark.parametrize('new_api_first', [False, True])
def test_a_switch_is_set_inside_the_block_and_restored_after(new_api_first):
    """The benchmarks set one switch for a block (the ceilings' TF32 matmul, the strict
    fp32 conv); after a user set the new switches, reading the legacy flag raises, so
    the helpers then go through ``fp32_precision``."""
    if new_api_first and not NEW_API:
        pytest.skip('torch < 2.9 has no fp32_precision switches')
    if new_api_first:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.fp32_precision = 'ieee'
        torch.backends.cudnn.conv.fp32_precision = 'ieee'
        for legacy_owner in (torch.backends.cuda.matmul, torch.backends.cudnn):
            with pytest.raises(RuntimeError):
                legacy_owner.allow_tf32
    for read, set_ in ((matmul_tf32, matmul_tf32_set), (cudnn_conv_tf32, cudnn_conv_tf32_set)):
        before = read()
        for allowed in (True, False):
            with set_(allowed):
                assert read() is allowed
            assert read() is before
