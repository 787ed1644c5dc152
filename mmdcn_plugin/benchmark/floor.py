"""The least time the op can take on a machine: its work over the machine's ceilings.

Two numbers bound any kernel: the arithmetic it must do over the rate of the unit that
does it, and the fewest bytes it must move through device memory (every input read
once, every output written once) over the memory's bandwidth.  The largest of these
times is the *floor*: no implementation runs much faster, and a measured time over it
is the gap that is left (``vs_floor`` in the op benchmark's rows).

Work of one candidate of :func:`.ops.run_ops` on a shape of :data:`.ops.OP_SHAPES` (a
3x3 layer, stride 1, padding 1, that keeps N, C, H and W), with ``P = N*H*W`` output
positions and ``S = 9*P*C`` sampled values:

============  ==============  ==============  ==========================================
candidate     matmul flops    bilinear flops  elements moved (times the element size)
============  ==============  ==============  ==========================================
conv fwd      ``18*P*C*C``    0               x, weight read; out written
conv fwd+bwd  3x fwd          0               and grad_out read; grad_x, grad_w written
DCNv2 fwd     ``18*P*C*C``    ``8*S``         x, weight, offset, mask read; out written
DCNv2 f+b     3x fwd          ``27*S``        twice fwd (grad_out; the four gradients)
============  ==============  ==============  ==========================================

The bilinear flops are lower bounds, not a model of any kernel: forward, the four
products and three sums of one bilinear read and the mask's product (8 a sampled value);
backward, the input gradient's four corner products and the mask's (5), the two offset
gradients' corner differences, products and sums (12), the mask gradient's product and
sum (2): 19.  The weight gradient's columns count as free (a kernel that recomputes
them does 8 more a value).  The bilinear arithmetic runs in float32 on the GPU's
general units whatever the dtype, so its rate is the float32 matmul's without TF32
(cuBLAS's SGEMM runs on those units; an optimistic rate for scattered work).

Ceilings come from :func:`measure_ceilings` on the machine (a large copy, a large
matmul per precision), or are given (:func:`parse_ceilings`); datasheet figures are leads
at best.
"""
import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..utils.tf32 import matmul_tf32_set
from ..utils.timing import Measure, interleaved_times, measure_for

# Which matmul rate a row's GEMM is held to, by dtype; float32 is 'tf32' or 'float32'
# by the TF32 switch that governed that side (the row's ``tf32`` note).
ITEMSIZE = {'float16': 2, 'bfloat16': 2, 'float32': 4, 'float64': 8}
MATMUL_KEYS = ('float16', 'bfloat16', 'tf32', 'float32', 'float64')
BILINEAR_FLOPS = {'fwd': 8, 'fwd+bwd': 8 + 19}


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """What a machine does at best.

    Attributes:
        memory (float): bytes a second through device memory, read plus written.
        matmul (dict): key of :data:`MATMUL_KEYS` -> flops a second of a large matmul
            (``'float32'``: without TF32, also the rate of the bilinear arithmetic).
        source (str): where the figures come from (``'measured on cuda, n=8192'``).
    """
    memory: float
    matmul: Dict[str, float]
    source: str = 'given'

    def describe(self) -> str:
        rates = ', '.join(f'{k} {v / 1e12:.3g}' for k, v in self.matmul.items())
        return (f'ceilings ({self.source}): memory {self.memory / 1e12:.3g} TB/s; '
                f'matmul TFLOP/s: {rates}')


def op_work(shape: Sequence[int], mode: str, deformable: bool, itemsize: int
            ) -> Dict[str, float]:
    """The least work of the op (``deformable``) or the plain conv on ``shape``.

    Args:
        shape: (N, C, H, W) of the input, kept by the layer.
        mode (str): ``'fwd'`` or ``'fwd+bwd'``.

    Returns:
        dict: ``matmul_flops``, ``bilinear_flops`` and ``bytes``.
    """
    if mode not in BILINEAR_FLOPS:
        raise ValueError(f"mode: expected one of {list(BILINEAR_FLOPS)}, got {mode!r}")
    n, c, h, w = shape
    p = n * h * w
    fmap, weight = n * c * h * w, c * c * 9
    matmul = 2 * 9 * p * c * c * (3 if mode == 'fwd+bwd' else 1)
    if deformable:
        moved = fmap + weight + 27 * p + fmap  # x, weight, offset (18) and mask (9), out
        bilinear = BILINEAR_FLOPS[mode] * 9 * p * c
    else:
        moved, bilinear = fmap + weight + fmap, 0
    return dict(matmul_flops=float(matmul), bilinear_flops=float(bilinear),
                bytes=float(moved * itemsize * (2 if mode == 'fwd+bwd' else 1)))


