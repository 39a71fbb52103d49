"""Record files with known contents for the dataset and stats tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shadow_operator.contract.records import OK, SideResult, dumps, one_sided_record, pair_record
from shadow_operator.contract.report import DataProblem

SHADOW = "default/recommender"
MIDNIGHT = 1_764_028_800.0  # 2025-11-25 00:00:00 UTC
NOW = MIDNIGHT + 3 * 86400  # "now" of every load in the tests: records before it are in the past


def at(hour: int, minute: int = 0, second: float = 0, day: int = 0) -> float:
    """Epoch seconds of an hour of day (UTC) on the test day."""
    return MIDNIGHT + day * 86400 + hour * 3600 + minute * 60 + second


def side(
    outcome: str = OK,
    latency_ms: float = 10.0,
    prediction: Any = ...,
    error: str | None = None,
    status: int | None = None,
) -> SideResult:
    if status is None:
        status = {"ok": 200, "http_4xx": 400, "http_5xx": 500}.get(outcome)
    if prediction is ...:  # by default an answer predicts 1, an error predicts nothing
        prediction = 1 if outcome == OK else None
    return SideResult(outcome=outcome, latency_ms=latency_ms, status=status, prediction=prediction, error=error)


def pair(
    request_id: str,
    ts: float | None = None,
    primary: SideResult | None = None,
    candidate: SideResult | None = None,
    segments: dict[str, str] | None = None,
    features: dict[str, bool] | None = None,
    regression: bool = False,
    shadow: str = SHADOW,
) -> dict[str, Any]:
    return pair_record(
        shadow,
        request_id,
        at(12) if ts is None else ts,
        segments or {},
        features or {},
        primary or side(),
        candidate or side(),
        regression=regression,
    )


def one(
    request_id: str,
    role: str,
    result: SideResult | None = None,
    ts: float | None = None,
    segments: dict[str, str] | None = None,
    features: dict[str, bool] | None = None,
    shadow: str = SHADOW,
) -> dict[str, Any]:
    return one_sided_record(
        shadow, request_id, at(12) if ts is None else ts, role, segments or {}, features or {}, result or side()
    )


def write(path: Path, records: Iterable[dict[str, Any] | str | bytes]) -> Path:
    """One line per record; a str or bytes item is written exactly as given (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for record in records:
            if isinstance(record, bytes):
                f.write(record)
            elif isinstance(record, str):
                f.write(record.encode())
            else:
                f.write(dumps(record).encode())
    return path


def counts_by_code(problems: list[DataProblem]) -> dict[str, int]:
    result: dict[str, int] = {}
    for problem in problems:
        result[problem.code] = result.get(problem.code, 0) + problem.count
    return result
