"""`make bench-verdict`: how often the verdict fails an equivalent candidate, and how often it catches a real fault.

Runs the real pipeline (dataset.load -> stats.compute_slices -> verdict.decide) on generated
record files (tests/unit/traffic_world.py):

  false Failed  `--equivalent` runs (default 60) of random specs (segments by bounds and by
                values, a segment on a recorded feature's path, classification or
                regression, all or some hours of day, confidence 0.9-0.99, error rates up to
                the limit) where the candidate answers exactly as the primary does and its
                latency is drawn from the same distribution. Target: 0 Failed. Then
                `--passable` runs (default 10) of the default thresholds over 30000 pairs
                (two segment dimensions, 24 hours: ~700 checks): how many Pass.
  power         the share of `--runs` runs (default 20) Failed, per fault injected into one
                segment bucket (history=<1, about 25% of requests) and per total size:
                an error-rate rise (0.5% -> 10.5%; limits 5% and +2%), a latency ratio (candidate x1.5 against
                a p50 limit of 1.2x) and a disagreement (10% against minAgreement 95%),
                with the full default thresholds and 24 hour windows (about 230 checks, so
                Bonferroni judges each at about 99.98%); and the smallest size reaching 95%.

Prints one table (benchmarks/table.py); there is no outside reference, so the reference column is empty.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

from tests.unit.traffic_world import (
    COUNTRY_PATH,
    HISTORY_PATH,
    OTHER_FEATURE,
    Fault,
    World,
    default_thresholds,
    judge,
    records,
)

from benchmarks import table

SIZES = (1000, 2000, 4000, 8000, 16000)
FAULTS = {
    "error rate 0.5% -> 10.5%": Fault("errors", "history", "<1", 0.10),
    "latency x1.5 (limit 1.2x)": Fault("latency", "history", "<1", 1.5),
    "disagreement 10% (min 95%)": Fault("disagree", "history", "<1", 0.10),
}


def random_world(rng: random.Random) -> World:
    regression = rng.random() < 0.5
    max_error_rate = rng.choice([0.01, 0.05, 0.2])
    thresholds: dict = {
        "max_error_rate": max_error_rate,
        "max_error_rate_increase": min(max_error_rate, rng.choice([0.002, 0.01])),
        "latency_ratio": {p: round(rng.uniform(1.0, 2.0), 2) for p in ("p50", "p95", "p99")},
        "max_feature_missing_rate": rng.choice([0.001, 0.01, 0.1]),
    }
    if regression:
        thresholds["max_abs_diff"] = {"mean": 0.05, "p95": 0.1}
    else:
        thresholds["min_agreement"] = rng.choice([0.5, 0.95, 0.999])
    min_samples = rng.choice([50, 200, 1000])
    return World(
        regression=regression,
        segments=rng.choice([("history",), ("country",), ("history", "country")]),
        features=rng.choice([(HISTORY_PATH,), (HISTORY_PATH, OTHER_FEATURE), (COUNTRY_PATH, HISTORY_PATH)]),
        hours=rng.choice([tuple(range(24)), (3,), (1, 2, 3, 4), (0, 6, 12, 18)]),
        error_rate=rng.choice([0.0, max_error_rate / 2, max_error_rate]),
        feature_missing=rng.choice([0.0, 0.02, 0.5]),
        latency_sigma=rng.choice([0.1, 0.5, 1.5]),
        thresholds=thresholds,
        min_samples=min_samples,
        min_samples_per_segment=rng.choice([10, 50]),
        confidence=rng.choice([0.9, 0.95, 0.99]),
    )


def equivalent_runs(runs: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    results = {"Passed": 0, "Inconclusive": 0, "Failed": 0}
    for i in range(runs):
        world = random_world(rng)
        verdict = judge(world, records(world, rng.randint(200, 6000), seed * 1000 + i))
        results[verdict.result] += 1
        if verdict.result == "Failed":
            print(f"  FALSE FAILED (run {i}): {verdict.message[:300]}", file=sys.stderr)
    return results


def passable_runs(runs: int, seed: int, size: int = 30000) -> dict[str, int]:
    world = World(thresholds=default_thresholds(False), error_rate=0.005)
    results = {"Passed": 0, "Inconclusive": 0, "Failed": 0}
    for i in range(runs):
        results[judge(world, records(world, size, seed * 7919 + i)).result] += 1
    return results


def power(fault: Fault, size: int, runs: int, seed: int) -> tuple[float, float]:
    """(share of runs Failed, share of Failed runs whose headline names the faulty segment)."""
    world = World(thresholds=default_thresholds(False), error_rate=0.005)
    failed = named = 0
    for i in range(runs):
        verdict = judge(world, records(world, size, seed * 100_000 + size + i, fault))
        if verdict.result == "Failed":
            failed += 1
            named += f" failed on segment {fault.segment}={fault.bucket}" in verdict.message
    return failed / runs, (named / failed if failed else math.nan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--equivalent", type=int, default=60, help="equivalent runs (default 60)")
    parser.add_argument("--passable", type=int, default=10, help="equivalent runs at 30000 pairs (default 10)")
    parser.add_argument("--runs", type=int, default=20, help="runs per fault and size (default 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="total pairs per run")
    parser.add_argument("--seed", type=int, default=1)
    table.add_arguments(parser)
    args = parser.parse_args()

    start = time.monotonic()
    t = table.Table("Verdict: equivalent candidates are never Failed; faults are caught", reference="reference")
    t.section("equivalent candidate (answers as the primary, latency from the same distribution)")
    results = equivalent_runs(args.equivalent, args.seed)
    t.row(
        f"false Failed, {args.equivalent} random specs and traffic",
        results["Failed"],
        target="= 0",
        note=f"{results['Failed'] / args.equivalent:.1%}; Passed {results['Passed']}, Inconclusive {results['Inconclusive']}",
    )
    easy = passable_runs(args.passable, args.seed)
    t.row(
        f"false Failed, default thresholds, 30000 pairs, {args.passable} runs",
        easy["Failed"],
        target="= 0",
        note=f"Passed {easy['Passed']}, Inconclusive {easy['Inconclusive']}",
    )
    t.section(f"detection power: share of {args.runs} runs Failed, fault in history=<1 (~25% of pairs)")
    for name, fault in FAULTS.items():
        shares = []
        for size in args.sizes:
            share, named_share = power(fault, size, args.runs, args.seed)
            shares.append(share)
            named = "-" if math.isnan(named_share) else f"{named_share:.0%}"
            t.row(f"{name}, {size:,} pairs", share * 100, "%", digits=0, note=f"headline names history=<1: {named}")
        reached = next((size for size, share in zip(args.sizes, shares, strict=True) if share >= 0.95), None)
        t.row(f"{name}: 95% power at", reached if reached else f"> {args.sizes[-1]:,}", "pairs")
    t.note(f"{time.monotonic() - start:.0f} s")
    t.print()
    return 1 if results["Failed"] or easy["Failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
