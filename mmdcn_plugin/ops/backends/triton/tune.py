"""Time the Triton kernels' tile configurations on a GPU, in one call.

    python -m mmdcn_plugin.ops.backends.triton.tune [--dtypes fp16,bf16,fp32]
        [--shapes c3,c4,c5] [--kernels forward,data,weight] [--iters 10] [--json PATH]
        [--device cuda]

For each dtype, shape and kernel it times every candidate of :data:`CANDIDATES`
(through :data:`.launch.TILE_OVERRIDES`, so exactly the launches the backend makes),
then, with each kernel's fastest tiles, the whole op forward and forward+backward
(default, deterministic, and with grad_out read from zero-padded planes:
:data:`.launch.PAD_GRAD_OUT`) beside cuDNN's convolution of the same shape and dtype.
Median of CUDA-event timings; TF32 follows ``torch.backends.cuda.matmul.allow_tf32``
(the conv: ``torch.backends.cudnn.allow_tf32``), both printed.  The shapes are the
3x3 DCNv2 layers of ResNet-50's c3-c5 on a batch-2 800x1216 training batch.

The fastest tiles found are what :func:`.launch.choose_tiles` should return: this
tool only reports them.  ``--shapes tiny --device cpu`` with ``TRITON_INTERPRET=1``
exercises the code on the CPU (timings meaningless; ``tests/test_triton_backend.py``
does).
"""
import argparse
import statistics
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn.functional as F

from ....utils import write_json_atomic
from ....utils.tf32 import cudnn_conv_tf32, matmul_tf32
from ....utils.timing import measure_for
from ...checks import check_deform_conv2d_args
from . import launch
from .function import TritonDeformConv
from .launch import TILE_OVERRIDES, Tiles

# (N, C_in, H, W): the input of the 3x3 conv of each stage's bottleneck; C_out = C_in.
SHAPES = {'c3': (2, 128, 100, 152), 'c4': (2, 256, 50, 76), 'c5': (2, 512, 25, 38),
          'tiny': (1, 16, 5, 6)}
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}
# (BLOCK_P, BLOCK_O, BLOCK_C, num_warps, num_stages); the first is choose_tiles's today
# (fp16/bf16; in fp32 the forward's and weight gradient's is the second).  What each
# asks of an sm_90 GPU, registers and spills, is printed without one by
# `python -m mmdcn_plugin.ops.backends.triton.resources`.
CANDIDATES = {
    'forward': [Tiles(64, 128, 32, 8, 2), Tiles(64, 64, 32, 8, 2), Tiles(64, 64, 32, 4, 2),
                Tiles(128, 128, 32, 8, 2), Tiles(128, 64, 32, 8, 3), Tiles(64, 128, 64, 8, 2),
                Tiles(32, 64, 32, 4, 2), Tiles(128, 128, 64, 8, 2)],
    'data': [Tiles(64, 64, 16, 8, 2), Tiles(64, 64, 32, 8, 2), Tiles(32, 64, 32, 4, 2),
             Tiles(64, 32, 16, 4, 2), Tiles(128, 64, 16, 8, 2), Tiles(64, 128, 16, 8, 2),
             Tiles(64, 64, 64, 8, 2),
             # strict fp32 spills at choose_tiles's; these two do not (Triton 3.6 and 3.9)
             Tiles(64, 64, 16, 8, 1), Tiles(64, 32, 16, 8, 2)],
    'weight': [Tiles(64, 128, 32, 8, 2), Tiles(64, 64, 32, 8, 2), Tiles(128, 128, 32, 8, 2),
               Tiles(64, 128, 64, 8, 2), Tiles(32, 64, 32, 4, 2), Tiles(128, 64, 32, 8, 3)],
}


def timer(device: torch.device, iters: int) -> Callable[[Callable[[], object]], float]:
    """``measure(fn)``: median milliseconds of ``iters`` calls of ``fn()`` after two
    untimed ones (CUDA events on a GPU, each call after an L2 flush, as the op
    benchmark times them: :func:`mmdcn_plugin.utils.timing.measure_for`)."""
    seconds = measure_for(str(device), flush_cache=True)

    def measure(fn):
        for _ in range(2):
            fn()
        return 1e3 * statistics.median(seconds(fn) for _ in range(iters))
    return measure


