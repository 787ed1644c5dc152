"""What the Triton kernels ask of a GPU, found without one: registers, local memory,
shared memory, and the instructions that matter.

    python -m mmdcn_plugin.ops.backends.triton.resources [--capability 90]
        [--dtypes fp16,bf16,fp32] [--shapes c3,c4,c5] [--kernels forward,data,weight]
        [--json PATH]

Makes the tile sweep's launches (:func:`.precompile.sweep_launches`: every candidate
of :data:`.tune.CANDIDATES` at the real c3-c5 shapes) as compiles for the target
GPU, so each kernel is specialised exactly as a launch there specialises it (integer
arguments divisible by 16 or not), then reads its binary with Triton's ``cuobjdump``:

* ``registers`` a thread and ``local`` bytes a thread (register spills and stack: a
  tile that needs any pays local-memory traffic in its inner loop);
* ``shared`` memory a program;
* from the machine code: ``wide_loads``/``narrow_loads``, the global loads of 16 or 8
  bytes and of fewer (a gather that is not vectorised shows as narrow loads), and
  ``mma``, the tensor-core instruction used (``HGMMA`` is Hopper's warp-group MMA,
  ``HMMA`` the older one; none for strict fp32, which multiplies on the FMA units).

fp32 is the backend's fp32 while PyTorch's matmul TF32 flag is off (its default):
strict fp32.  A prediction to check against the sweep's timings, made before any
device time is spent.
"""
import argparse
import os
import re
import subprocess
import tempfile
from typing import Dict, List

from ....utils import write_json_atomic
from .precompile import MULTIPROCESSORS, compile_only, describe, sweep_launches
from .tune import CANDIDATES, DTYPES, SHAPES, parse_lists


def parse_res_usage(text: str) -> Dict[str, int]:
    """``{'registers', 'stack', 'local'}`` from ``cuobjdump -res-usage`` of one kernel."""
    found = {name: re.search(rf'\b{key}:(\d+)', text)
             for name, key in (('registers', 'REG'), ('stack', 'STACK'), ('local', 'LOCAL'))}
    missing = [name for name, m in found.items() if m is None]
    if missing:
        raise ValueError(f'parse_res_usage: no {", ".join(missing)} in:\n{text}')
    return {name: int(m.group(1)) for name, m in found.items()}


def count_instructions(sass: str) -> Dict:
    """What :mod:`this module <.resources>` reads from a kernel's machine code."""
    loads = re.findall(r'\bLDG\.E(?:\.(128|64|U16|S16|U8|S8|32))?\b', sass)
    mma = sorted(set(re.findall(r'\b(HGMMA|HMMA)\.', sass)))
    return dict(wide_loads=sum(width in ('128', '64') for width in loads),
                narrow_loads=sum(width not in ('128', '64') for width in loads),
                mma='+'.join(mma) or 'none')


def cubin_usage(cubin: bytes) -> Dict:
    """:func:`parse_res_usage` and :func:`count_instructions` of one compiled kernel."""
    from triton import knobs
    tool = knobs.nvidia.cuobjdump.path
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.cubin')
        with open(path, 'wb') as f:
            f.write(cubin)

        def dump(flag):
            return subprocess.run([tool, flag, path], capture_output=True, text=True,
                                  check=True).stdout
        return dict(parse_res_usage(dump('-res-usage')), **count_instructions(dump('-sass')))


def usage_rows(capability: int, dtypes: List[str], shapes: List[str],
               kernels: List[str]) -> List[Dict]:
    """One row per candidate launch of the sweep (see the module docstring)."""
    rows = []
    with compile_only(capability, MULTIPROCESSORS) as compiled:
        for launched in sweep_launches(dtypes, shapes, kernels, candidates_only=True):
            kernel = compiled[-1]
            row = dict(launched, shared=kernel.metadata.shared,
                       **cubin_usage(kernel.asm['cubin']))
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: Dict) -> str:
    return (f"{describe(row, variant=False)} {row['registers']:3d} registers, "
            f"{row['local']:4d} B local, {row['shared'] / 1024:5.1f} KiB shared, "
            f"loads {row['wide_loads']} wide / {row['narrow_loads']} narrow, "
            f"mma {row['mma']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--capability', type=int, default=90,
                        help='CUDA compute capability times 10 (default 90: H100/H200)')
    parser.add_argument('--dtypes', default='fp16,bf16,fp32')
    parser.add_argument('--shapes', default='c3,c4,c5')
    parser.add_argument('--kernels', default='forward,data,weight')
    parser.add_argument('--json', default=None, help='also write the rows here')
    return parser


def main(argv=None) -> List[Dict]:
    parser = build_parser()
    args, lists = parse_lists(parser, argv, {'dtypes': DTYPES, 'shapes': SHAPES,
                                             'kernels': CANDIDATES})
    rows = usage_rows(args.capability, lists['dtypes'], lists['shapes'], lists['kernels'])
    if args.json:
        write_json_atomic(args.json, {'capability': args.capability, 'rows': rows})
    return rows


if __name__ == '__main__':
    main()
