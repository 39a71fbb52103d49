"""The three model versions, trained at start-up on generated data (numpy, about a second).

v1    serving today: purchase count, session length and the daily trend snapshot.
v2    the candidate: adds purchase recency and the hourly-refreshed trend, so it is better on the
      curated offline set, and carries three production faults that set never shows:
        a) users with no purchase history have no `purchase_history`: KeyError;
        b) its history lookup pages through every purchase: ~10x slower for collectors;
        c) it reads the hourly trend while v1 reads the daily snapshot: evening predictions diverge.
v2.1  the fix: defaults missing history, caps the lookup, reads the same daily snapshot as v1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .world import WEEK, daily_snapshot_trend, hourly_trend, make_users, purchase_probability

LOOKUP_SECONDS = 0.001  # one feature-store round trip
PAGE = 100  # purchases per history page
DEFAULT_RECENCY_DAYS = 30.0


def _base(f: dict[str, Any]) -> list[float]:
    return [1.0, math.log1p(f["purchase_count"]), f["session_minutes"]]


def v1_features(body: dict[str, Any]) -> list[float]:
    f = body["features"]
    return [*_base(f), daily_snapshot_trend(f["category"], body["timestamp"])]


def v2_features(body: dict[str, Any]) -> list[float]:
    f = body["features"]
    history = f["purchase_history"]  # fault (a): absent for users who never bought anything
    return [*_base(f), hourly_trend(f["category"], body["timestamp"]), math.log1p(history["last_purchase_days"])]


def v2_1_features(body: dict[str, Any]) -> list[float]:
    f = body["features"]
    recency = (f.get("purchase_history") or {}).get("last_purchase_days", DEFAULT_RECENCY_DAYS)
    return [*_base(f), daily_snapshot_trend(f["category"], body["timestamp"]), math.log1p(recency)]


def constant_lookup(body: dict[str, Any]) -> float:
    return LOOKUP_SECONDS


def paged_history_lookup(body: dict[str, Any]) -> float:
    """Fault (b): one round trip per page of purchases."""
    return LOOKUP_SECONDS * max(1, math.ceil(body["features"]["purchase_count"] / PAGE))


@dataclass(frozen=True)
class Version:
    name: str
    featurize: Callable[[dict[str, Any]], list[float]]
    lookup_seconds: Callable[[dict[str, Any]], float]


VERSIONS = {
    "v1": Version("v1", v1_features, constant_lookup),
    "v2": Version("v2", v2_features, paged_history_lookup),
    "v2.1": Version("v2.1", v2_1_features, constant_lookup),
}


@dataclass(frozen=True)
class Model:
    version: Version
    weights: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.version.name

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        x = self.version.featurize(body)
        score = 1 / (1 + math.exp(-sum(w * v for w, v in zip(self.weights, x, strict=True))))
        return {"prediction": int(score >= 0.5), "score": round(score, 4), "model": self.name}


def offline_dataset(rows: int, seed: int) -> list[tuple[dict[str, Any], int]]:
    """The curated offline set: logged requests of users *with* purchase history, and what they did."""
    rng = random.Random(seed)
    users = [u for u in make_users(rows // 4, seed) if u.purchase_count > 0]
    start = 1_700_000_000.0 - 4 * WEEK
    data = []
    for _ in range(rows):
        body = rng.choice(users).request(start + rng.uniform(0, 4 * WEEK), rng)
        data.append((body, int(rng.random() < purchase_probability(body))))
    return data


def train(version: Version, data: list[tuple[dict[str, Any], int]], ridge: float = 1e-3) -> Model:
    """Logistic regression by Newton's method (a handful of iterations on a few thousand rows)."""
    x = np.array([version.featurize(body) for body, _ in data])
    y = np.array([label for _, label in data], dtype=float)
    w = np.zeros(x.shape[1])
    for _ in range(25):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + ridge * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Model(version, tuple(float(v) for v in w))


def accuracy(model: Model, data: list[tuple[dict[str, Any], int]]) -> float:
    return sum(model.predict(body)["prediction"] == label for body, label in data) / len(data)


def trained_models(seed: int = 11, rows: int = 12000) -> tuple[dict[str, Model], dict[str, float]]:
    """Every version trained on the same offline set; accuracy on its held-out fifth."""
    data = offline_dataset(rows, seed)
    cut = rows * 4 // 5
    models = {name: train(version, data[:cut]) for name, version in VERSIONS.items()}
    return models, {name: accuracy(model, data[cut:]) for name, model in models.items()}
