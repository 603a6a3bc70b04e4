"""health_check: classification against thresholds, and aggregation of results."""

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._checks import status
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

USAGE = Threshold(70, 85)  # "< 70 ok, 70-85 warn, > 85 crit"
EXPIRY = Threshold(21, 7, higher_is_worse=False)  # "warn < 21, crit < 7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "ok"), (69.9, "ok"), (70, "warn"), (85, "warn"), (85.1, "crit"), (100, "crit")],
)
def test_higher_is_worse_boundaries(value, expected):
    assert status.classify(value, USAGE) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(400, "ok"), (21, "ok"), (20, "warn"), (7, "warn"), (6, "crit"), (-3, "crit")],
)
def test_lower_is_worse_boundaries(value, expected):
    assert status.classify(value, EXPIRY) == expected


def test_missing_bounds_and_values():
    assert status.classify(None, USAGE) == "ok"
    assert status.classify(99, None) == "ok"
    assert status.classify(99, Threshold(None, None)) == "ok"
    assert status.classify(99, Threshold(50, None)) == "warn"
    assert status.classify(99, Threshold(None, 90)) == "crit"
    hit_rate = Threshold(80, None, higher_is_worse=False)
    assert status.classify(79.9, hit_rate) == "warn"
    assert status.classify(0, hit_rate) == "warn"


def test_with_bounds_keeps_direction_and_unit():
    t = Threshold(21, 7, higher_is_worse=False, unit="days").with_bounds(crit=14)
    assert (t.warn, t.crit, t.higher_is_worse, t.unit) == (21, 14, False, "days")


def test_worst_orders_unknown_between_warn_and_crit():
    assert status.worst([]) == "ok"
    assert status.worst(["ok", "warn"]) == "warn"
    assert status.worst(["warn", "unknown", "ok"]) == "unknown"
    assert status.worst(["unknown", "crit", "warn"]) == "crit"


@pytest.mark.parametrize(
    ("fail_on", "reached"),
    [
        ("crit", {"crit"}),
        ("warn", {"warn", "unknown", "crit"}),
        ("never", set()),
    ],
)
def test_reaches(fail_on, reached):
    assert {s for s in status.STATUSES if status.reaches(s, fail_on)} == reached


def _r(name, st, message="m"):
    return dict(name=name, status=st, message=message)


def test_summary_and_failure_message_list_failing_checks_worst_first():
    results = [_r("a", "ok"), _r("b", "warn", "slow"), _r("c", "crit", "refused"), _r("d", "unknown", "no systemd")]
    assert status.summarize(results) == dict(ok=1, warn=1, unknown=1, crit=1, total=4)
    assert status.failure_message(results, "crit") == "1 of 4 checks failed (fail_on=crit): c crit: refused"
    msg = status.failure_message(results, "warn")
    assert msg.startswith("3 of 4 checks failed (fail_on=warn): c crit: refused; d unknown: no systemd; b warn")
    assert status.failure_message(results, "never") == ""
    assert status.summary_message(results) == "4 checks: 1 ok, 1 warn, 1 unknown, 1 crit"


def test_failure_message_is_bounded():
    results = [_r("c%d" % i, "crit") for i in range(30)]
    msg = status.failure_message(results, "crit", limit=5)
    assert msg.count(" crit: ") == 5
    assert msg.endswith("and 25 more")
