"""The simulated world both models live in: users, their profiles, and the item-trend feature.

Everything is a pure function of a seed and a time, so training data, the replayed week and the
feature store agree without any shared state between processes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

CATEGORIES = ("books", "electronics", "garden", "fashion", "toys")
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
# Evening flash sales move a category's trend within the day; the daily snapshot never sees them.
FLASH_SALE_HOURS = range(19, 23)

# (profile, share of users): no history is the 8% the offline set never contained.
PROFILES = (("new", 0.08), ("regular", 0.87), ("collector", 0.05))


@dataclass(frozen=True)
class User:
    user_id: str
    profile: str
    purchase_count: int
    last_purchase_days: float | None
    days_since_signup: int
    category: str

    def request(self, event_time: float, rng: random.Random) -> dict[str, Any]:
        """The JSON body a client sends to the recommendation Service."""
        features: dict[str, Any] = {
            "purchase_count": self.purchase_count,
            "days_since_signup": self.days_since_signup,
            "category": self.category,
            "session_minutes": round(rng.expovariate(1 / 6), 2),
        }
        if self.purchase_count:
            features["purchase_history"] = {"last_purchase_days": self.last_purchase_days}
        return {"user_id": self.user_id, "timestamp": round(event_time, 3), "features": features}


def make_user(index: int, rng: random.Random) -> User:
    roll, profile = rng.random(), PROFILES[-1][0]
    for name, share in PROFILES:
        if roll < share:
            profile = name
            break
        roll -= share
    if profile == "new":
        count, last = 0, None
    elif profile == "collector":
        count, last = rng.randint(800, 2000), round(rng.uniform(0, 5), 1)
    else:
        count, last = rng.randint(1, 150), round(rng.expovariate(1 / 30), 1)
    signup = rng.randint(0, 30) if profile == "new" else rng.randint(30, 2000)
    return User(f"u{index:06d}", profile, count, last, signup, rng.choice(CATEGORIES))


def make_users(count: int, seed: int) -> list[User]:
    rng = random.Random(seed)
    return [make_user(i, rng) for i in range(count)]


def _unit_hash(*parts: object) -> float:
    return random.Random(":".join(map(str, parts))).random()


def trend(category: str, t: float) -> float:
    """How hot a category is at time t, 0..1: a daily level, plus a flash sale in some evenings."""
    day = math.floor(t / DAY)
    level = 0.2 + 0.4 * _unit_hash("level", category, day)
    hour = int((t % DAY) // HOUR)
    if hour in FLASH_SALE_HOURS:
        level += 0.35 + 0.25 * _unit_hash("sale", category, day)
    return min(level, 1.0)


def daily_snapshot_trend(category: str, t: float) -> float:
    """The trend as the nightly batch job wrote it at midnight."""
    return trend(category, math.floor(t / DAY) * DAY)


def hourly_trend(category: str, t: float) -> float:
    """The trend as the hourly streaming job refreshes it."""
    return trend(category, math.floor(t / HOUR) * HOUR)


def purchase_probability(body: dict[str, Any]) -> float:
    """The ground truth the models try to learn: does the user buy the recommended item?"""
    f = body["features"]
    history = f.get("purchase_history") or {}
    recency = history.get("last_purchase_days")
    logit = (
        -6.6
        + 1.0 * math.log1p(f["purchase_count"])
        + 0.03 * f["session_minutes"]
        + 4.0 * trend(f["category"], body["timestamp"])
        - (0.25 * (math.log1p(recency) - 2.5) if recency is not None else 0.0)
    )
    return 1 / (1 + math.exp(-logit))
