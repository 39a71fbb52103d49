"""Exact values and boundaries of the intervals the checks rest on (job/intervals.py).

Written against the mutants `make mutants` found surviving (docs/mutants.md): each test pins a
value, a boundary or an error that a one-token change of intervals.py would move.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from shadow_operator.job import intervals as iv


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_z_value_refuses_levels_outside_the_open_unit_interval(confidence):
    with pytest.raises(ValueError, match=f"strictly between 0 and 1, not {confidence}"):
        iv.z_value(confidence)


def test_z_value_is_the_two_sided_normal_quantile():
    assert iv.z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert iv.z_value(0.99) == pytest.approx(2.575829, abs=1e-6)


# --- exact references: binomial sums in rational arithmetic ---


def _at_least(k: int, n: int, p: Fraction) -> Fraction:
    """P(X >= k) for X ~ Binomial(n, p), exactly."""
    return sum((math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(max(k, 0), n + 1)), Fraction(0))


# (k, n, p): I_p(k, n - k + 1) = P(Binomial(n, p) >= k); both branches of the continued fraction
BINOMIAL_CASES = [(1, 1, 0.3), (3, 10, 0.1), (3, 10, 0.5), (8, 10, 0.5), (5, 20, 0.05), (15, 20, 0.9), (40, 50, 0.7)]


@pytest.mark.parametrize(("k", "n", "p"), BINOMIAL_CASES)
def test_the_regularized_beta_function_is_the_binomial_tail(k, n, p):
    exact = float(_at_least(k, n, Fraction(p)))
    assert iv.regularized_beta(k, n - k + 1, p) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert iv.binomial_at_least(k, n, p) == pytest.approx(exact, rel=1e-12, abs=1e-15)
    assert iv.binomial_at_most(k - 1, n, p) == pytest.approx(1 - exact, rel=1e-12, abs=1e-15)


def test_the_regularized_beta_function_at_the_ends_of_the_unit_interval():
    assert iv.regularized_beta(2.0, 3.0, 0.0) == 0.0
    assert iv.regularized_beta(2.0, 3.0, -0.1) == 0.0
    assert iv.regularized_beta(2.0, 3.0, 1.0) == 1.0
    assert iv.regularized_beta(2.0, 3.0, 1.5) == 1.0
    # I_x(1, 1) = x, I_x(1, b) = 1 - (1 - x)^b, I_x(a, 1) = x^a: on either side of the branch point
    assert iv.regularized_beta(1.0, 1.0, 0.25) == pytest.approx(0.25, rel=1e-13)
    assert iv.regularized_beta(1.0, 4.0, 0.1) == pytest.approx(1 - 0.9**4, rel=1e-13)
    assert iv.regularized_beta(3.0, 1.0, 0.9) == pytest.approx(0.9**3, rel=1e-13)
    assert iv.regularized_beta(0.5, 0.5, 0.5) == pytest.approx(0.5, rel=1e-12)


def test_binomial_tails_beyond_the_support():
    assert iv.binomial_at_least(0, 10, 0.5) == 1.0
    assert iv.binomial_at_least(-3, 10, 0.5) == 1.0
    assert iv.binomial_at_least(11, 10, 0.5) == 0.0
    assert iv.binomial_at_least(10, 10, 0.5) == pytest.approx(0.5**10, rel=1e-12)
    assert iv.binomial_at_most(10, 10, 0.5) == 1.0
    assert iv.binomial_at_most(-1, 10, 0.5) == 0.0


def _exact_ranks(n: int, p: float, confidence: float) -> tuple[int, int]:
    """The ranks of exact_quantile_ranks by brute force (see its docstring), in rational arithmetic."""
    half = (1 - confidence) / 2
    q = Fraction(str(p))
    pmf = [math.comb(n, j) * q**j * (1 - q) ** (n - j) for j in range(n + 1)]
    below = [sum(pmf[:k], Fraction(0)) for k in range(n + 2)]  # below[k] = P(B <= k - 1) = P(B < k)
    r = max(k for k in range(n + 2) if float(below[k]) <= half)
    s = min(k for k in range(n + 2) if float(1 - below[k]) <= half)  # P(B >= k)
    return r, s


@pytest.mark.parametrize(
    ("n", "p", "confidence"),
    [(1, 0.5, 0.95), (5, 0.5, 0.95), (20, 0.5, 0.95), (100, 0.95, 0.99), (100, 0.99, 0.95), (150, 0.5, 0.999),
     (57, 0.95, 0.9), (200, 0.99, 0.9999), (1, 0.99, 0.95), (3, 0.995, 0.95), (2, 0.01, 0.95)],
)  # fmt: skip
def test_exact_quantile_ranks_are_the_binomial_ones(n, p, confidence):
    assert iv.exact_quantile_ranks(n, p, confidence) == _exact_ranks(n, p, confidence)


def test_exact_quantile_ranks_of_known_cases():
    # one sample lies below the p99 with probability 0.99: it bounds the p99 from below, nothing from above
    assert iv.exact_quantile_ranks(1, 0.99, 0.95) == (1, 2)
    # the median of 20 at 95%: X(6) to X(15) (the textbook sign-test interval)
    assert iv.exact_quantile_ranks(20, 0.5, 0.95) == (6, 15)
    # five samples cannot bound a median at 95%: no lower (r < 1), no upper (s > n)
    assert iv.exact_quantile_ranks(5, 0.5, 0.95) == (0, 6)


@pytest.mark.parametrize(
    ("successes", "n", "limit", "above", "beyond"),
    [
        (10, 10, 1.0, True, False),  # nothing lies above a rate of 1
        (10, 10, 0.99999, True, False),
        (10, 10, 0.5, True, True),  # P(X >= 10 | 0.5) = 0.001
        (6, 10, 0.5, True, False),
        (0, 10, 0.0, False, False),  # nothing lies below a rate of 0
        (0, 10, 0.5, False, True),
        (4, 10, 0.5, False, False),
        (0, 100, 0.0362, False, False),  # P(X <= 0 | 0.0362) = 0.9638^100 = 0.02505: not beyond at 95%
        (0, 100, 0.0363, False, True),  # 0.02479 <= 0.025
    ],
)
def test_exact_rate_beyond_is_the_one_sided_binomial_test(successes, n, limit, above, beyond):
    assert iv.exact_rate_beyond(successes, n, limit, 0.95, above) is beyond


def test_a_tail_of_exactly_half_the_miss_rate_is_beyond():
    # at 50%, alpha/2 = 0.25: P(X >= 1 | n=1, 0.25) = 0.25 and P(X <= 0 | n=2, 0.5) = 0.25, both exactly
    assert iv.exact_rate_beyond(1, 1, 0.25, 0.5, above=True) is True
    assert iv.exact_rate_beyond(0, 2, 0.5, 0.5, above=False) is True
    assert iv.exact_rate_beyond(1, 1, 0.2500001, 0.5, above=True) is False


# --- Wilson and Newcombe: the edges ---


def test_wilson_interval_refuses_counts_outside_zero_to_n():
    with pytest.raises(ValueError, match=r"successes must lie between 0 and n=10, not -1"):
        iv.wilson_interval(-1, 10, 0.95)
    with pytest.raises(ValueError, match=r"successes must lie between 0 and n=10, not 11"):
        iv.wilson_interval(11, 10, 0.95)
    assert iv.wilson_interval(0, -1, 0.95) == (0.0, 1.0)


def test_wilson_interval_ends_exactly_at_zero_and_one_for_none_and_all():
    low, high = iv.wilson_interval(0, 10, 0.95)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = iv.wilson_interval(10, 10, 0.95)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1.0
    # the score formula gives 1 - 2^-53 here; all successes end exactly at 1
    assert iv.wilson_interval(6, 6, 0.9)[1] == 1.0
    # one of two at 95%: Wilson's (0.0945, 0.9055), symmetric about 1/2
    low, high = iv.wilson_interval(1, 2, 0.95)
    assert (low, high) == (pytest.approx(0.09453, abs=1e-5), pytest.approx(0.90547, abs=1e-5))


@pytest.mark.parametrize(("n1", "n2"), [(0, 10), (10, 0), (-1, 10), (0, 0)])
def test_difference_interval_is_everything_when_either_side_has_no_samples(n1, n2):
    assert iv.difference_interval(0, n1, 0, n2, 0.95) == (-1.0, 1.0)


def test_difference_interval_reaches_the_ends_of_minus_one_to_one():
    # p1 = 1, p2 = 0: d = -1, and the other end -1 + sqrt(2) * 0.27753 (Wilson's width at 0 of 10)
    low, high = iv.difference_interval(10, 10, 0, 10, 0.95)
    assert low == pytest.approx(-1.0, abs=1e-12) and high == pytest.approx(-0.60751, abs=1e-5)
    low, high = iv.difference_interval(0, 10, 10, 10, 0.95)
    assert low == pytest.approx(0.60751, abs=1e-5) and high == pytest.approx(1.0, abs=1e-12)


# --- order statistics, ratios, Bonferroni, recorded levels ---


def test_quantile_ranks_by_the_normal_approximation():
    # n = 100, p = 0.5, z = 1.96: 50 -/+ 9.8 -> floor 40.2 = 40, ceil 59.8 = 60, plus one
    assert iv.quantile_ranks(100, 0.5, 0.95) == (40, 61)
    # n = 1000, p = 0.99: 990 -/+ 1.96 * 3.146 = 6.17 -> 983, 997 + 1
    assert iv.quantile_ranks(1000, 0.99, 0.95) == (983, 998)


def test_ratio_interval_divides_the_opposite_ends():
    assert iv.ratio_interval(90.0, 120.0, 80.0, 100.0) == (0.9, 1.5)
    assert iv.ratio_interval(0.4, 0.9, 0.5, 0.8) == (0.5, 1.8)  # sub-millisecond bounds divide as well


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ((90.0, 120.0, 0.0, 100.0), (0.9, math.inf)),  # no positive lower bound of the primary: no upper end
        ((90.0, 120.0, -1.0, 100.0), (0.9, math.inf)),
        ((90.0, iv.UNBOUNDED_MS, 80.0, 100.0), (0.9, math.inf)),  # the candidate unbounded above
        ((90.0, 120.0, 80.0, iv.UNBOUNDED_MS), (0.0, 1.5)),  # the primary unbounded above: no lower end
        ((90.0, 120.0, 80.0, 0.0), (0.0, 1.5)),
        ((-5.0, 120.0, 80.0, 100.0), (0.0, 1.5)),  # never below 0
    ],
)
def test_ratio_interval_opens_an_end_it_cannot_bound(bounds, expected):
    assert iv.ratio_interval(*bounds) == expected


def test_ratio_interval_just_inside_the_sentinel_is_still_bounded():
    low, high = iv.ratio_interval(90.0, 1e307, 80.0, 1e307)
    assert low == 90.0 / 1e307 and high == 1e307 / 80.0


def test_per_check_confidence_is_bonferroni():
    assert iv.per_check_confidence(0.95, 1) == pytest.approx(0.95)
    assert iv.per_check_confidence(0.95, 10) == pytest.approx(0.995)
    assert iv.per_check_confidence(0.95, 0) == pytest.approx(0.95)  # no checks: as one
    assert iv.per_check_confidence(0.99, 2) == pytest.approx(0.995)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.2])
def test_per_check_confidence_refuses_levels_outside_the_open_unit_interval(confidence):
    with pytest.raises(ValueError, match=f"strictly between 0 and 1, not {confidence}"):
        iv.per_check_confidence(confidence, 3)


def test_latency_level_is_the_smallest_recorded_level_at_or_above():
    assert iv.latency_level(0.95) == 0.95
    assert iv.latency_level(0.9500000000001) == 0.95  # within the 1e-12 of rounding
    assert iv.latency_level(0.951) == 0.99
    assert iv.latency_level(0.5) == 0.95
    assert iv.latency_level(1 - (1 - 0.99) / 2) == 0.995  # 0.995 computed, a hair off
    assert iv.latency_level(0.9999999) == 0.9999999
    assert iv.latency_level(0.99999995) is None


def test_histogram_quantile_bounds_read_the_buckets_holding_the_ranks():
    # 100 requests, 10 in each of ten 10 ms buckets: the median's ranks 40 and 61 (quantile_ranks)
    buckets = [(10.0 * (i + 1), 10) for i in range(10)]
    assert iv.histogram_quantile_bounds(buckets, 0.5, 0.95) == (30.0, 70.0)
    # a rank on a bucket's last request stays in that bucket (r = 40 in the first, s = 61 in the second)
    assert iv.histogram_quantile_bounds([(10.0, 40), (20.0, 20), (30.0, 40)], 0.5, 0.95) == (0.0, 30.0)
    assert iv.histogram_quantile_bounds([(10.0, 30), (20.0, 31), (30.0, 39)], 0.5, 0.95) == (10.0, 20.0)
    # one request bounds nothing
    assert iv.histogram_quantile_bounds([(10.0, 1)], 0.5, 0.95) == (0.0, iv.UNBOUNDED_MS)
    # empty buckets in between are skipped; past the last finite bound there is no upper bound
    assert iv.histogram_quantile_bounds([(10.0, 0), (20.0, 100), (30.0, 0)], 0.5, 0.95) == (10.0, 20.0)
    assert iv.histogram_quantile_bounds([(10.0, 95), (20.0, 5)], 0.99, 0.95) == (10.0, iv.UNBOUNDED_MS)
    assert iv.histogram_quantile_bounds([(10.0, 0), (20.0, 0)], 0.5, 0.95) is None
    assert iv.histogram_quantile_bounds([], 0.5, 0.95) is None


def test_exact_ranks_at_a_tail_of_exactly_half_the_miss_rate():
    # at 50% (alpha/2 = 0.25): P(B <= 0 | n=2, 0.5) = 0.25 gives X(1) as the lower bound of the median;
    # P(B >= 1 | n=1, 0.25) = 0.25 gives X(1) as the upper bound of the p25
    assert iv.exact_quantile_ranks(2, 0.5, 0.5)[0] == 1
    assert iv.exact_quantile_ranks(1, 0.25, 0.5)[1] == 1


def test_a_level_within_the_rounding_slack_of_a_recorded_one_is_that_one():
    assert iv.latency_level(0.95 + 1e-12) == 0.95
