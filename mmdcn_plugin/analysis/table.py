"""Text tables of FLOP counts, as ``tools/get_flops.py --per-layer`` prints them."""
from typing import List

from .private_api import format_size

DEFORMABLE_COLUMNS = (('deform_conv', 'main conv'), ('deform_sampling', 'sampling'),
                      ('deform_modulation', 'modulation'), ('offset_head', 'offset head'),
                      ('total', 'total'))


def format_deformable_table(rows: List[dict]) -> str:
    """A text table of :func:`~mmdcn_plugin.analysis.deformable_layer_flops`'s rows.

    One line per deformable layer: its name, then the multiply-adds of its main conv,
    bilinear sampling, modulation, offset head and total, in MMEngine's size format.
    """
    missing = [k for k, _ in DEFORMABLE_COLUMNS + (('name', ''),) if rows and k not in rows[0]]
    if missing:
        raise ValueError(f'rows: expected dicts with the keys of deformable_layer_flops, '
                         f'the first lacks {missing}')
    header = ('deformable layer',) + tuple(title for _, title in DEFORMABLE_COLUMNS)
    body = [(r['name'],) + tuple(format_size(r[k]) for k, _ in DEFORMABLE_COLUMNS)
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = [' | '.join(str(x).ljust(w) for x, w in zip(header, widths)),
             '-+-'.join('-' * w for w in widths)]
    lines += [' | '.join(str(x).ljust(w) for x, w in zip(row, widths)) for row in body]
    return '\n'.join(lines)
