"""Checks judged against the noise baseline (analysis.baseline): boundaries and what stands in for the primary."""

from __future__ import annotations

import pytest

from shadow_operator.api.v1alpha1.analysis import AbsDiff
from shadow_operator.job import checks as c
from shadow_operator.job.verdict import decide, slice_checks

from .slices_factory import analysis, coverage, make_slice

SLOW = (100.0, 180.0, 240.0)


def test_the_candidates_disagreement_is_judged_beyond_the_baselines():
    candidate = make_slice(pairs=4000, agreement=0.80)
    same_noise = make_slice(pairs=4000, agreement=0.80)
    check = c.excess_disagreement_check(candidate, same_noise, 0.95, 0.95, 100)
    assert check.passed is True and check.primary == pytest.approx(0.80), check.message
    assert "two primaries agree on 80% (3200 of 4000" in check.message
    noisier = make_slice(pairs=4000, agreement=0.60)
    assert c.excess_disagreement_check(noisier, same_noise, 0.95, 0.95, 100).passed is False
    # Without the baseline the same candidate fails on the absolute limit: the point of the baseline.
    assert c.agreement_check(candidate, 0.95, 0.95, 100).passed is False


def test_no_baseline_pairs_is_not_judged_and_thin_evidence_is_inconclusive():
    candidate = make_slice(pairs=4000, agreement=0.5)
    assert c.excess_disagreement_check(candidate, None, 0.95, 0.95, 100).passed is None
    assert c.excess_disagreement_check(candidate, make_slice(pairs=0, comparable=0), 0.95, 0.95, 100).passed is None
    thin = make_slice(pairs=40, agreement=0.80)
    assert c.excess_disagreement_check(make_slice(pairs=40, agreement=0.78), thin, 0.95, 0.95, 100).passed is None


def test_abs_diff_beyond_the_baselines_exactly_at_the_limit_passes():
    limit = AbsDiff(mean=0.5)
    candidate = make_slice(pairs=500, abs_diff_mean=1.5)
    [at_limit] = c.abs_diff_checks(candidate, limit, 100, make_slice(pairs=500, abs_diff_mean=1.0))
    assert at_limit.passed is True and at_limit.primary == 1.0, at_limit.message
    [above] = c.abs_diff_checks(candidate, limit, 100, make_slice(pairs=500, abs_diff_mean=0.9))
    assert above.passed is False
    [thin] = c.abs_diff_checks(candidate, limit, 100, make_slice(pairs=50, abs_diff_mean=1.0))
    assert thin.passed is None


def test_latency_is_timed_against_the_baselines_copies_not_the_primary():
    spec = analysis(latencyRatio={"p50": 1.2})
    # The router's path makes every copy slower than the primary's answer: the baseline shows it.
    candidate = make_slice(pairs=5000, primary_latency=(50.0, 90.0, 120.0), candidate_latency=SLOW)
    baseline = make_slice(pairs=5000, primary_latency=(50.0, 90.0, 120.0), candidate_latency=SLOW)
    [plain] = slice_checks(spec, "classification", candidate, 100)
    assert plain.passed is False
    [judged] = slice_checks(spec, "classification", candidate, 100, baseline=baseline, with_baseline=True)
    assert judged.passed is True and "noise baseline's" in judged.message, judged.message
    [alone] = slice_checks(spec, "classification", candidate, 100, with_baseline=True)
    assert alone.passed is None, alone.message


def test_a_verdict_with_a_baseline_reads_it_slice_by_slice():
    spec = analysis(minAgreement=0.95)
    slices = [make_slice(pairs=4000, agreement=0.80), make_slice("tier=a", pairs=2000, agreement=0.80)]
    noise = [make_slice(pairs=4000, agreement=0.80), make_slice("tier=a", pairs=2000, agreement=0.80)]
    cover = coverage(slices)
    without = decide(spec, "classification", slices, cover, [], True, "2025-03-03T12:00:00Z")
    assert without.result == "Failed"
    judged = decide(spec, "classification", slices, cover, [], True, "2025-03-03T12:00:00Z", baseline_slices=noise)
    assert judged.result != "Failed", judged.message
    assert all(k.passed is not False for k in judged.checks)
    only_all = decide(
        spec, "classification", slices, cover, [], True, "2025-03-03T12:00:00Z", baseline_slices=noise[:1]
    )
    [segment] = [k for k in only_all.checks if k.segment == "tier=a" and k.name == c.AGREEMENT]
    assert segment.passed is None  # no baseline pairs in that slice: not judged, never judged against nothing
