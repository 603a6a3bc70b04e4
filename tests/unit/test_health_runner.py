"""health_check runner: concurrency limit, per-check and overall timeouts, no tracebacks, redaction.

The check types here are small real implementations of the check-type interface (what a
new type file provides), so the runner is exercised without any network service.
"""

import threading
import time

from ansible_collections.bosun.platform.plugins.module_utils._checks import runner
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import CheckFailed
from ansible_collections.bosun.platform.plugins.module_utils._checks.plan import Plan
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold


class Sleeper:
    """Sleeps ``seconds``; records how many sleepers run at the same time."""

    TYPE = "sleep"
    OPTIONS = {}
    METRICS = {"slept": Threshold(1, 2, unit="s")}
    lock = threading.Lock()
    running = 0
    peak = 0

    @classmethod
    def run(cls, probe, options):
        with cls.lock:
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        try:
            time.sleep(options["seconds"])
        finally:
            with cls.lock:
                cls.running -= 1
        probe.metric("slept", options["seconds"], "slept %s s" % options["seconds"])


class Raiser:
    TYPE = "raise"
    OPTIONS = {}
    METRICS = {"x": None}

    @staticmethod
    def run(probe, options):
        if options.get("verdict"):
            raise CheckFailed(options["message"], status=options["verdict"])
        raise RuntimeError(options["message"])


def plan(index, kind, options, *, timeout=5.0, secrets=(), name=None):
    return Plan(
        index=index,
        name=name or "c%d" % index,
        type_name=kind.TYPE,
        kind=kind,
        options=options,
        timeout=timeout,
        thresholds=dict((k, v) for k, v in kind.METRICS.items() if v is not None),
        labels={},
        secrets=list(secrets),
    )


def test_results_keep_input_order_and_classify():
    plans = [plan(0, Sleeper, {"seconds": 0.2}), plan(1, Sleeper, {"seconds": 0.0}), plan(2, Sleeper, {"seconds": 1.5})]
    results, duration_ms = runner.run_all(plans, concurrency=3)
    assert [r["name"] for r in results] == ["c0", "c1", "c2"]
    assert [r["status"] for r in results] == ["ok", "ok", "warn"]
    assert results[2]["value"] == 1.5 and results[2]["unit"] == "s"
    assert duration_ms > 0


def test_concurrency_limit_is_honoured():
    Sleeper.peak = 0
    plans = [plan(i, Sleeper, {"seconds": 0.15}) for i in range(6)]
    results, _ms = runner.run_all(plans, concurrency=2)
    assert Sleeper.peak == 2
    assert all(r["status"] == "ok" for r in results)
    Sleeper.peak = 0
    results, _ms = runner.run_all([plan(i, Sleeper, {"seconds": 0.15}) for i in range(4)], concurrency=4)
    assert Sleeper.peak == 4


def test_hanging_check_times_out_without_delaying_the_others():
    plans = [plan(0, Sleeper, {"seconds": 30}, timeout=0.5), plan(1, Sleeper, {"seconds": 0.0})]
    start = time.monotonic()
    results, _ms = runner.run_all(plans, concurrency=1)
    assert time.monotonic() - start < 5  # generous bound: the 30 s sleeper is abandoned
    assert results[0]["status"] == "crit"
    assert results[0]["message"] == "timed out after 0.5 s (the check's timeout)"
    assert results[1]["status"] == "ok"  # its slot was freed when the first timed out


def test_overall_timeout_ends_running_and_unstarted_checks():
    plans = [plan(i, Sleeper, {"seconds": 30}, timeout=20) for i in range(3)]
    start = time.monotonic()
    results, _ms = runner.run_all(plans, concurrency=1, overall_timeout=0.5)
    assert time.monotonic() - start < 5
    assert [r["status"] for r in results] == ["crit"] * 3
    assert results[0]["message"] == "not finished within overall_timeout (0.5 s)"
    assert results[1]["message"] == results[2]["message"] == "not started within overall_timeout (0.5 s)"


def test_unexpected_exception_is_a_crit_verdict_without_traceback_or_secret():
    secret = "pa'ss $word 42"
    plans = [plan(0, Raiser, {"message": "boom near %s" % secret}, secrets=[secret])]
    (result,), _ms = runner.run_all(plans)
    assert result["status"] == "crit"
    assert result["message"] == "check failed unexpectedly: RuntimeError: boom near ********"
    assert "Traceback" not in str(result) and secret not in str(result)


def test_check_failed_carries_its_status():
    plans = [plan(0, Raiser, {"verdict": "unknown", "message": "no systemd here"})]
    (result,), _ms = runner.run_all(plans)
    assert (result["status"], result["message"], result["value"]) == ("unknown", "no systemd here", None)