def problem(shape, dtype, device):
    """input, offset, mask, weight, grad_out of a DCNv2 3x3 layer (stride 1, pad 1)."""
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape

    def rand(*size, scale=1.0):
        return (torch.randn(*size, generator=gen) * scale).to(device, dtype)

    x = rand(n, c, h, w)
    offset = rand(n, 18, h, w, scale=2.0)
    mask = torch.sigmoid(rand(n, 9, h, w))
    weight = rand(c, c, 3, 3, scale=(c * 9) ** -0.5)
    grad_out = rand(n, c, h, w)
    return x, offset, mask, weight, grad_out


def kernel_runs(x, offset, mask, weight, grad_out, geo,
                deterministic: bool = False) -> Dict[str, Callable[[], object]]:
    """kernel name -> a call of that kernel alone, as the sweep times it (DCNv2, no bias,
    every gradient asked for)."""
    return {
        'forward': lambda: launch.forward(x, offset, mask, weight, None, geo),
        'data': lambda: launch.backward_data(x, offset, mask, weight, grad_out, geo,
                                             True, True, True, deterministic=deterministic),
        'weight': lambda: launch.backward_weight(x, offset, mask, grad_out, geo),
    }


def tune(dtypes: List[str], shapes: List[str], kernels: List[str], iters: int,
         device: torch.device, json_path: Optional[str] = None) -> Dict:
    """Time every candidate of every kernel, then the op with the fastest ones.

    Returns the report (also written to ``json_path``, when given, after every row,
    so a run cut short keeps what it measured).  A candidate that fails (no fit in
    shared memory, a compile error) is a row with ``ms`` NaN and a note, never the
    fastest.
    """
    measure = timer(device, iters)
    report = {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
              'torch': torch.__version__, 'tf32_matmul': matmul_tf32(),
              'tf32_cudnn': cudnn_conv_tf32(), 'results': []}
    for dname in dtypes:
        dtype = DTYPES[dname]
        for sname in shapes:
            x, offset, mask, weight, grad_out = problem(SHAPES[sname], dtype, device)
            geo = check_deform_conv2d_args(x, offset, weight, None, 1, 1, 1, mask)
            runs = kernel_runs(x, offset, mask, weight, grad_out, geo)
            best = {}
            for kernel in kernels:
                for tiles in CANDIDATES[kernel]:
                    TILE_OVERRIDES[kernel] = tiles
                    try:
                        ms = measure(runs[kernel])
                    except Exception as err:  # out of shared memory, compile failure
                        ms, note = float('nan'), f'{type(err).__name__}: {str(err)[:80]}'
                    else:
                        note = ''
                    row = dict(dtype=dname, shape=sname, kernel=kernel, tiles=list(tiles),
                               ms=ms, note=note)
                    add_row(report, row, json_path)
                    print(f'{dname} {sname} {kernel:7s} {tuple(tiles)}: {ms:.4f} ms {note}',
                          flush=True)
                    if ms == ms and (kernel not in best or ms < best[kernel][1]):
                        best[kernel] = (tiles, ms)
                TILE_OVERRIDES.pop(kernel, None)
            try:
                row = _whole_op(measure, x, offset, mask, weight, grad_out, geo, dname,
                                sname, best)
            finally:
                TILE_OVERRIDES.clear()
            add_row(report, row, json_path)
    return report


def add_row(report: Dict, row: Dict, json_path: Optional[str]) -> None:
    """Append ``row`` to the report, and rewrite ``json_path`` (when given) with it."""
    report['results'].append(row)
    if json_path:
        write_json_atomic(json_path, report)


