"""Generated specs and traffic for the verdict's property tests and `make bench-verdict`.

A World is a spec (segments by bounds and by values, recorded features including a
segment's own path, thresholds, classification or regression) and the traffic it sees.
`records` draws pair records where the candidate answers exactly as the primary does (same
outcome, same prediction; latency drawn independently from the same distribution), unless a
Fault is injected into one segment bucket. `judge` runs the real pipeline on them:
dataset.load -> stats.compute_slices -> verdict.decide.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shadow_operator.api.v1alpha1 import AnalysisSpec, Verdict
from shadow_operator.contract.report import ReportCoverage
from shadow_operator.job.dataset import load
from shadow_operator.job.stats import compute_slices
from shadow_operator.job.verdict import decide

from .records_factory import MIDNIGHT, NOW, SHADOW, pair, side, write

HISTORY_PATH = "$.features.purchase_count"  # segment `history`, bounds [1, 200], and a recorded feature
COUNTRY_PATH = "$.features.country"  # segment `country`, values [us, de]
OTHER_FEATURE = "$.features.last_seen_days"
HISTORY_BUCKETS = ("<1", "1-200", ">=200", "missing")
COUNTRY_BUCKETS = ("us", "de", "other", "missing")
SEGMENT_PATHS = {"history": HISTORY_PATH, "country": COUNTRY_PATH}
WEEK_SECONDS = 7 * 86400.0


@dataclass(frozen=True)
class Fault:
    """A candidate fault confined to one segment bucket, e.g. Fault("errors", "history", "<1", 0.5)."""

    kind: str  # "errors": that share of the candidate's answers fail; "latency": candidate latency x size;
    # "disagree": that share of the candidate's predictions differ
    segment: str
    bucket: str
    size: float


@dataclass(frozen=True)
class World:
    regression: bool = False
    segments: tuple[str, ...] = ("history", "country")
    features: tuple[str, ...] = (HISTORY_PATH, OTHER_FEATURE)
    history_weights: tuple[float, ...] = (0.25, 0.35, 0.25, 0.15)
    country_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    hours: tuple[int, ...] = tuple(range(24))
    error_rate: float = 0.0  # both models' (the same answers): at most max_error_rate
    feature_missing: float = 0.05  # share of requests without OTHER_FEATURE
    latency_mu: float = math.log(20.0)  # lognormal latency (ms) of both models
    latency_sigma: float = 0.5
    thresholds: dict = field(default_factory=dict)
    min_samples: int = 200
    min_samples_per_segment: int = 50
    confidence: float = 0.95

    @property
    def prediction_type(self) -> str:
        return "regression" if self.regression else "classification"

    def analysis(self) -> AnalysisSpec:
        return AnalysisSpec(
            thresholds=self.thresholds,
            min_samples=self.min_samples,
            min_samples_per_segment=self.min_samples_per_segment,
            confidence=self.confidence,
        )


def default_thresholds(regression: bool) -> dict:
    limits: dict = {
        "max_error_rate": 0.05,
        "max_error_rate_increase": 0.02,
        "latency_ratio": {"p50": 1.2, "p95": 1.3, "p99": 1.5},
        "max_feature_missing_rate": 0.01,
    }
    if regression:
        limits["max_abs_diff"] = {"mean": 0.05, "p95": 0.2}
    else:
        limits["min_agreement"] = 0.95
    return limits


def records(world: World, n: int, seed: int, fault: Fault | None = None) -> list[dict]:
    rng = random.Random(seed)
    result = []
    for i in range(n):
        history = rng.choices(HISTORY_BUCKETS, world.history_weights)[0]
        country = rng.choices(COUNTRY_BUCKETS, world.country_weights)[0]
        buckets = {"history": history, "country": country}
        segments = {name: buckets[name] for name in world.segments}
        features = {
            HISTORY_PATH: history != "missing",
            COUNTRY_PATH: country != "missing",
            OTHER_FEATURE: rng.random() >= world.feature_missing,
        }
        features = {path: present for path, present in features.items() if path in world.features}
        hour = rng.choice(world.hours)
        ts = MIDNIGHT + rng.randrange(3) * 86400 + hour * 3600 + rng.random() * 3599
        failed = rng.random() < world.error_rate
        prediction = round(rng.gauss(0, 1), 3) if world.regression else rng.randrange(3)
        outcome = "http_5xx" if failed else "ok"
        error = "RuntimeError: model unavailable" if failed else None
        p_latency = rng.lognormvariate(world.latency_mu, world.latency_sigma)
        c_latency = rng.lognormvariate(world.latency_mu, world.latency_sigma)
        c_outcome, c_error, c_prediction = outcome, error, prediction
        if fault is not None and buckets[fault.segment] == fault.bucket:
            if fault.kind == "errors" and rng.random() < fault.size:
                c_outcome, c_error = "http_5xx", "KeyError: 'purchase_history'"
            elif fault.kind == "latency":
                c_latency *= fault.size
            elif fault.kind == "disagree" and rng.random() < fault.size:
                c_prediction = prediction + 1.0 if world.regression else (prediction + 1) % 3
        primary = side(outcome, p_latency, prediction if outcome == "ok" else None, error)
        candidate = side(c_outcome, c_latency, c_prediction if c_outcome == "ok" else None, c_error)
        result.append(pair(f"r{i}", ts, primary, candidate, segments, features, regression=world.regression))
    return result


def judge(world: World, recs: list[dict], directory: Path | None = None) -> Verdict:
    """The verdict of the real pipeline on these records, the full minDuration covered."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(directory or tmp) / "records.jsonl", recs)
        with load([path], SHADOW, now=NOW, regression=world.regression) as dataset:
            slices = compute_slices(dataset, list(world.segments), list(world.features), world.regression)
            problems = list(dataset.problems)
    overall = next((s for s in slices if s.segment == "all" and s.hour is None), None)
    samples = overall.pairs if overall else 0
    coverage = ReportCoverage(
        elapsed_seconds=WEEK_SECONDS,
        required_seconds=WEEK_SECONDS,
        samples=samples,
        required_samples=world.min_samples,
        percent=100,
    )
    paths = {name: SEGMENT_PATHS[name] for name in world.segments}
    return decide(
        world.analysis(),
        world.prediction_type,
        slices,
        coverage,
        problems,
        True,
        "2025-11-28T00:00:00Z",
        segment_paths=paths,
    )
