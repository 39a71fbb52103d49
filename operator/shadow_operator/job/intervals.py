"""Confidence intervals the checks rest on, and the per-check level a whole verdict needs.

Pure arithmetic, no I/O: Wilson score intervals of a proportion, Newcombe's interval of a
difference of two proportions, distribution-free bounds of a quantile from order statistics
(the ranks SQL looks up, see stats.py), the interval of a ratio of two bounded quantities,
and the Bonferroni adjustment that keeps the false-Failed rate of a whole verdict (every
check on every slice) at or below 1 - confidence.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# The confidence levels at which the comparison job records latency-quantile bounds (stats.py).
# A check needing level L uses the smallest recorded level >= L: a wider, still valid interval.
# Half-decades of alpha from 5% down to 1e-7 cover Bonferroni over up to ~10^5 checks at 99%.
LATENCY_LEVELS = (
    0.95,
    0.99,
    0.995,
    0.999,
    0.9995,
    0.9999,
    0.99995,
    0.99999,
    0.999995,
    0.999999,
    0.9999999,
)
UNBOUNDED_MS = 1e308  # an upper bound beyond the last sample: no bound (JSON cannot carry inf)


def z_value(confidence: float) -> float:
    """The two-sided standard normal quantile for a confidence level, e.g. 0.95 -> 1.95996."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of the proportion successes/n; (0, 1) when there is nothing to go on."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie between 0 and n={n}, not {successes}")
    z = z_value(confidence)
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def difference_interval(x1: int, n1: int, x2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Interval of p2 - p1 (p1 = x1/n1, p2 = x2/n2) by Newcombe's hybrid score method (1998, method 10).

    Built on the two Wilson intervals; (-1, 1) when either side has no samples.
    """
    if n1 <= 0 or n2 <= 0:
        return -1.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return max(-1.0, low), min(1.0, high)


def quantile_ranks(n: int, p: float, confidence: float) -> tuple[int, int]:
    """1-based ranks (r, s) of the order statistics X(r) <= X(s) bounding the p-quantile with `confidence`.

    The count of samples below the true quantile is Binomial(n, p); by its normal approximation
    r = floor(np - z*sqrt(np(1-p))) and s = ceil(np + z*sqrt(np(1-p))) + 1 (the +1: X(s) lies above
    the quantile when at most s-1 samples do). r < 1 means no lower bound, s > n no upper bound.
    The same formula is written in SQL in stats.py; this one is its reference.
    """
    z = z_value(confidence)
    centre, spread = n * p, z * math.sqrt(n * p * (1 - p))
    return math.floor(centre - spread), math.ceil(centre + spread) + 1


def ratio_interval(c_low: float, c_high: float, p_low: float, p_high: float) -> tuple[float, float]:
    """Interval of candidate/primary from the two quantities' intervals: [c_low/p_high, c_high/p_low].

    Both intervals holding (each at level 1 - a/2) the ratio lies within this one (level 1 - a).
    An unbounded or non-positive end gives 0 or infinity.
    """
    low = c_low / p_high if 0 < p_high < UNBOUNDED_MS else 0.0
    high = c_high / p_low if p_low > 0 and c_high < UNBOUNDED_MS else math.inf
    return max(0.0, low), high


def per_check_confidence(confidence: float, checks: int) -> float:
    """Bonferroni: the level each of `checks` intervals needs so that all hold at once with `confidence`.

    P(any of m intervals misses) <= m * (1 - level) = 1 - confidence, whatever their dependence.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    return 1 - (1 - confidence) / max(1, checks)


def latency_level(required: float) -> float | None:
    """The smallest recorded latency-bound level at or above `required`; None when none is that high."""
    return next((level for level in LATENCY_LEVELS if level >= required - 1e-12), None)


def histogram_quantile_bounds(
    buckets: list[tuple[float, int]], p: float, confidence: float
) -> tuple[float, float] | None:
    """Bounds of the p-quantile from a latency histogram [(upper bound, count)], ascending and not cumulative.

    The order statistics of quantile_ranks lie in the buckets holding those ranks: the lower
    bound is the lower edge of rank r's bucket, the upper the upper edge of rank s's bucket
    (UNBOUNDED_MS past the last finite bound). Coarser than the samples' own order statistics,
    as valid; None without samples.
    """
    n = sum(count for _, count in buckets)
    if n <= 0:
        return None
    r, s = quantile_ranks(n, p, confidence)
    low, high = 0.0, UNBOUNDED_MS
    seen, lower_edge = 0, 0.0
    for bound, count in buckets:
        if count and seen < r <= seen + count:
            low = lower_edge
        if count and seen < s <= seen + count:
            high = bound
        seen += count
        lower_edge = bound
    return low, high


# --- exact binomial bounds: where normal approximations undercover (thin slices, extreme rates) ---


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes' betacf)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (a, b > 0, 0 <= x <= 1)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def binomial_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return regularized_beta(k, n - k + 1, p)


def binomial_at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return 1.0 - binomial_at_least(k + 1, n, p)


def exact_quantile_ranks(n: int, p: float, confidence: float) -> tuple[int, int]:
    """Like quantile_ranks, from the binomial distribution itself rather than its normal approximation.

    r: the largest rank with P(B < r) <= alpha/2 (X(r) above the true quantile needs B < r);
    s: the smallest rank with P(B >= s) <= alpha/2 (X(s) below it needs B >= s); B ~ Binomial(n, p)
    counts the samples below the quantile. r < 1: no lower bound; s > n: no upper bound.
    """
    half = (1 - confidence) / 2
    lo, hi = 0, n + 1  # P(B < 0) = 0 <= half; find the largest r in [0, n+1] with P(B <= r-1) <= half
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if binomial_at_most(mid - 1, n, p) <= half:
            lo = mid
        else:
            hi = mid - 1
    r = lo
    lo, hi = 0, n + 1  # smallest s in [0, n+1] with P(B >= s) <= half (P(B >= n+1) = 0)
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_at_least(mid, n, p) <= half:
            hi = mid
        else:
            lo = mid + 1
    return r, lo


def exact_rate_beyond(successes: int, n: int, limit: float, confidence: float, above: bool) -> bool:
    """Whether the exact (Clopper-Pearson) one-sided bound at `confidence` lies beyond `limit`.

    above=True: the rate is above `limit` (lower bound > limit), i.e. P(X >= successes | limit) <= alpha/2;
    above=False: below it (upper bound < limit), i.e. P(X <= successes | limit) <= alpha/2.
    """
    half = (1 - confidence) / 2
    if above:
        return limit < 1 and binomial_at_least(successes, n, limit) <= half
    return limit > 0 and binomial_at_most(successes, n, limit) <= half