def matmul_key(dtype: str, tf32_note: str) -> str:
    """The rate a row's GEMM is held to: its dtype, or for float32 ``'tf32'`` where the
    row's note says its switch allowed TF32 (``'matmul.allow_tf32=True'``)."""
    if dtype not in ITEMSIZE:
        raise ValueError(f'dtype: expected one of {sorted(ITEMSIZE)}, got {dtype!r}')
    if dtype == 'float32':
        return 'tf32' if tf32_note.endswith('=True') else 'float32'
    return dtype


def floor_seconds(work: Dict[str, float], key: str, ceilings: Ceilings
                  ) -> Tuple[float, str]:
    """(The floor in seconds, what sets it: ``'matmul'``, ``'bilinear'`` or ``'memory'``)."""
    for needed in (key, 'float32'):
        if needed not in ceilings.matmul:
            raise ValueError(f'ceilings: expected a {needed!r} matmul rate, got '
                             f'{sorted(ceilings.matmul)}')
    times = {'matmul': work['matmul_flops'] / ceilings.matmul[key],
             'bilinear': work['bilinear_flops'] / ceilings.matmul['float32'],
             'memory': work['bytes'] / ceilings.memory}
    bound = max(times, key=times.get)
    return times[bound], bound


def add_floors(rows: List[dict], ceilings: Ceilings) -> List[dict]:
    """Give every timed row of :func:`.ops.run_ops` its ``floor_ms``, ``vs_floor``
    (median / floor) and ``bound``; rows that failed are left as they are."""
    for row in rows:
        if 'median_ms' not in row:
            continue
        shape = [int(v) for v in row['nchw'].split('x')]
        work = op_work(shape, row['mode'], row['candidate'] != 'conv',
                       ITEMSIZE[row['dtype']])
        seconds, bound = floor_seconds(work, matmul_key(row['dtype'], row.get('tf32', '')),
                                       ceilings)
        row.update(floor_ms=round(seconds * 1e3, 4), bound=bound,
                   vs_floor=round(row['median_ms'] / (seconds * 1e3), 2))
    return rows


def ceiling_keys(dtype: str) -> List[str]:
    """The matmul rates a benchmark in ``dtype`` needs (float32 always: the bilinear
    arithmetic)."""
    keys = ['tf32', 'float32'] if dtype == 'float32' else [matmul_key(dtype, ''), 'float32']
    return list(dict.fromkeys(keys))


