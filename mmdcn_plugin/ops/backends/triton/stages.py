"""Time each Triton kernel with one stage left out: where a kernel's time goes.

    python -m mmdcn_plugin.ops.backends.triton.stages [--dtypes fp16]
        [--shapes c3,c4,c5] [--iters 10] [--json PATH] [--device cuda]

What a profiler's counters would say, from timings alone (``ncu`` reads no counters on
every GPU machine).  For each dtype and shape (:data:`.tune.SHAPES`, the tiles
:func:`.launch.choose_tiles` picks) it times, median of CUDA events:

* ``forward`` and ``weight`` (the weight gradient): ``full``; ``one-corner``, one
  bilinear read instead of four (:data:`.launch.ONE_CORNER`); ``no-sampling``,
  stand-in columns and no read of the input or the offsets (the implicit GEMM
  alone); ``no-dot``, the columns summed instead of multiplied (the sampling alone);
* ``data`` (the input, offset and mask gradients): ``full``; ``no-input-grad``, no
  scatter into the input gradient; ``no-offset-mask-grad``, no corner values read
  for the offset and mask gradients (the scatter alone); ``deterministic``, the
  fixed-point scatter.

``full - variant`` is about what the stage left out costs; stages that overlap in a
kernel (memory reads behind tensor-core work) add up to more than the whole.  The
variants compute wrong numbers on purpose: :data:`.launch.LEAVE_OUT` is set only here.
``--shapes tiny --device cpu`` with ``TRITON_INTERPRET=1`` exercises the code on the
CPU (timings meaningless).
"""
import argparse
from typing import Callable, Dict, List, Optional

import torch

from ....utils.tf32 import matmul_tf32
from ...checks import check_deform_conv2d_args
from . import launch
from .tune import DTYPES, SHAPES, add_row, command_line, parse_lists, problem, timer

# kernel -> variant -> its setting: launch.LEAVE_OUT's value for 'forward' and 'weight'.
KERNEL_VARIANTS = {
    'forward': {'full': 0, 'one-corner': launch.ONE_CORNER,
                'no-sampling': launch.NO_SAMPLING, 'no-dot': launch.NO_DOT},
    'weight': {'full': 0, 'one-corner': launch.ONE_CORNER,
               'no-sampling': launch.NO_SAMPLING, 'no-dot': launch.NO_DOT},
    # backward_data's own switches: (need_input, need_offset, need_mask, deterministic)
    'data': {'full': (True, True, True, False), 'no-input-grad': (False, True, True, False),
             'no-offset-mask-grad': (True, False, False, False),
             'deterministic': (True, True, True, True)},
}


def kernel_run(kernel: str, variant, tensors, geo) -> Callable[[], object]:
    """A call of ``kernel`` alone; ``variant`` is backward_data's switches for 'data'
    (:data:`KERNEL_VARIANTS`), else unused (the caller sets :data:`.launch.LEAVE_OUT`)."""
    x, offset, mask, weight, grad_out = tensors
    if kernel == 'forward':
        return lambda: launch.forward(x, offset, mask, weight, None, geo)
    if kernel == 'weight':
        return lambda: launch.backward_weight(x, offset, mask, grad_out, geo)
    need_input, need_offset, need_mask, deterministic = variant
    return lambda: launch.backward_data(x, offset, mask, weight, grad_out, geo, need_input,
                                        need_offset, need_mask, deterministic)


def profile_stages(dtypes: List[str], shapes: List[str], iters: int, device: torch.device,
                   json_path: Optional[str] = None) -> Dict:
    """Time every kernel's variants; rows as in the module docstring.

    The report is also written to ``json_path`` after every row.  A variant that
    fails is a row with ``ms`` NaN and a note.  :data:`.launch.LEAVE_OUT` is empty
    again afterwards, also when a run stops midway.
    """
    measure = timer(device, iters)
    report = {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
              'torch': torch.__version__, 'tf32_matmul': matmul_tf32(),
              'results': []}
    try:
        for dname in dtypes:
            for sname in shapes:
                tensors = problem(SHAPES[sname], DTYPES[dname], device)
                x, offset, mask, weight, _ = tensors
                geo = check_deform_conv2d_args(x, offset, weight, None, 1, 1, 1, mask)
                for kernel, variants in KERNEL_VARIANTS.items():
                    full_ms = None
                    for variant, setting in variants.items():
                        launch.LEAVE_OUT.clear()
                        if kernel != 'data':
                            launch.LEAVE_OUT[kernel] = setting
                        try:
                            ms, note = measure(kernel_run(kernel, setting, tensors, geo)), ''
                        except Exception as err:  # a compile or launch failure
                            ms, note = float('nan'), f'{type(err).__name__}: {str(err)[:80]}'
                        if variant == 'full':
                            full_ms = ms
                        row = dict(dtype=dname, shape=sname, kernel=kernel, variant=variant,
                                   ms=ms, vs_full=ms / full_ms if full_ms else float('nan'),
                                   tiles=list(launch.choose_tiles(geo, x.dtype, kernel)),
                                   note=note)
                        add_row(report, row, json_path)
                        print(f"{dname} {sname} {kernel:7s} {variant:19s} {ms:8.4f} ms "
                              f"({row['vs_full']:.2f}x full) {note}", flush=True)
    finally:
        launch.LEAVE_OUT.clear()
    return report


def build_parser() -> argparse.ArgumentParser:
    return command_line(__doc__.split('\n\n')[0], 'fp16')


def main(argv=None) -> Dict:
    parser = build_parser()
    args, lists = parse_lists(parser, argv, {'dtypes': DTYPES, 'shapes': SHAPES})
    return profile_stages(lists['dtypes'], lists['shapes'], args.iters,
                          torch.device(args.device), json_path=args.json)


if __name__ == '__main__':
    main()
