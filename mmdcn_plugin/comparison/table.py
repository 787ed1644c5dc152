"""The demo's comparison table: one row per detector and a row for the difference."""
from typing import Dict, List, Sequence

__all__ = ['COLUMNS', 'difference_row', 'format_table']

#: (key, header, format) of each numeric column, in order.
COLUMNS = (
    ('bbox_mAP', 'bbox mAP', '{:.3f}'),
    ('bbox_mAP_50', 'mAP50', '{:.3f}'),
    ('bbox_mAP_75', 'mAP75', '{:.3f}'),
    ('params_M', 'params (M)', '{:.3f}'),
    ('gflops', 'GFLOPs', '{:.3f}'),
    ('s_per_iter', 's / train iter', '{:.3f}'),
)


def difference_row(rows: Sequence[Dict], name: str = 'difference') -> Dict:
    """``rows[1] - rows[0]`` for every column both hold (the second row is compared
    with the first, the baseline); ``s_per_iter`` also as a ratio (``s_per_iter_x``)."""
    if len(rows) != 2:
        raise ValueError(f'rows: expected 2 (baseline, compared), got {len(rows)}')
    base, other = rows
    diff = {'model': name}
    for key, _, _ in COLUMNS:
        if base.get(key) is not None and other.get(key) is not None:
            diff[key] = other[key] - base[key]
    if base.get('s_per_iter') and other.get('s_per_iter') is not None:
        diff['s_per_iter_x'] = other['s_per_iter'] / base['s_per_iter']
    return diff


def _cell(row: Dict, key: str, fmt: str, signed: bool) -> str:
    value = row.get(key)
    if value is None:
        return 'n/a'
    text = ('{:+' + fmt[2:]).format(value) if signed else fmt.format(value)
    if key == 's_per_iter' and 's_per_iter_x' in row:
        text += f' ({row["s_per_iter_x"]:.2f}x)'
    return text


def format_table(rows: Sequence[Dict]) -> str:
    """A Markdown table of ``rows`` (each with ``model`` and the :data:`COLUMNS` keys)
    followed by their :func:`difference_row`."""
    all_rows: List[Dict] = list(rows) + [difference_row(rows)]
    header = ['model'] + [h for _, h, _ in COLUMNS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for i, row in enumerate(all_rows):
        signed = i == len(all_rows) - 1
        cells = [row['model']] + [_cell(row, k, f, signed) for k, _, f in COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