def _whole_op(measure, x, offset, mask, weight, grad_out, geo, dname, sname, best) -> Dict:
    """The op with the best tiles, and cuDNN's conv, forward and forward+backward."""
    for kernel, (tiles, _) in best.items():
        TILE_OVERRIDES[kernel] = tiles
    leaves = [t.detach().requires_grad_() for t in (x, offset, mask, weight)]

    def dcn_forward():
        with torch.no_grad():
            TritonDeformConv.apply(leaves[0], leaves[1], leaves[2], leaves[3], None, geo)

    def dcn_train():
        out = TritonDeformConv.apply(leaves[0], leaves[1], leaves[2], leaves[3], None, geo)
        torch.autograd.grad(out, leaves, grad_out)

    def dcn_train_deterministic():
        torch.use_deterministic_algorithms(True)
        try:
            dcn_train()
        finally:
            torch.use_deterministic_algorithms(False)

    def dcn_train_padded():  # the experiment of launch.PAD_GRAD_OUT
        with launch.grad_out_padded():
            dcn_train()

    conv_leaves = [x.detach().requires_grad_(), weight.detach().requires_grad_()]

    def conv_forward():
        with torch.no_grad():
            F.conv2d(conv_leaves[0], conv_leaves[1], None, 1, 1)

    def conv_train():
        out = F.conv2d(conv_leaves[0], conv_leaves[1], None, 1, 1)
        torch.autograd.grad(out, conv_leaves, grad_out)

    row = dict(dtype=dname, shape=sname, kernel='op',
               best_tiles={k: list(t) for k, (t, _) in best.items()},
               triton_forward_ms=measure(dcn_forward), triton_train_ms=measure(dcn_train),
               triton_train_deterministic_ms=measure(dcn_train_deterministic),
               triton_train_padded_ms=measure(dcn_train_padded),
               conv_forward_ms=measure(conv_forward), conv_train_ms=measure(conv_train))
    row['forward_vs_conv'] = row['triton_forward_ms'] / row['conv_forward_ms']
    row['train_vs_conv'] = row['triton_train_ms'] / row['conv_train_ms']
    row['deterministic_vs_default'] = (row['triton_train_deterministic_ms']
                                       / row['triton_train_ms'])
    row['padded_vs_default'] = row['triton_train_padded_ms'] / row['triton_train_ms']
    print(f"{dname} {sname} op: forward {row['triton_forward_ms']:.3f} ms "
          f"({row['forward_vs_conv']:.2f}x conv), fwd+bwd {row['triton_train_ms']:.3f} ms "
          f"({row['train_vs_conv']:.2f}x conv), deterministic "
          f"{row['deterministic_vs_default']:.2f}x default, grad_out padded "
          f"{row['padded_vs_default']:.2f}x; best {row['best_tiles']}",
          flush=True)
    return row


def command_line(description: str, dtypes: str, **lists: str) -> argparse.ArgumentParser:
    """The command line of this sweep and of :mod:`.stages`: comma-separated ``--dtypes``
    (default ``dtypes``), ``--shapes`` and the ``lists`` given (name -> default), then
    ``--iters``, ``--device``, ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--dtypes', default=dtypes)
    parser.add_argument('--shapes', default='c3,c4,c5')
    for name, default in lists.items():
        parser.add_argument(f'--{name}', default=default)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--json', default=None,
                        help='also write the report here (after every row)')
    return parser


def parse_lists(parser: argparse.ArgumentParser, argv, known: Dict[str, Iterable[str]]):
    """``(args, {flag: [names]})``; an unknown name is a usage error naming the flag."""
    args = parser.parse_args(argv)
    lists = {}
    for flag, names in known.items():
        given = getattr(args, flag).split(',')
        unknown = [v for v in given if v not in names]
        if unknown:
            parser.error(f'--{flag}: expected a comma-separated list of '
                         f'{", ".join(names)}; got {", ".join(unknown)}')
        lists[flag] = given
    return args, lists


def build_parser() -> argparse.ArgumentParser:
    return command_line(__doc__.split('\n\n')[0], 'fp16,bf16,fp32',
                        kernels='forward,data,weight')


def main(argv=None) -> Dict:
    parser = build_parser()
    args, lists = parse_lists(parser, argv, {'dtypes': DTYPES, 'shapes': SHAPES,
                                             'kernels': CANDIDATES})
    return tune(lists['dtypes'], lists['shapes'], lists['kernels'], args.iters,
                torch.device(args.device), json_path=args.json)


if __name__ == '__main__':
    main()
