"""Statistics over seeds: mean, std, Student-t 95% intervals, curve areas, paired differences."""
import math
import statistics
from typing import Dict, Iterable, Optional, Sequence, Tuple

CONFIDENCE = 0.95


def mean_std(values: Iterable[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample std (n - 1) of the values that are not None; (None, None) if none
    is; the std of one value is None (undefined)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE
               ) -> Tuple[Optional[float], Optional[float]]:
    """Student-t interval of the mean: ``mean ± t(1 - (1 - c) / 2, n - 1) * s / sqrt(n)``.

    (None, None) for fewer than two values: with one seed there is no interval.
    """
    from scipy import stats
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None, None
    m, s = statistics.mean(values), statistics.stdev(values)
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, len(values) - 1)) * s / math.sqrt(
        len(values))
    return m - half, m + half


def summarize(values: Sequence[float]) -> dict:
    """``n``, ``mean``, ``std``, ``ci_low``, ``ci_high`` (None where undefined)."""
    values = [v for v in values if v is not None]
    m, s = mean_std(values)
    lo, hi = t_interval(values)
    return dict(n=len(values), mean=m, std=s, ci_low=lo, ci_high=hi)


def curve_area(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Trapezoid area under ``ys`` over ``xs`` divided by the range of ``xs``: the curve's
    mean value (a mean mAP over the sweep).  One point: that point.

    Raises:
        ValueError: lengths differ, no point, or ``xs`` is not strictly increasing.
    """
    if len(xs) != len(ys) or not xs:
        raise ValueError(f'xs and ys must be equally long and non-empty, got {len(xs)} and '
                         f'{len(ys)}')
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f'xs must be strictly increasing, got {list(xs)}')
    if len(xs) == 1:
        return float(ys[0])
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]))
    return area / (xs[-1] - xs[0])


def paired_difference(a: Dict[int, float], b: Dict[int, float]) -> dict:
    """``a - b`` paired by key (the training seed): :func:`summarize` of the per-seed
    differences over the seeds both have, plus ``seeds`` (those seeds)."""
    seeds = sorted(set(a) & set(b))
    return dict(summarize([a[s] - b[s] for s in seeds]), seeds=seeds)


def welch_difference(a: Sequence[float], b: Sequence[float],
                     confidence: float = CONFIDENCE) -> dict:
    """``mean(a) - mean(b)`` for two independent samples (two arms: different models),
    with Welch's t interval: standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)`` and the
    Welch-Satterthwaite degrees of freedom.

    Returns ``n_a``, ``n_b``, ``mean`` (None if either sample is empty), ``ci_low``,
    ``ci_high`` (None unless both have two values and some spread) and ``df``.
    """
    from scipy import stats
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    out = dict(n_a=len(a), n_b=len(b), mean=None, ci_low=None, ci_high=None, df=None)
    if not a or not b:
        return out
    out['mean'] = statistics.mean(a) - statistics.mean(b)
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(1 - (1 - confidence) / 2, df)) * math.sqrt(va + vb)
    out.update(ci_low=out['mean'] - half, ci_high=out['mean'] + half, df=df)
    return out


def fmt(mean: Optional[float], std: Optional[float] = None, digits: int = 3) -> str:
    """``'0.042 ± 0.014'``, ``'0.042'`` without a std, ``'n/a'`` without a mean."""
    if mean is None:
        return 'n/a'
    return f'{mean:.{digits}f}' + ('' if std is None else f' ± {std:.{digits}f}')


def fmt_ci(low: Optional[float], high: Optional[float], digits: int = 3) -> str:
    """``'[0.030, 0.054]'``, or ``'—'`` without an interval."""
    if low is None:
        return '—'
    return f'[{low:.{digits}f}, {high:.{digits}f}]'
