"""The op benchmark's rows as text: the Markdown table, and each backend against mmcv."""
from typing import List

from .ops import MODES


def ops_table(rows: List[dict]) -> str:
    """A Markdown table of :func:`.ops.run_ops`'s rows: one line per shape and candidate.

    With floors (:func:`.floor.add_floors`) a column gives each mode's floor in ms and
    what sets it, and another the median over the floor.
    """
    mem = any('peak_mb' in r for r in rows)
    floors = any('floor_ms' in r for r in rows)
    tf32 = any(r.get('tf32', 'n/a') != 'n/a' for r in rows)
    head = '| shape (N,C,H,W) | candidate | fwd ms | fwd x conv | fwd+bwd ms | fwd+bwd x conv |'
    head += ' floor ms fwd / fwd+bwd | x floor fwd / fwd+bwd |' if floors else ''
    head += ' peak MB (fwd+bwd) |' if mem else ''
    head += ' TF32 |' if tf32 else ''
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    keyed = {(r['shape'], r['candidate'], r['mode']): r for r in rows}

    def cells(r):
        if 'error' in r:
            return f"failed: {r['error'][:60]}", '-'
        return r['median_ms'], f"{r['vs_conv']}x"

    for shape in dict.fromkeys(r['shape'] for r in rows):
        for cand in dict.fromkeys(r['candidate'] for r in rows):
            f, b = keyed[(shape, cand, 'fwd')], keyed[(shape, cand, 'fwd+bwd')]
            (f_ms, f_x), (b_ms, b_x) = cells(f), cells(b)
            line = f"| {f['nchw'].replace('x', ',')} | {cand} | {f_ms} | {f_x} | {b_ms} | {b_x} |"
            if floors:
                line += (f" {_floor_cell(f)} / {_floor_cell(b)} | {_x_floor(f)} / "
                         f"{_x_floor(b)} |")
            if mem:
                line += f" {b.get('peak_mb', '')} |"
            if tf32:
                line += f" {f.get('tf32', '')} |"
            lines.append(line)
    return '\n'.join(lines)


def _floor_cell(row: dict) -> str:
    return f"{row['floor_ms']} ({row['bound']})" if 'floor_ms' in row else '-'


def _x_floor(row: dict) -> str:
    return f"{row['vs_floor']}x" if 'vs_floor' in row else '-'


def geomean(values) -> float:
    values = list(values)
    prod = 1.0
    for v in values:
        prod *= v
    return prod ** (1.0 / len(values))


def ops_summary(rows: List[dict]) -> str:
    """Each plugin backend against mmcv's raw kernel, per mode ('' without mmcv).

    One line per backend and mode: the geometric mean over shapes of mmcv's time /
    the backend's time, and the backend's largest time / mmcv's time over the shapes
    (for ``plugin:mmcv``, which runs mmcv's kernel, that is the wrapper's overhead;
    ``plugin:auto`` on CUDA runs ``triton`` where Triton imports, else mmcv's kernel).
    Last, where the rows have a ``spread``, the largest: the noise of the run.
    """
    ok = [r for r in rows if 'error' not in r]
    cands = list(dict.fromkeys(r['candidate'] for r in ok))
    noise = _noise_line(ok)
    if 'mmcv' not in cands:
        return noise
    out = []
    for mode in MODES:
        for cand in cands:
            if not cand.startswith('plugin:'):
                continue
            ratios = {}
            for shape in dict.fromkeys(r['shape'] for r in ok):
                get = {r['candidate']: r['median_ms'] for r in ok
                       if r['shape'] == shape and r['mode'] == mode}
                if cand in get and 'mmcv' in get:
                    ratios[shape] = get['mmcv'] / get[cand]
            if not ratios:
                continue
            worst = min(ratios, key=ratios.get)
            out.append(f'{cand} {mode}: {geomean(ratios.values()):.2f}x faster than mmcv '
                       f'(geometric mean over shapes); its slowest shape, {worst}: '
                       f"{1 / ratios[worst]:.3f}x mmcv's time")
    return '\n'.join(out + ([noise] if noise else []))


def _noise_line(rows: List[dict]) -> str:
    spread = [r for r in rows if 'spread' in r]
    if not spread:
        return ''
    worst = max(spread, key=lambda r: r['spread'])
    return (f"noise: a row's repetitions spread over at most {100 * worst['spread']:.0f} % of "
            f"its median ({worst['candidate']}, {worst['shape']} {worst['mode']}); a "
            "difference smaller than the rows' spread is not a result")
