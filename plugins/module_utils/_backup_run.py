# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the backup and restore runbooks, as plain functions of plain data.

The ``backup`` role's entry points (backup, restore, restore_drill, pitr_drill, restore_pitr)
run modules and the tool ``bosun-wal``; what decides (what a run's JSON result says, whether a
restore or a recovery is refused, which database or cluster is the target, the arguments of
the recovery, the drill's metrics and reports) is here, reached by the filters of
``plugins/filter/backup_run.py`` and by the unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils import _maintenance_run as run

JOBS = ("backup", "restore_drill")
PITR_MODES = ("scratch", "replace")
DRILL_KEYS = ("db", "tables", "min_rows", "sql", "jobs")


class BackupRunError(ValueError):
    """An input a decision cannot use; the message names it."""


def _dict(value):
    return value if isinstance(value, dict) else {}


def _text(value):
    return "" if value is None else str(value)


def _failed(results):
    return [r for r in results if r.get("failed")]


def run_result(work, job, host, finished):
    """The JSON result of backup.yml (job backup) or restore_drill.yml (job restore_drill) on a
    host, from the loop's registered results (None when the loop never ran)."""
    if job not in JOBS:
        raise BackupRunError("run_result: job must be one of %s, got %r" % (", ".join(JOBS), job))
    ran = isinstance(work, dict) and isinstance(work.get("results"), list)
    results = [_dict(r) for r in (work or {}).get("results") or []] if ran else []
    failed = _failed(results)
    out = dict(job=job, host=host, finished=finished, ok=ran and not failed)
    out.update(run.summary(work if ran else {}, job))
    out["errors"] = [r.get("msg") for r in failed]
    return out


def drills(items, restore_jobs=1):
    """The drills to run: each a name or a mapping {db, tables, min_rows, sql, jobs}, made whole."""
    if items is None:
        items = []
    if not isinstance(items, list):
        raise BackupRunError("drills: give a list of database names or {db, tables, min_rows, sql, jobs}")
    out = []
    for index, given in enumerate(items):
        item = dict(db=given) if isinstance(given, str) else given
        if not isinstance(item, dict) or not isinstance(item.get("db"), str) or not item["db"]:
            raise BackupRunError("drills: item %d needs a database name (db)" % index)
        out.append(
            dict(
                db=item["db"],
                tables=list(item.get("tables") or []),
                min_rows=dict(item.get("min_rows") or {}),
                sql=list(item.get("sql") or []),
                jobs=int(item.get("jobs") or restore_jobs),
            )
        )
    return out


def restore_request(db, target_db="", hosts=None):
    """The restore asked for: source database, target database, the lock's job text, and the
    refusal ('' when none) of a request without a database or for more than one host."""
    db = _text(db)
    target = _text(target_db) or db
    hosts = list(hosts or [])
    refused = ""
    if not db or len(hosts) != 1:
        refused = (
            "Give -e bosun_backup_restore_db=DATABASE (the database whose backup to restore) and limit the "
            "play to one host with -l (hosts in this play: %s)." % ", ".join(hosts)
        )
    return dict(
        db=db,
        target=target,
        refused=refused,
        lock_job="restore %s into %s" % (db or "?", target or "?"),
    )


def restore_verdict(plan, target, confirm, host):
    """'' when the restore may go on; else why not: the target exists and its name was not
    repeated as the confirmation."""
    plan = _dict(plan)
    if not plan.get("target_exists") or _text(confirm) == _text(target):
        return ""
    backup = _dict(plan.get("backup"))
    return (
        "Database %s exists on %s. Restoring %s (taken %s) replaces it: repeat its name with "
        "-e bosun_backup_restore_confirm=%s, or restore into a new database with "
        "-e bosun_backup_restore_target_db=NAME."
        % (target, host, backup.get("path", "?"), backup.get("finished", "?"), target)
    )


def restore_summary(plan, result, safety, target):
    """The restore's one-line report."""
    backups = _dict(safety).get("backups")
    text = "Restored %s into %s in %s s." % (
        _dict(_dict(plan).get("backup")).get("path", "?"),
        target,
        _dict(result).get("restore_seconds", "?"),
    )
    if backups:
        text += " The replaced database was saved as %s" % _dict(backups[0]).get("path", "?")
    return text


def pitr_request(
    host, mode="scratch", target_time="", target_lsn="", target_name="", exclusive=False, backup="", confirm=""
):
    """The recovery asked for: mode, bosun-wal's target arguments, the lock's job text and the
    refusal ('' when none)."""
    mode = _text(mode)
    targets = [
        ("--target-time", _text(target_time)),
        ("--target-lsn", _text(target_lsn)),
        ("--target-name", _text(target_name)),
    ]
    given = [(flag, value) for flag, value in targets if value]
    problems = []
    if mode not in PITR_MODES:
        problems.append("bosun_pitr_mode must be scratch or replace, got %r" % mode)
    if len(given) > 1:
        problems.append(
            "give at most one of bosun_pitr_target_time, _lsn, _name (got %s)"
            % ", ".join(flag[2:] for flag, _v in given)
        )
    if mode == "replace" and _text(confirm) != "replace " + host:
        problems.append("replacing the cluster of %s needs -e \"bosun_pitr_confirm='replace %s'\"" % (host, host))
    args = []
    for flag, value in given:
        args += [flag, value]
    if exclusive:
        args.append("--target-exclusive")
    if _text(backup):
        args += ["--backup", _text(backup)]
    return dict(mode=mode, target_args=args, refused="; ".join(problems), lock_job="restore_pitr %s" % mode)


def pitr_cluster_required(mode, data_dir="", service="", config_file=""):
    """Whether the live cluster must be found on the host: not when every path it gives was set."""
    return not (bool(data_dir) and (mode == "scratch" or (bool(service) and bool(config_file))))


def pitr_plan(
    request,
    live=None,
    data_dir="",
    service="",
    config_file="",
    port=0,
    scratch_dir="",
    scratch_port=55432,
    socket_dir="/var/run/postgresql",
    stamp="",
):
    """Where the recovery goes: the data directory, port, unit, bosun-wal's mode arguments and,
    for replace, where the old data directory is kept (<live>.pre-pitr-<stamp>)."""
    request = _dict(request)
    live = _dict(live)
    mode = request.get("mode")
    live_data = _text(data_dir) or _text(live.get("data_dir"))
    if not live_data:
        raise BackupRunError("pitr_plan: no live data directory (set bosun_pitr_data_dir)")
    plan = dict(
        mode=mode,
        live_data_dir=live_data,
        service=_text(service) or _text(live.get("service")),
        target_args=list(request.get("target_args") or []),
    )
    if mode == "replace":
        config = _text(config_file) or _text(live.get("config_file"))
        if not config or not plan["service"]:
            raise BackupRunError("pitr_plan: replace needs the live cluster's unit and configuration file")
        plan.update(
            data_dir=live_data,
            port=int(port or live.get("port") or 5432),
            mode_args=["--config-file", config, "--socket-dir", _text(socket_dir), "--stop-after"],
            aside="%s.pre-pitr-%s" % (live_data, stamp),
        )
    elif mode == "scratch":
        if not _text(scratch_dir):
            raise BackupRunError("pitr_plan: scratch needs a scratch directory")
        plan.update(data_dir=_text(scratch_dir), port=int(scratch_port), mode_args=["--protect", live_data], aside=None)
    else:
        raise BackupRunError("pitr_plan: mode must be scratch or replace, got %r" % mode)
    return plan


def pitr_result(recovery, plan, host, finished):
    """The JSON result of restore_pitr.yml: bosun-wal's report and what this run chose."""
    plan = _dict(plan)
    out = dict(_dict(recovery))
    out.update(job="restore_pitr", host=host, mode=plan.get("mode"), old_data_dir=plan.get("aside"), finished=finished)
    return out


def pitr_report(recovery, plan):
    """restore_pitr.yml's one-line report."""
    recovery, plan = _dict(recovery), _dict(plan)
    replace = plan.get("mode") == "replace"
    text = "Recovered %s from %s in %s s: %s; last transaction %s; new timeline %s." % (
        "production" if replace else "a scratch cluster",
        recovery.get("backup", "?"),
        recovery.get("recovery_seconds", "?"),
        recovery.get("stop") or "end of the archive reached",
        recovery.get("last_transaction_time") or "?",
        recovery.get("timeline") if recovery.get("timeline") is not None else "?",
    )
    if replace:
        return text + " The old data directory is kept at %s." % plan.get("aside")
    return text + " Connect with: psql -h %s -p %s -U postgres" % (recovery.get("socket_dir", "?"), plan.get("port"))


def _gauge(value):
    if value is None or _text(value) in ("", "None"):
        return "NaN"
    return _text(value)


def pitr_drill_metrics(result, timestamp):
    """The PITR drill's textfile metrics (status, last run, RPO, RTO)."""
    result = _dict(result)
    lines = [
        "# HELP bosun_pitr_drill_last_status 1 if the last PITR drill passed, 0 if it failed.",
        "# TYPE bosun_pitr_drill_last_status gauge",
        "bosun_pitr_drill_last_status %d" % (1 if _ok(result.get("ok")) else 0),
        "# HELP bosun_pitr_drill_last_run_timestamp_seconds Unix time of the last PITR drill.",
        "# TYPE bosun_pitr_drill_last_run_timestamp_seconds gauge",
        "bosun_pitr_drill_last_run_timestamp_seconds %s" % round(float(timestamp), 3),
        "# HELP bosun_pitr_drill_rpo_seconds Seconds from the last marker's commit until its WAL was archived.",
        "# TYPE bosun_pitr_drill_rpo_seconds gauge",
        "bosun_pitr_drill_rpo_seconds %s" % _gauge(result.get("rpo_seconds")),
        "# HELP bosun_pitr_drill_rto_seconds Seconds the drill's recovery took (restore, replay, promote).",
        "# TYPE bosun_pitr_drill_rto_seconds gauge",
        "bosun_pitr_drill_rto_seconds %s" % _gauge(result.get("rto_seconds")),
    ]
    return "\n".join(lines) + "\n"


def _ok(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def pitr_drill_report(result):
    """pitr_drill.yml's one-line report."""
    result = _dict(result)
    return "PITR drill %s: recovered to %s in %s s (RTO) from %s; RPO %s s (archive_timeout %s)" % (
        "passed" if _ok(result.get("ok")) else "FAILED",
        result.get("target_time"),
        result.get("rto_seconds"),
        _dict(result.get("recovery")).get("backup", "?"),
        result.get("rpo_seconds"),
        result.get("archive_timeout"),
    )
