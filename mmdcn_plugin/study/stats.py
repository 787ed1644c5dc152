"""Statistics of the study's cells: mean and std over seeds, Welch's t-test."""
import statistics
from typing import Iterable, Optional, Sequence, Tuple


def mean_std(values: Iterable[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample std of the values that are not None; (None, None) if none is.

    One value has a std of 0.0 (not undefined), so that a cell with one seed still
    prints.
    """
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided Welch t-test p-value, or None when it cannot be computed.

    None: fewer than two values on a side, both sides constant, or no scipy.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        from scipy import stats
    except ImportError:
        return None
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def fmt(mean: Optional[float], std: Optional[float], digits: int = 3) -> str:
    """``'0.042 ± 0.014'``, or ``'n/a'`` without a mean."""
    if mean is None:
        return 'n/a'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'
