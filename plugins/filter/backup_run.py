# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the ``backup`` role: the decisions of the backup and restore runbooks.

Each filter is a thin wrapper over ``plugins/module_utils/_backup_run.py``, where the logic
and its unit tests are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _backup_run as run


def _wrap(func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except run.BackupRunError as exc:
            raise AnsibleFilterError("backup_%s" % exc) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def backup_run_result(work, job, host, finished):
    return _wrap(run.run_result)(work, job, host, finished)


def backup_drills(items, restore_jobs=1):
    return _wrap(run.drills)(items, restore_jobs=restore_jobs)


def backup_restore_request(db, target_db="", hosts=None):
    return run.restore_request(db, target_db=target_db, hosts=hosts)


def backup_restore_verdict(plan, target, confirm, host):
    return run.restore_verdict(plan, target, confirm, host)


def backup_restore_summary(plan, result, safety, target):
    return run.restore_summary(plan, result, safety, target)


def backup_pitr_request(host, **kwargs):
    return run.pitr_request(host, **kwargs)


def backup_pitr_cluster_required(mode, data_dir="", service="", config_file=""):
    return run.pitr_cluster_required(mode, data_dir=data_dir, service=service, config_file=config_file)


def backup_pitr_plan(request, **kwargs):
    return _wrap(run.pitr_plan)(request, **kwargs)


def backup_pitr_result(recovery, plan, host, finished):
    return run.pitr_result(recovery, plan, host, finished)


def backup_pitr_report(recovery, plan):
    return run.pitr_report(recovery, plan)


def backup_pitr_drill_metrics(result, timestamp):
    return run.pitr_drill_metrics(result, timestamp)


def backup_pitr_drill_report(result):
    return run.pitr_drill_report(result)


class FilterModule:
    def filters(self):
        return dict(
            backup_run_result=backup_run_result,
            backup_drills=backup_drills,
            backup_restore_request=backup_restore_request,
            backup_restore_verdict=backup_restore_verdict,
            backup_restore_summary=backup_restore_summary,
            backup_pitr_request=backup_pitr_request,
            backup_pitr_cluster_required=backup_pitr_cluster_required,
            backup_pitr_plan=backup_pitr_plan,
            backup_pitr_result=backup_pitr_result,
            backup_pitr_report=backup_pitr_report,
            backup_pitr_drill_metrics=backup_pitr_drill_metrics,
            backup_pitr_drill_report=backup_pitr_drill_report,
        )
