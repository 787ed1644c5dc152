"""What the Triton kernels ask of a GPU, found without one: registers, spills, shared memory.

    python -m mmdcn_plugin.ops.backends.triton.resources [--capability 90]
        [--dtypes fp16,bf16,fp32,tf32] [--kernels forward,data,weight] [--json PATH]

Compiles every kernel with every tile candidate of the GPU tile sweep
(:data:`.tune.CANDIDATES`, which starts with :func:`.launch.choose_tiles`'s) for a
3x3, 128-to-128-channel DCNv2 layer and the target compute capability, then reads
``ptxas -v`` (Triton ships ptxas, so no GPU is needed).  Per tile: registers a
thread, bytes spilled to local memory, shared memory, and whether the products use
Hopper's ``wgmma``.  ``fp32`` is strict fp32 (what the backend runs while PyTorch's
matmul TF32 flag is off, its default); ``tf32`` is fp32 tensors with TF32 products.

A tile that spills pays local-memory traffic in its inner loop, so this is a
prediction to check against the sweep's timings, made before any device time is spent.
Integer arguments are compiled as unknown; a real launch lets Triton specialise those
divisible by 16, which can move the counts a little (``TRITON_DUMP_PTXAS_LOG=1`` on
the GPU prints the launched kernels' own).
"""
import argparse
import os
import re
import subprocess
import tempfile
from typing import Dict, List, Optional

from ....utils import write_json_atomic
from ...checks import DeformGeometry
from . import backward, forward, launch, tune
from .launch import Tiles

KERNELS = {'forward': forward.deform_conv_forward_kernel,
           'data': backward.deform_conv_backward_data_kernel,
           'weight': backward.deform_conv_backward_weight_kernel}
# dtype name -> (the pointers' Triton type, the kernels' PRECISION)
DTYPES = {'fp16': ('fp16', None), 'bf16': ('bf16', None), 'fp32': ('fp32', 'ieee'),
          'tf32': ('fp32', 'tf32')}
# The kernels' fp32 buffers, whatever the tensors' dtype (the fixed-point input gradient
# is int64).
_FP32_BUFFERS = ('gx_ptr', 'goff_ptr', 'gmsk_ptr', 'scale_ptr', 'part_ptr')
# The layer compiled for: (N, C, H, W) = (2, 128, 40, 60), 128 outputs, 3x3, stride 1,
# padding 1, one group and one deform group.
LAYER = DeformGeometry(2, 128, 40, 60, 128, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, (40, 60))


def gpu_tiles(kernel: str, dtype: str) -> Tiles:
    """:func:`.launch.choose_tiles`'s tiles on a GPU for :data:`LAYER` (also where this
    process runs Triton's interpreter, whose own tiles are the smallest)."""
    import torch
    torch_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(dtype, torch.float32)
    saved, launch.INTERPRETED = launch.INTERPRETED, False
    try:
        return launch.choose_tiles(LAYER, torch_dtype, kernel)
    finally:
        launch.INTERPRETED = saved


