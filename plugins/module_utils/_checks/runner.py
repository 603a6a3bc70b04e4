# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run checks concurrently, each within its own timeout, all within overall_timeout.

Every check runs in a daemon thread; at most ``concurrency`` count as running. A check
still running ``GRACE`` seconds after its timeout is reported crit ("timed out") and its
thread is abandoned: it no longer holds a slot, its late result is ignored, and being a
daemon thread it cannot keep the module from exiting. Checks not started or not finished
when overall_timeout runs out are crit too. Nothing a check raises escapes: an unexpected
exception becomes a crit result naming its type and text (redacted), never a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import queue
import threading
import time

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import CheckFailed, Probe, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import CRIT, worst
from ansible_collections.bosun.platform.plugins.module_utils._io import redact

GRACE = 0.2


def _redact_all(value, secrets):
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return dict((k, _redact_all(v, secrets)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_redact_all(v, secrets) for v in value]
    return value


def result_of(plan, probe, status=None, message=None, latency_ms=None):
    """The result dict of one check from what its probe recorded."""
    metrics = probe.metrics
    statuses = [m["status"] for m in metrics]
    if status is not None:
        statuses.append(status)
    primary = metrics[0] if metrics else None
    if message is None:
        message = probe.message or "; ".join(m["text"] for m in metrics) or "no measurement"
    if latency_ms is None:
        latency_ms = round((probe.clock() - probe.started) * 1000.0, 1)
    return dict(
        name=plan.name,
        type=plan.type,
        status=worst(statuses) if statuses else CRIT,
        value=primary["value"] if primary else None,
        unit=primary["unit"] if primary else "",
        latency_ms=latency_ms,
        message=message,
        metrics=metrics,
        labels=plan.labels,
    )


def run_one(plan, clock=time.monotonic):
    """Run one check in this thread and return its result (never raises)."""
    probe = Probe(plan.name, plan.timeout, plan.thresholds, clock=clock)
    try:
        plan.kind.run(probe, plan.options)
        result = result_of(plan, probe)
    except CheckFailed as exc:
        result = result_of(plan, probe, status=exc.status, message=exc.message)
    except Exception as exc:  # a bug or an unforeseen library error: a verdict, not a traceback
        result = result_of(
            plan, probe, status=CRIT, message="check failed unexpectedly: %s: %s" % (type(exc).__name__, exc)
        )
    return result


def timed_out(plan, seconds, why):
    return dict(
        name=plan.name,
        type=plan.type,
        status=CRIT,
        value=None,
        unit="",
        latency_ms=round(seconds * 1000.0, 1),
        message=why,
        metrics=[],
        labels=plan.labels,
    )


def run_all(plans, concurrency=10, overall_timeout=60.0, clock=time.monotonic):
    """Results in the order of ``plans``, and the wall time in ms."""
    secrets = sorted(set(s for p in plans for s in p.secrets))
    start = clock()
    overall_deadline = start + overall_timeout
    results = [None] * len(plans)
    done = queue.Queue()
    waiting = list(range(len(plans)))
    running = {}  # index -> (started, hard deadline)

    def worker(index):
        done.put((index, run_one(plans[index], clock)))

    while waiting or running:
        now = clock()
        while waiting and len(running) < concurrency and now < overall_deadline:
            index = waiting.pop(0)
            running[index] = (now, now + plans[index].timeout + GRACE)
            thread = threading.Thread(target=worker, args=(index,), name="check-%d" % index)
            thread.daemon = True
            thread.start()
        if not running:
            break
        wake = min([d for _s, d in running.values()] + [overall_deadline])
        try:
            index, result = done.get(timeout=max(0.0, wake - clock()))
            if index in running:
                del running[index]
                results[index] = result
        except queue.Empty:
            pass
        now = clock()
        for index, (started, deadline) in list(running.items()):
            if now >= deadline:
                del running[index]
                results[index] = timed_out(
                    plans[index],
                    now - started,
                    "timed out after %s s (the check's timeout)" % fmt_num(plans[index].timeout),
                )
        if now >= overall_deadline:
            for index, (started, _deadline) in list(running.items()):
                results[index] = timed_out(
                    plans[index], now - started, "not finished within overall_timeout (%s s)" % fmt_num(overall_timeout)
                )
            break
    for index, result in enumerate(results):
        if result is None:
            results[index] = timed_out(
                plans[index], 0.0, "not started within overall_timeout (%s s)" % fmt_num(overall_timeout)
            )
    duration_ms = round((clock() - start) * 1000.0, 1)
    return [_redact_all(r, secrets) for r in results], duration_ms
