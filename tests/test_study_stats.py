"""mmdcn_plugin.study.stats and .aggregate: the statistics against hand-computed numbers."""

import pytest

from mmdcn_plugin import study
from mmdcn_plugin.study import (augmentation_effects, curve_area,
                                paired_difference, t_interval,
                                welch_difference)


def test_t_interval_by_hand():
    # mean 2.5, s = 1.2910, t(0.975, 3) = 3.18245: 2.5 -+ 3.18245 * 1.2910 / 2
    low, high = t_interval([1, 2, 3, 4])
    assert low == pytest.approx(0.445739, abs=1e-5) and high == pytest.approx(4.554261, abs=1e-5)
    assert t_interval([0.3]) == (None, None)
    s = study.summarize([0.3])
    assert (s['n'], s['mean'], s['std'], s['ci_low']) == (1, 0.3, None, None)


def test_curve_area_is_a_mean_over_the_range():
    assert curve_area([0, 30, 60], [0.3, 0.6, 0.3]) == pytest.approx(0.45)
    # uneven steps: (0.5 * 0.3 + 1 * 0.25) / 1.5
    assert curve_area([0.5, 1, 2], [0.2, 0.4, 0.1]) == pytest.approx(0.4 / 1.5)
    assert curve_area([1.0], [0.25]) == 0.25
    with pytest.raises(ValueError, match='strictly increasing'):
        curve_area([0, 0], [1, 1])
    with pytest.raises(ValueError, match='equally long and non-empty, got 2 and 1'):
        curve_area([0, 1], [1])


def test_paired_difference_by_seed():
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.4, 3: 0.9}, {0: 0.4, 1: 0.45, 2: 0.35})
    # differences 0.1, 0.15, 0.05: mean 0.1, s = 0.05, t(0.975, 2) = 4.302653
    assert d['seeds'] == [0, 1, 2] and d['n'] == 3
    assert d['mean'] == pytest.approx(0.1)
    assert d['ci_low'] == pytest.approx(0.1 - 0.124207, abs=1e-5)
    assert d['ci_high'] == pytest.approx(0.1 + 0.124207, abs=1e-5)


def test_welch_difference_matches_scipys_unequal_variance_t_test():
    from scipy import stats
    a, b = [0.61, 0.55, 0.58, 0.66], [0.50, 0.52, 0.41]
    d = welch_difference(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (d['n_a'], d['n_b']) == (4, 3)
    assert d['mean'] == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert (d['ci_low'], d['ci_high']) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # one value on a side: a difference, no interval; an empty side: nothing
    one = welch_difference([0.3], b)
    assert one['mean'] == pytest.approx(0.3 - sum(b) / 3) and one['ci_low'] is None
    assert welch_difference([], b)['mean'] is None


def test_augmentation_effects_compare_arms_and_the_gap_to_the_baseline():
    per_seed = {('a', 'baseline'): {0: {'m': 0.4}, 1: {'m': 0.5}},
                ('a', 'dcnv2'): {0: {'m': 0.5}, 1: {'m': 0.7}},
                ('b', 'baseline'): {0: {'m': 0.6}, 1: {'m': 0.6}},
                ('b', 'dcnv2'): {0: {'m': 0.6}, 1: {'m': 0.65}},
                ('a', 'dcnv1'): {0: {'m': 0.5}}}
    out = {e['variant']: e for e in augmentation_effects(per_seed, ('baseline', 'dcnv1', 'dcnv2'))}
    assert set(out) == {'baseline', 'dcnv2'}          # dcnv1 has no arm (b) run
    base = out['baseline']
    assert 'gap_change' not in base and base['measure'] == 'm'
    # 0.6 - 0.45; arm (b) has no spread, so the df is arm (a)'s: 1, t = 12.7062, se 0.05
    assert base['b_minus_a']['mean'] == pytest.approx(0.15)
    assert base['b_minus_a']['df'] == pytest.approx(1.0)
    assert base['b_minus_a']['ci_high'] == pytest.approx(0.15 + 12.7062 * 0.05, abs=1e-4)
    # gaps to the baseline: arm (a) 0.1, 0.2; arm (b) 0.0, 0.05: the augmentation closes
    # 0.125 of the lead
    assert out['dcnv2']['gap_change']['mean'] == pytest.approx(-0.125)
    assert out['dcnv2']['b_minus_a']['mean'] == pytest.approx(0.025)
