"""The demo's models and traffic have the properties the story relies on (examples/shadow_demo)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from shadow_demo.demo import in_plain_words
from shadow_demo.models import VERSIONS, paged_history_lookup, trained_models
from shadow_demo.replay import schedule, week_start
from shadow_demo.world import CATEGORIES, DAY, FLASH_SALE_HOURS, HOUR, daily_snapshot_trend, hourly_trend, make_users

MONDAY = 1_763_942_400.0  # 2025-11-24 00:00 UTC


@pytest.fixture(scope="module")
def models():
    return trained_models()


def _body(purchase_count: int, at: float = MONDAY + 10 * HOUR) -> dict:
    user = next(u for u in make_users(4000, 1) if (u.purchase_count == 0) == (purchase_count == 0))
    body = user.request(at, random.Random(0))
    body["features"]["purchase_count"] = purchase_count
    return body


def test_v2_beats_v1_offline(models):
    _, accuracy = models
    assert accuracy["v2"] > accuracy["v1"] + 0.02


def test_v2_raises_key_error_for_users_without_history_and_the_others_do_not(models):
    trained, _ = models
    newcomer = _body(0)
    assert "purchase_history" not in newcomer["features"]
    with pytest.raises(KeyError, match="purchase_history"):
        trained["v2"].predict(newcomer)
    for name in ("v1", "v2.1"):
        assert trained[name].predict(newcomer)["prediction"] in (0, 1)


def test_only_v2s_lookup_grows_with_the_history():
    collector, regular = _body(1500), _body(40)
    assert paged_history_lookup(collector) == pytest.approx(10 * paged_history_lookup(regular), rel=0.5)
    for name in ("v1", "v2.1"):
        lookup = VERSIONS[name].lookup_seconds
        assert lookup(collector) == lookup(regular)


def test_the_hourly_and_daily_trends_differ_only_in_flash_sale_hours():
    for category in CATEGORIES:
        for hour in range(24):
            t = MONDAY + 2 * DAY + hour * HOUR + 1800
            same = daily_snapshot_trend(category, t) == pytest.approx(hourly_trend(category, t))
            assert same == (hour not in FLASH_SALE_HOURS), (category, hour)


def test_predictions_part_ways_in_the_evening_and_not_with_the_fix(models):
    trained, _ = models
    rng = random.Random(5)
    users = [u for u in make_users(3000, 9) if u.purchase_count]
    agree: Counter = Counter()
    for i in range(4000):
        evening = i % 2 == 0
        t = MONDAY + rng.randrange(7) * DAY + (20 if evening else rng.choice([3, 9, 14])) * HOUR
        body = rng.choice(users).request(t, rng)
        v1 = trained["v1"].predict(body)["prediction"]
        agree[("v2", evening)] += v1 == trained["v2"].predict(body)["prediction"]
        agree[("v2.1", evening)] += v1 == trained["v2.1"].predict(body)["prediction"]
    rate = {key: count / 2000 for key, count in agree.items()}
    assert rate[("v2", True)] < 0.7 < 0.8 < rate[("v2", False)]
    assert rate[("v2.1", True)] > 0.85 and rate[("v2.1", False)] > 0.85


def test_the_replayed_week_has_profiles_a_daily_curve_and_quieter_weekends():
    events = schedule(20000, MONDAY)
    assert abs(len(events) - 20000) < 100
    assert [e.t for e in events] == sorted(e.t for e in events)
    assert events[0].t >= MONDAY and events[-1].t < MONDAY + 7 * DAY
    assert len({e.request_id for e in events}) == len(events)
    profiles = Counter(e.user.profile for e in events)
    assert 0.06 < profiles["new"] / len(events) < 0.10
    assert 0.03 < profiles["collector"] / len(events) < 0.07
    by_hour = Counter(int((e.t - MONDAY) % DAY // HOUR) for e in events)
    assert by_hour[20] > 5 * by_hour[3]
    by_day = Counter(int((e.t - MONDAY) // DAY) for e in events)
    assert by_day[5] < 0.85 * by_day[2] and by_day[6] < 0.85 * by_day[2]
    again = schedule(20000, MONDAY)
    assert again == events, "the same week every time"
    assert [e.body() for e in again[:50]] == [e.body() for e in events[:50]]


def test_the_replayed_week_is_the_last_complete_one():
    now = MONDAY + 3 * DAY + 5 * HOUR  # a Thursday
    start = week_start(now)
    assert datetime.fromtimestamp(start, UTC).weekday() == 0
    assert start + 7 * DAY <= now < start + 14 * DAY
    assert week_start(MONDAY) == MONDAY - 7 * DAY


def test_the_demo_says_what_each_failing_check_means():
    def check(name, segment, candidate, primary=None, passed=False, hour=None, source="records"):
        return {
            "name": name,
            "segment": segment,
            "hour": hour,
            "source": source,
            "candidate": candidate,
            "primary": primary,
            "passed": passed,
        }

    report = {
        "verdict": {
            "checks": [
                check("errorRate", "history=<1", 1.0, 0.0),
                check("errorRate", "all", 0.08, 0.0),
                check("errorRate", "history=<1", 1.0, 0.0, source="prometheus"),
                check("latencyP50Ratio", "history=>=200", 16.0, 2.0),
                check("latencyP99Ratio", "history=>=200", 24.0, 6.0),
                check("latencyP99Ratio", "history=1-200", 6.0, 6.0, passed=True),
                check("agreement", "all", 0.51, hour=19),
                check("agreement", "all", 0.49, hour=20),
                check("agreement", "all", 0.9, passed=True, hour=3),
            ]
        },
        "slices": [
            {
                "segment": "history=<1",
                "hour": None,
                "candidate": {"top_errors": [{"text": "KeyError: 'x'", "count": 9}]},
            },
            {"segment": "history=>=200", "hour": None, "candidate": {"top_errors": []}},
        ],
    }
    assert in_plain_words(report) == [
        "history=<1: the candidate fails 100% of these requests: KeyError: 'x'",
        "history=>=200: the candidate is 4.0x slower at p99 (24.0 ms vs 6.0 ms)",
        "at 19h, 20h: the two models agree on only 49%-51% of predictions",
    ]
    report["verdict"]["checks"] = [c | {"passed": True} for c in report["verdict"]["checks"]]
    assert in_plain_words(report) == []
