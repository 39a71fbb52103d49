"""A mergeable quantile sketch with a stated relative error, and conservative quantile bounds from it.

The sketch is DDSketch's log-bucket histogram (Masson, Rim, Lee, VLDB 2019) on a fixed grid:
a value v > MIN_VALUE falls in bucket k = ceil(log(v) / log(GAMMA)), which holds (GAMMA^(k-1),
GAMMA^k]; values in [0, MIN_VALUE] (an exact 0 of `abs_diff`, say) share the ZERO bucket, and a
value that is not finite the TOP one. GAMMA = (1 + ALPHA) / (1 - ALPHA): every value in a bucket
is within relative error ALPHA of the bucket's representative 2 GAMMA^k / (GAMMA + 1).

Why this sketch: the grid is fixed, so merging two sketches adds their bucket counts and
loses nothing. Folding records in any number of increments gives exactly the sketch of
folding them at once; the counts, and so every rank, are exact. Only values are rounded,
to their bucket, so:

* a quantile estimate (quantile_cont's interpolation, between the two buckets holding the
  ranks it interpolates) is within relative error ALPHA of the exact one;
* a distribution-free bound from order statistics (intervals.exact_quantile_ranks: X(r) <=
  q_p <= X(s)) is taken at the edge of the bucket holding that rank, the lower edge for X(r)
  and the upper edge for X(s): the interval contains the exact order-statistic interval
  (so its coverage is at least as high), and is at most a factor GAMMA wider on each side.

Bucket keys come from SQL (stats in DuckDB, aggregates.py), and only edges and
representatives are computed here; the edges are widened by EDGE_SLACK so that a value
that floating point put on the other side of a bucket boundary is still inside.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

from .intervals import LATENCY_LEVELS, UNBOUNDED_MS, binomial_at_least, binomial_at_most

ALPHA = 0.005  # relative error of a value's bucket representative: 0.5%
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-6  # ms: values at or below it share the ZERO bucket, [0, MIN_VALUE]
ZERO = -(2**31)  # key of [0, MIN_VALUE]
TOP = 2**31 - 1  # key of values that are not finite (inf, NaN): no upper edge
EDGE_SLACK = 1e-9  # relative widening of bucket edges against floating-point rounding of keys
# Bounds wider than the exact order statistics by at most this factor per side (one bucket).
WIDENING = GAMMA * (1 + EDGE_SLACK)


def key_sql(value: str) -> str:
    """SQL: the bucket key of a non-null DOUBLE column (ZERO at or below MIN_VALUE, TOP when not finite)."""
    return (
        f"CASE WHEN NOT isfinite({value}) THEN {TOP} WHEN {value} <= {MIN_VALUE!r} THEN {ZERO} "
        f"ELSE CAST(ceil(ln({value}) / {LOG_GAMMA!r}) AS INTEGER) END"
    )


def lower_edge(key: int) -> float:
    if key == ZERO:
        return 0.0
    if key == TOP:
        return UNBOUNDED_MS
    return max(0.0, math.exp((key - 1) * LOG_GAMMA) * (1 - EDGE_SLACK))


def upper_edge(key: int) -> float:
    if key == ZERO:
        return MIN_VALUE * (1 + EDGE_SLACK)
    if key == TOP:
        return UNBOUNDED_MS
    return min(UNBOUNDED_MS, math.exp(key * LOG_GAMMA) * (1 + EDGE_SLACK))


def representative(key: int) -> float:
    """The value reported for a bucket: within relative error ALPHA of every value in it (ZERO: 0)."""
    if key == ZERO:
        return 0.0
    if key == TOP:
        return UNBOUNDED_MS
    return min(UNBOUNDED_MS, 2 * math.exp(key * LOG_GAMMA) / (GAMMA + 1))


class Sketch:
    """Counts per bucket key; merging adds counts (exact, associative, commutative)."""

    __slots__ = ("_json", "counts")

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = counts if counts is not None else {}
        self._json: list[list[int]] | None = None  # the serialised form while unchanged since read

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def add(self, keys: Iterable[int], counts: Iterable[int]) -> None:
        self._json = None
        mine = self.counts
        for key, count in zip(keys, counts, strict=True):
            mine[key] = mine.get(key, 0) + count

    def merge(self, other: Sketch) -> None:
        self.add(other.counts.keys(), other.counts.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and {k: v for k, v in self.counts.items() if v} == {
            k: v for k, v in other.counts.items() if v
        }

    # --- (de)serialisation: sorted keys, delta-encoded, and their counts ---

    def to_json(self) -> list[list[int]]:
        if self._json is not None:  # most hour-of-day slices get nothing from an increment
            return self._json
        keys = sorted(k for k, v in self.counts.items() if v)
        deltas = [b - a for a, b in zip([0, *keys], keys, strict=False)]
        return [deltas, [self.counts[k] for k in keys]]

    @classmethod
    def from_json(cls, data: list[list[int]]) -> Sketch:
        deltas, counts = data
        built = cls(dict(zip(itertools.accumulate(deltas), counts, strict=True)))
        built._json = data
        return built

    # --- reading ---

    def _cumulative(self) -> tuple[list[int], list[int]]:
        """Sorted keys and the count of values up to and including each."""
        keys = sorted(k for k, v in self.counts.items() if v)
        cumulative, total = [], 0
        for key in keys:
            total += self.counts[key]
            cumulative.append(total)
        return keys, cumulative

    def quantiles(self, ps: Iterable[float]) -> list[float] | None:
        """quantile_cont's estimates: interpolated between the representatives of the buckets holding
        ranks floor(h) and ceil(h), h = (n - 1) p (0-based); None when empty."""
        keys, cumulative = self._cumulative()
        if not keys:
            return None
        n = cumulative[-1]

        def value(rank0: int) -> float:  # the representative of the bucket holding 0-based rank rank0
            return representative(keys[_first_at_least(cumulative, rank0 + 1)])

        result = []
        for p in ps:
            h = (n - 1) * p
            low, high = math.floor(h), math.ceil(h)
            a, b = value(low), value(high)
            result.append(a if low == high or a == b else a + (h - low) * (b - a))
        return result

    def bounds(
        self, ps: tuple[float, ...], levels: tuple[float, ...] = LATENCY_LEVELS
    ) -> list[tuple[float, list[float], list[float]]]:
        """Per level: (level, low per p, high per p), each containing the exact order-statistic bounds.

        intervals.exact_quantile_ranks' r is the largest rank with P(B <= r-1) <= h and s the
        smallest with P(B >= s) <= h (B ~ Binomial(n, p), h = (1 - level)/2). Which bucket holds
        each is decided from the bucket boundaries alone, the binomial evaluated only at the
        cumulative counts (memoised, a handful per quantile): rank r lies in the first bucket
        whose cumulative count c has P(B <= c) > h, rank s in the first whose c has P(B >= c) <= h.
        r < 1 means no lower bound (0); s > n no upper bound (UNBOUNDED_MS).
        """
        keys, cumulative = self._cumulative()
        if not keys:
            return []
        n = cumulative[-1]
        lows: dict[tuple[int, int], float] = {}
        highs: dict[tuple[int, int], float] = {}
        for j, p in enumerate(ps):
            at_most = _Memo(lambda k, p=p: binomial_at_most(k, n, p))
            at_least = _Memo(lambda k, p=p: binomial_at_least(k, n, p))
            # Levels ascend, so each bound moves outward from the last: search from there (and first
            # from the bucket of rank n*p), evaluating the binomial at a few boundaries only.
            centre = _first_at_least(cumulative, max(1, math.ceil(n * p)))
            low_hint = high_hint = centre
            for i, level in enumerate(levels):
                h = (1 - level) / 2
                if at_most(0) > h:  # r = 0
                    lows[(i, j)] = 0.0
                else:
                    low_hint = _first_from(len(keys), lambda b, h=h, f=at_most: f(cumulative[b]) > h, low_hint)
                    lows[(i, j)] = lower_edge(keys[low_hint])
                if at_least(n) > h:  # s = n + 1
                    highs[(i, j)] = UNBOUNDED_MS
                else:
                    high_hint = _first_from(len(keys), lambda b, h=h, f=at_least: f(cumulative[b]) <= h, high_hint)
                    highs[(i, j)] = upper_edge(keys[high_hint])
        return [
            (level, [lows[(i, j)] for j in range(len(ps))], [highs[(i, j)] for j in range(len(ps))])
            for i, level in enumerate(levels)
        ]


class _Memo:
    def __init__(self, function) -> None:
        self.function, self.values = function, {}

    def __call__(self, k: int) -> float:
        if k not in self.values:
            self.values[k] = self.function(k)
        return self.values[k]


def _first_from(size: int, predicate, hint: int) -> int:
    """The smallest index in [0, size) where the monotone `predicate` (false, then true) holds, searched
    outward from `hint` (galloping, then bisection); size - 1 when it holds nowhere before the last."""
    hint = min(max(hint, 0), size - 1)
    if predicate(hint):
        hi, step = hint, 1  # hi: known true; lo: known false, or -1
        lo = hint - step
        while lo >= 0 and predicate(lo):
            hi, step = lo, step * 2
            lo = hint - step
        lo = max(lo, -1)
    else:
        lo, step = hint, 1
        hi = hint + step
        while hi < size - 1 and not predicate(hi):
            lo, step = hi, step * 2
            hi = hint + step
        hi = min(hi, size - 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _first_at_least(cumulative: list[int], rank: int) -> int:
    """Index of the first bucket whose cumulative count reaches `rank` (1-based)."""
    lo, hi = 0, len(cumulative) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] >= rank:
            hi = mid
        else:
            lo = mid + 1
    return lo
