# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the ``maintenance`` role: the decisions of a maintenance job run.

Each filter is a thin wrapper over ``plugins/module_utils/_maintenance_run.py``, where the
logic and its unit tests are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _maintenance_run as run


def _wrap(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except run.MaintenanceRunError as exc:
            raise AnsibleFilterError("maintenance_%s" % exc) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def maintenance_window_spec(job, window=None, catalogue=None):
    return run.window_spec(job, window=window, catalogue=catalogue)


def maintenance_failure(host, task=None, result=None):
    return run.failure(host, task=task, result=result)


def maintenance_flight(previous, phase, health=None):
    return _wrap(run.flight)(previous, phase, health=health)


def maintenance_health_checks(tier="", **kwargs):
    return _wrap(run.health_checks)(tier, **kwargs)


def maintenance_cert_checks(checks=None, **kwargs):
    return run.cert_checks(checks, **kwargs)


def maintenance_old_releases(releases, keep, links=None):
    return _wrap(run.old_releases)(releases, keep, links=links)


def maintenance_summary(work, job, **extra):
    return _wrap(run.summary)(work, job, **extra)


def maintenance_result(job, **kwargs):
    return _wrap(run.result)(job, **kwargs)


def maintenance_succeeded(result):
    return run.succeeded(result)


class FilterModule:
    def filters(self):
        return dict(
            maintenance_window_spec=maintenance_window_spec,
            maintenance_failure=maintenance_failure,
            maintenance_flight=maintenance_flight,
            maintenance_health_checks=maintenance_health_checks,
            maintenance_cert_checks=maintenance_cert_checks,
            maintenance_old_releases=maintenance_old_releases,
            maintenance_summary=maintenance_summary,
            maintenance_result=maintenance_result,
            maintenance_succeeded=maintenance_succeeded,
        )
