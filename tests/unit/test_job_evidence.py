"""Which records the comparison job takes as the current candidate's evidence (job/job.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shadow_operator.contract.timestamps import timestamp
from shadow_operator.job.job import ROLLOUT_SETTLE_SECONDS, analyze, evidence_since

from .factories import make_sd
from .records_factory import pair, side, write

NOW = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)
ROLLED_OUT = NOW - timedelta(hours=1)
IMAGE = make_sd().spec.candidate.image


def test_evidence_starts_after_the_candidate_rolled_out_and_settled():
    sd = make_sd(status={"candidate": IMAGE, "shadowingSince": timestamp(ROLLED_OUT)})
    assert evidence_since(sd, NOW) == ROLLED_OUT.timestamp() + ROLLOUT_SETTLE_SECONDS


def test_nothing_is_evidence_while_the_candidate_rolls_out():
    rolling = make_sd(status={"candidate": IMAGE})  # shadowingSince cleared for the new image
    not_seen = make_sd(status={"candidate": "registry.example/recsys:0.9", "shadowingSince": timestamp(ROLLED_OUT)})
    assert evidence_since(rolling, NOW) == NOW.timestamp()
    assert evidence_since(not_seen, NOW) == NOW.timestamp()


def test_records_analysed_offline_all_count():
    assert evidence_since(make_sd(), NOW) is None


def test_a_failing_previous_candidate_does_not_fail_the_new_one(tmp_path: Path):
    """The router's records do not name the image: only their arrival tells the candidates apart."""
    failing = side("http_5xx", error="KeyError: 'purchase_history'")
    start = ROLLED_OUT.timestamp()
    records = [pair(f"old-{i}", ts=start - 600 + i, candidate=failing) for i in range(300)]
    records += [pair(f"new-{i}", ts=start + ROLLOUT_SETTLE_SECONDS + 1 + i) for i in range(300)]
    write(tmp_path / "records.jsonl", records)
    spec = {"analysis": {"prometheus": None, "minSamples": 10, "minSamplesPerSegment": 10}}

    judged = analyze(
        make_sd(spec, status={"candidate": IMAGE, "shadowingSince": timestamp(ROLLED_OUT)}),
        [tmp_path / "records.jsonl"],
        now=NOW,
    )
    assert judged.coverage.samples == 300
    assert not any(check.passed is False for check in judged.verdict.checks), judged.verdict

    offline = analyze(make_sd(spec), [tmp_path / "records.jsonl"], now=NOW)
    assert offline.coverage.samples == 600
    assert offline.verdict.result == "Failed"
