# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What bosun.platform.health_check does, without Ansible: plan, run, aggregate."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks import http_check, plan, runner
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import (
    failure_message,
    summarize,
    summary_message,
    worst,
)

PlanError = plan.PlanError


def secrets_in(params):
    """Secrets in options that are not no_log as a whole: credentials in http URLs and the
    values of sensitive headers. The module masks them everywhere, from its invocation record
    on (module.SecretMaskingModule). Tolerates parameters that failed validation."""
    found = set()
    for check in params.get("checks") or []:
        if isinstance(check, dict) and isinstance(check.get("http"), dict):
            found.update(s for s in http_check.secrets(check["http"]) if s)
    return sorted(found)


def execute(params):
    """Run the checks in ``params`` (the module's parameters).

    Returns (report, warnings, failure): ``report`` holds checks, status, summary and
    duration_ms; ``failure`` is the message when ``fail_on`` is reached, else "".
    Raises PlanError when the checks cannot run as given.
    """
    plans, warnings = plan.build(params)
    results, duration_ms = runner.run_all(
        plans, concurrency=params.get("concurrency") or 10, overall_timeout=params.get("overall_timeout") or 60.0
    )
    report = dict(
        checks=results,
        status=worst(r["status"] for r in results),
        summary=summarize(results),
        duration_ms=duration_ms,
        msg=summary_message(results),
    )
    return report, warnings, failure_message(results, params.get("fail_on") or "crit")