def compile_for(kernel: str, dtype: str, capability: int, tiles: Optional[Tiles] = None,
                **overrides):
    """``kernel`` ('forward', 'data', 'weight') compiled for ``capability`` (90: sm_90a)
    with ``tiles`` (default :func:`gpu_tiles`), DCNv2 with bias, every gradient asked for;
    ``overrides`` replace constexpr arguments (``HAS_MASK=False``, ``FIXED_POINT=True``).

    Returns Triton's compiled kernel: ``.asm['ptx']``, ``.metadata.shared`` (bytes).
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile
    if forward.INTERPRETED:
        raise RuntimeError('compile_for: compiles for a GPU, which Triton does not while '
                           'TRITON_INTERPRET=1 is set; unset it')
    tiles = tiles or gpu_tiles(kernel, dtype)
    pointer, precision = DTYPES[dtype]
    consts = dict(KH=3, KW=3, HAS_MASK=True, PRECISION=precision, DOT_UPCAST=False,
                  BLOCK_P=tiles.block_p, BLOCK_O=tiles.block_o, BLOCK_C=tiles.block_c)
    consts.update({'forward': dict(HAS_BIAS=True, LEAVE_OUT=0),
                   'data': dict(NEED_INPUT=True, NEED_OFFSET=True, NEED_MASK=True,
                                FIXED_POINT=False),
                   'weight': dict(LEAVE_OUT=0)}[kernel])
    consts.update(overrides)
    fn = KERNELS[kernel]

    def arg_type(name):
        if name in consts:
            return 'constexpr'
        if not name.endswith('_ptr'):
            return 'i32'
        if name == 'gx_ptr' and consts.get('FIXED_POINT'):
            return '*i64'
        return '*fp32' if name in _FP32_BUFFERS else '*' + pointer

    signature = {name: arg_type(name) for name in fn.arg_names}
    return triton_compile(ASTSource(fn, signature, constexprs=consts),
                          target=GPUTarget('cuda', capability, 32),
                          options=dict(num_warps=tiles.num_warps,
                                       num_stages=tiles.num_stages))


def ptxas_usage(ptx: str, capability: int) -> Dict[str, int]:
    """``{'registers', 'stack', 'spill_stores', 'spill_loads'}`` of one kernel's PTX
    (bytes, except registers a thread), from ``ptxas -v``: the ptxas Triton builds its
    cubins with, so the same allocation as the kernel Triton would launch."""
    from triton.backends.nvidia.compiler import get_ptxas
    arch = f'sm_{capability}a' if capability >= 90 else f'sm_{capability}'
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'kernel.ptx')
        with open(src, 'w') as f:
            f.write(ptx)
        log = subprocess.run([get_ptxas(capability).path, '-v', f'--gpu-name={arch}', src,
                              '-o', os.path.join(tmp, 'kernel.o')],
                             capture_output=True, text=True, check=True).stderr
    return parse_ptxas_log(log)


def parse_ptxas_log(log: str) -> Dict[str, int]:
    """The figures of a ``ptxas -v`` log of one kernel (see :func:`ptxas_usage`)."""
    patterns = {'registers': r'Used (\d+) registers', 'stack': r'(\d+) bytes stack frame',
                'spill_stores': r'(\d+) bytes spill stores',
                'spill_loads': r'(\d+) bytes spill loads'}
    found = {name: re.search(pattern, log) for name, pattern in patterns.items()}
    missing = [name for name, m in found.items() if m is None]
    if missing:
        raise ValueError(f'parse_ptxas_log: no {", ".join(missing)} in the ptxas log:\n{log}')
    return {name: int(m.group(1)) for name, m in found.items()}


def usage_rows(capability: int, dtypes: List[str], kernels: List[str]) -> List[Dict]:
    """One row per kernel, tile candidate and dtype (a failed compile: its ``error``)."""
    rows = []
    for kernel in kernels:
        for tiles in tune.CANDIDATES[kernel]:
            for dtype in dtypes:
                row = dict(kernel=kernel, tiles=list(tiles), dtype=dtype)
                try:
                    compiled = compile_for(kernel, dtype, capability, tiles)
                    row.update(ptxas_usage(compiled.asm['ptx'], capability),
                               shared=compiled.metadata.shared,
                               wgmma='wgmma' in compiled.asm['ptx'])
                except Exception as err:  # a tile that does not compile is a result too
                    row['error'] = reason(err)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def reason(err: BaseException) -> str:
    """``'Type: message'`` of the innermost cause of ``err`` (Triton's compile errors
    wrap the real one in a quote of the kernel's source at each call level)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1].strip() if lines else ''}"[:200]


def format_row(row: Dict) -> str:
    tiles = 'x'.join(map(str, row['tiles']))
    head = f"{row['kernel']:7s} {tiles:15s} {row['dtype']:4s}"
    if 'error' in row:
        return f"{head} {row['error']}"
    return (f"{head} {row['registers']:3d} registers, {row['spill_stores']:4d} B spilled, "
            f"{row['shared'] / 1024:5.1f} KiB shared, "
            f"{'wgmma' if row['wgmma'] else 'no wgmma'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--capability', type=int, default=90,
                        help='CUDA compute capability times 10 (default 90: H100/H200)')
    parser.add_argument('--dtypes', default='fp16,bf16,fp32,tf32')
    parser.add_argument('--kernels', default='forward,data,weight')
    parser.add_argument('--json', default=None, help='also write the rows here')
    return parser


def main(argv=None) -> List[Dict]:
    parser = build_parser()
    args, lists = tune.parse_lists(parser, argv, {'dtypes': DTYPES, 'kernels': KERNELS})
    rows = usage_rows(args.capability, lists['dtypes'], lists['kernels'])
    if args.json:
        write_json_atomic(args.json, {'capability': args.capability, 'layer': LAYER._asdict(),
                                      'rows': rows})
    return rows


if __name__ == '__main__':
    main()