def measure_ceilings(device: str, keys: Iterable[str], n: Optional[int] = None,
                     copy_elements: Optional[int] = None, repeat: int = 5, warmup: int = 2,
                     measure: Optional[Measure] = None,
                     log: Callable[[str], None] = lambda msg: None) -> Ceilings:
    """Measure a device's ceilings on random data (zeros can run faster than real data):
    the fastest of ``repeat`` timed runs after ``warmup`` (a ceiling is what the machine
    does at best; measured, it still moves by a few percent from run to run).

    Args:
        keys: matmul rates to measure, of :data:`MATMUL_KEYS` (``'tf32'``: float32 with
            TF32 allowed for the run, ``'float32'``: without; on the CPU both are float32).
        n (int): the matmuls are n x n x n (default 8192 on CUDA, 1024 on the CPU).
        copy_elements (int): float32 elements copied device to device (default 2**28,
            1 GiB, on CUDA; 2**26 on the CPU, more than its caches); the bytes read and
            written count.
    """
    keys = list(dict.fromkeys(keys))
    unknown = sorted(set(keys) - set(MATMUL_KEYS))
    if unknown:
        raise ValueError(f'keys: expected names among {list(MATMUL_KEYS)}, got {unknown}')
    cuda = device.split(':')[0] == 'cuda'
    n = n or (8192 if cuda else 1024)
    copy_elements = copy_elements or 2 ** (28 if cuda else 26)
    measure = measure or measure_for(device)

    def fastest(run: Callable[[], object]) -> float:
        return min(interleaved_times({'run': run}, repeat, warmup, measure=measure)['run'])

    gen = torch.Generator(device=device).manual_seed(0)

    def copy_rate() -> float:  # its buffers are freed before the matmuls
        src = torch.randn(copy_elements, device=device, generator=gen)
        dst = torch.empty_like(src)
        return 2 * src.numel() * 4 / fastest(lambda: dst.copy_(src))

    log(f'[ceilings] copy of {copy_elements * 4 / 2 ** 20:.0f} MiB')
    memory = copy_rate()
    rates = {}
    for key in keys:
        dtype = torch.float32 if key == 'tf32' else getattr(torch, key)
        a = torch.randn(n, n, device=device, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, generator=gen).to(dtype)
        log(f'[ceilings] {key} matmul of {n}x{n}x{n}')
        with matmul_tf32_set(key == 'tf32'):
            rates[key] = 2 * n ** 3 / fastest(lambda: torch.mm(a, b))
    return Ceilings(memory, rates, f'measured on {device}, n={n}')


def parse_ceilings(items: Sequence[str]) -> Ceilings:
    """Ceilings given as ``memory=TB/s`` and ``<key>=TFLOP/s`` (e.g. ``memory=3.0
    bfloat16=798 float32=51``), for floors worked out before a machine is at hand."""
    values: Dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition('=')
        try:
            values[name] = float(value) * 1e12
        except ValueError:
            sep = ''
        if not sep or name not in ('memory',) + MATMUL_KEYS or values.get(name, 0) <= 0:
            raise ValueError(f'ceilings: expected memory=TB/s or <{"|".join(MATMUL_KEYS)}>='
                             f'TFLOP/s with a positive number, got {item!r}')
    if 'memory' not in values:
        raise ValueError(f'ceilings: expected a memory=TB/s entry, got {list(items)}')
    memory = values.pop('memory')
    return Ceilings(memory, values, 'given')


def floor_rows(shapes: Sequence[str], dtype: str, ceilings: Ceilings, device: str = 'cuda'
               ) -> List[dict]:
    """The floors of the plain conv and the deformable op on ``shapes`` (names or presets
    of :data:`.ops.OP_SHAPES`), forward and forward+backward, before anything is timed:
    a row per shape, mode and candidate with its work, ``floor_ms`` and ``bound``.  In
    float32 each side is held to the rate its TF32 switch allows on ``device`` now."""
    from .ops import OP_SHAPES, expand_shapes, tf32_note  # ops imports this module
    rows = []
    for name in expand_shapes(shapes):
        for mode in BILINEAR_FLOPS:
            for candidate in ('conv', 'deformable'):
                note = tf32_note(candidate, device, dtype)
                work = op_work(OP_SHAPES[name], mode, candidate != 'conv', ITEMSIZE[dtype])
                seconds, bound = floor_seconds(work, matmul_key(dtype, note), ceilings)
                rows.append(dict(shape=name, nchw='x'.join(map(str, OP_SHAPES[name])),
                                 mode=mode, candidate=candidate, dtype=dtype, tf32=note,
                                 matmul_gflop=round(work['matmul_flops'] / 1e9, 3),
                                 bilinear_gflop=round(work['bilinear_flops'] / 1e9, 3),
                                 mbytes=round(work['bytes'] / 1e6, 2),
                                 floor_ms=round(seconds * 1e3, 4), bound=bound))
    return rows


def floor_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`floor_rows`."""
    keys = ('mode', 'candidate', 'matmul_gflop', 'bilinear_gflop', 'mbytes', 'floor_ms',
            'bound', 'tf32')
    lines = ['| shape (N,C,H,W) | mode | candidate | matmul GFLOP | bilinear GFLOP | MB moved '
             '| floor ms | set by | TF32 |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        cells = [r['nchw'].replace('x', ',')] + [str(r[k]) for k in keys]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
