"""The demo's comparison: the table, the difference row, the convergence test."""
import pytest

from mmdcn_plugin.comparison import (convergence, difference_row, format_table,
                                     seconds_per_iter, val_curve)


def _rows():
    return [dict(model='plain conv', bbox_mAP=0.40, bbox_mAP_50=0.70, bbox_mAP_75=0.41,
                 params_M=1.5, gflops=0.20, s_per_iter=0.50),
            dict(model='DCNv2', bbox_mAP=0.52, bbox_mAP_50=0.80, bbox_mAP_75=0.55,
                 params_M=1.6, gflops=0.25, s_per_iter=0.55)]


def test_difference_row_is_second_minus_first():
    diff = difference_row(_rows())
    assert diff['bbox_mAP'] == pytest.approx(0.12)
    assert diff['params_M'] == pytest.approx(0.1)
    assert diff['s_per_iter_x'] == pytest.approx(1.1)


def test_difference_row_needs_two_rows():
    with pytest.raises(ValueError, match='expected 2'):
        difference_row(_rows()[:1])


def test_table_shows_both_rows_and_a_signed_difference():
    table = format_table(_rows()).splitlines()
    assert table[0].startswith('| model | bbox mAP |')
    assert table[2].startswith('| plain conv | 0.400 |')
    assert table[3].startswith('| DCNv2 | 0.520 |')
    assert table[4].startswith('| difference | +0.120 |')
    assert '(1.10x)' in table[4]
    # A loss is shown as a loss, not hidden.
    worse = _rows()
    worse[1]['bbox_mAP'] = 0.30
    assert '| difference | -0.100 |' in format_table(worse)


def test_missing_value_is_n_a():
    rows = _rows()
    rows[0]['gflops'] = None
    assert 'n/a' in format_table(rows)


def test_val_curve_and_seconds_per_iter():
    # One rule with the study: a validation that logged no COCO metric (nothing detected)
    # is an mAP of 0, not a missing point.
    from mmdcn_plugin.study.records import val_curve as study_val_curve
    val = [{'step': 2, 'coco/bbox_mAP': 0.2}, {'step': 1, 'coco/bbox_mAP': 0.1},
           {'step': 3, 'other': 1.0}]
    assert val_curve is study_val_curve
    assert val_curve(val) == [[1, 0.1], [2, 0.2], [3, 0.0]]
    train = [{'time': 9.0}, {'time': 9.0}, {'time': 1.0}, {'time': 2.0}, {'time': 3.0}]
    assert seconds_per_iter(train) == 2.0  # the first two (warm-up) are left out
    assert seconds_per_iter([]) is None


@pytest.mark.parametrize('curve,converged', [
    # 8 evaluations; at 3/4 (step 6) 0.50, final 0.52: +4% -> converged.
    ([(i, v) for i, v in enumerate([.1, .2, .3, .4, .45, .5, .51, .52], 1)], True),
    # Still climbing: 0.40 -> 0.50 is +25%.
    ([(i, v) for i, v in enumerate([.1, .2, .3, .35, .38, .4, .45, .5], 1)], False),
    # Flat but only 5 evaluations: not enough to call it.
    ([(i, v) for i, v in enumerate([.5, .5, .5, .5, .5], 1)], False),
])
def test_convergence(curve, converged):
    max_step = curve[-1][0]
    result = convergence(curve, max_step)
    assert result['converged'] is converged
    assert result['start_step'] == max(s for s, _ in curve if s <= 0.75 * max_step)
    assert result['final'] == curve[-1][1]
