"""A week of pair records with known properties, for the job's tests (and nothing else)."""

from __future__ import annotations

import random
from pathlib import Path

from shadow_operator.contract.records import HTTP_5XX, OK, SideResult, dumps, pair_record

WEEK_START = 1_763_942_400.0  # Monday 2025-11-24 00:00:00 UTC
KEY_ERROR = "KeyError: 'purchase_history'"


def write_week(
    directory: Path,
    shadow: str = "default/recommender",
    pairs_per_hour: int = 40,
    no_history_share: float = 0.08,
    candidate_key_error: bool = True,
    start: float = WEEK_START,
    seed: int = 7,
    received: float | None = None,
) -> Path:
    """168 hours of traffic; users without purchase history make a faulty candidate raise KeyError.

    `received`: when the records say the requests arrived (a replayed week arrives now; by default
    they arrived at their own time).
    """
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "records-0.jsonl"
    with path.open("w") as out:
        for hour in range(168):
            for i in range(pairs_per_hour):
                ts = start + hour * 3600 + i * (3600 / pairs_per_hour)
                no_history = rng.random() < no_history_share
                prediction = rng.randint(0, 4)
                primary = SideResult(OK, rng.uniform(8, 14), 200, prediction)
                if no_history and candidate_key_error:
                    candidate = SideResult(HTTP_5XX, rng.uniform(1, 3), 500, None, KEY_ERROR)
                else:
                    candidate = SideResult(OK, rng.uniform(8, 14), 200, prediction)
                record = pair_record(
                    shadow,
                    f"req-{hour}-{i}",
                    ts,
                    {"history": "<1" if no_history else "1-100"},
                    {"$.features.purchase_count": not no_history, "$.features.last_seen_days": True},
                    primary,
                    candidate,
                    received=received,
                )
                out.write(dumps(record))
    return path
