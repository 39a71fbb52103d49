"""One-sided records (Istio mode) whose other side has not arrived yet: carried once to the next increment.

A pair whose two sides fall into two increments is joined in the second: the one-sided records
an increment leaves unpaired are kept in the analysis state (`State.pending`,
incremental_state.py), read again, once, with the next increment; only then are those still
unpaired counted as `UnpairedRecord`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..contract.records import CANDIDATE_IMAGE, RECEIVED, RECORD_VERSION
from ..contract.report import UNPAIRED_RECORD, DataProblem


def write_pending(lines: list[str], target: Path) -> None:
    target.write_text("".join(f"{line}\n" for line in lines))


def one_sided(path: Path, shadow: str, against: str, image: str | None, since: float | None) -> dict[str, str]:
    """id -> line of the one-sided records in `path` that this comparison would join (primary and `against`).

    The Python twin of dataset.load's kinds for these lines: same shadow and version, a known role,
    the judged image (or none named), arrived since the evidence start. Scanned only where a line
    names a role (pair records never do), so a file of pair records costs one substring test a line.
    """
    found: dict[str, str] = {}
    with path.open("rb") as f:
        for raw in f:
            if b'"role"' not in raw:
                continue
            try:
                record = json.loads(raw)
                if not isinstance(record, dict) or record.get("role") not in ("primary", against):
                    continue
                if record.get("v") != RECORD_VERSION or record.get("shadow") != shadow:
                    continue
                if image and record.get(CANDIDATE_IMAGE) not in (None, image):
                    continue
                arrived = record.get(RECEIVED, record.get("ts"))
                if since is not None and not (isinstance(arrived, int | float) and arrived >= since):
                    continue
                if isinstance(record.get("id"), str):
                    found[f"{record['role']}\0{record['id']}"] = raw.decode("utf-8", "replace").rstrip("\r\n")
            except (ValueError, RecursionError):
                continue
    return found


def unpaired(con: Any, table: str, lines: dict[str, str]) -> dict[str, str]:
    """The entries of `lines` (role NUL id -> line) whose id has no row in the loaded pairs table."""
    if not lines:
        return {}
    ids = sorted({key.split("\0", 1)[1] for key in lines})
    paired = {
        row[0]
        for row in con.execute(f"SELECT id FROM {table} WHERE id IN (SELECT unnest($ids))", {"ids": ids}).fetchall()
    }
    return {key: line for key, line in lines.items() if key.split("\0", 1)[1] not in paired}


def unpaired_problem(expired: int) -> list[DataProblem]:
    if not expired:
        return []
    return [
        DataProblem(
            code=UNPAIRED_RECORD,
            count=expired,
            message=f"{expired} one-sided records have no other side, also after waiting one more analysis run "
            "(expected for requests not mirrored when mirrorPercent is below 100)",
        )
    ]
