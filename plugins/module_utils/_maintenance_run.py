# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of a maintenance job run, as plain functions of plain data.

The ``maintenance`` role's tasks run modules and record what happened on each host;
what decides (which window applies, what a failure means, which health checks run, which
releases go, what each job reports and what the run's outcome is) is here, reached by the
filters of ``plugins/filter/maintenance_run.py`` and by the unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
LOST_MSG = "unreachable or failed before the job started"
TIER_CHECKS = {
    "db": ("postgres", {"name": "PostgreSQL", "type": "postgres"}),
    "cache": ("redis", {"name": "Redis", "type": "redis"}),
    "lb": ("nginx", {"name": "nginx config", "type": "nginx_config"}),
    "app": ("app", {"name": "app health", "type": "http", "http": {"url": "http://127.0.0.1:8000/health"}}),
    "search": ("elasticsearch", {"name": "Elasticsearch", "type": "elasticsearch"}),
}
JOBS = (
    "backup",
    "restore_drill",
    "basebackup",
    "pitr_drill",
    "vacuum",
    "db_report",
    "cache",
    "host",
    "certs",
    "cert_renew",
    "search_health",
    "search_shards",
    "search_cleanup",
)
VACUUM_KEYS = ("vacuumed", "skipped", "elapsed", "budget_exhausted", "tables", "blocking_transactions")
REPORT_KEYS = (
    "slow_queries",
    "seq_scan_tables",
    "unused_indexes",
    "invalid_indexes",
    "connections",
    "reindexed",
    "reindex_failed",
    "terminated",
    "notes",
)
PITR_KEYS = ("ok", "target_time", "rpo_seconds", "rto_seconds", "archive_timeout")
CHECK_KEYS = ("name", "status", "message", "value")
RESULT_NOISE = ("changed", "failed", "invocation")


class MaintenanceRunError(ValueError):
    """An input a decision cannot use; the message names it."""


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return list(value) if isinstance(value, (list, tuple)) else []


def _pick(mapping, keys):
    return dict((k, v) for k, v in _dict(mapping).items() if k in keys)


def _merge(base, override):
    """Recursive merge of two dicts: override wins, nested dicts are merged."""
    out = dict(base)
    for key, value in _dict(override).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def window_spec(job, window=None, catalogue=None):
    """The window of a job: ``window`` when given (not None), else the window of the first
    job of the catalogue whose tags (default: its name) include ``job``, else '' (any time)."""
    if window is not None:
        return str(window)
    for entry in (_dict(e) for e in _list(catalogue)):
        tags = entry.get("tags") or [entry.get("name")]
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",")]
        if job in _list(tags):
            return entry.get("window") or ""
    return ""


def failure(host, task=None, result=None):
    """What a rescue records: ``{error: {host, task, msg}, refused}``; a failure of the
    platform lock (another job holds it) is a refusal."""
    task = _dict(task)
    result = _dict(result)
    return dict(
        error=dict(host=host, task=task.get("name") or "?", msg=result.get("msg") or "failed"),
        refused="platform_lock" in str(task.get("action") or ""),
    )


def flight(previous, phase, health=None):
    """The health verdicts of a host so far, with ``phase`` (pre or post) from ``health``
    (a health_check result; skipped when the check did not run)."""
    if phase not in ("pre", "post"):
        raise MaintenanceRunError("flight: phase must be pre or post, got %r" % (phase,))
    health = _dict(health)
    status = health.get("status") or "skipped"
    if health.get("skipped"):
        status = "skipped"
    out = dict(_dict(previous))
    out[phase] = dict(status=status, msg=health.get("msg") or "")
    return out


def health_checks(tier="", disk_paths=None, warn=80, crit=90, overrides=None, elasticsearch=None, checks=None):
    """The checks of a pre- or post-flight: ``checks`` when given (non-empty), else one disk
    check per path plus the tier's service check, merged with its override."""
    if checks:
        return _list(checks)
    out = [dict(type="disk", disk=dict(path=path), warn=warn, crit=crit) for path in _list(disk_paths)]
    if tier:
        if tier not in TIER_CHECKS:
            raise MaintenanceRunError(
                "health_checks: tier must be one of %s, got %r" % (", ".join(sorted(TIER_CHECKS)), tier)
            )
        name, base = TIER_CHECKS[tier]
        if tier == "search":
            base = dict(base, elasticsearch=dict(_dict(elasticsearch)))
        out.append(_merge(base, _dict(overrides).get(name)))
    return out


def cert_checks(checks=None, server_name="", warn=30, crit=14):
    """The TLS certificate checks of the certs job (default: 127.0.0.1:443 with the host's
    name), each with the job's warn and crit days."""
    checks = _list(checks) or [
        dict(name="TLS cert", tls_cert=dict(host="127.0.0.1", port=443, server_name=server_name))
    ]
    return [dict(_dict(check), type="tls_cert", warn=warn, crit=crit) for check in checks]


def old_releases(releases, keep, links=None):
    """The release directories beyond the newest ``keep`` (by mtime), except those a link
    (current, previous) points to. ``releases``: find's files; ``links``: stat results."""
    keep = int(keep)
    if keep < 0:
        raise MaintenanceRunError("old_releases: keep must be 0 or more, got %d" % keep)
    targets = set()
    for link in _list(links):
        source = _dict(_dict(link).get("stat")).get("lnk_source")
        if source:
            targets.add(source)
    newest = sorted(_list(releases), key=lambda f: _dict(f).get("mtime") or 0, reverse=True)
    return [f["path"] for f in newest[keep:] if f.get("path") and f["path"] not in targets]


def _results(work):
    return [_dict(r) for r in _list(_dict(work).get("results"))]


def _flat(results, key):
    out = []
    for r in results:
        out.extend(_list(r.get(key)))
    return out


def _by_item(work, keys):
    return dict((r.get("item"), _pick(r, keys)) for r in _results(work))


def summary(work, job, **extra):
    """What the result says a job did on a host, from the job's registered results."""
    work = _dict(work)
    if job == "backup":
        results = _results(work)
        return dict(
            backups=_flat(results, "backups"), deleted=_flat(results, "deleted"), corrupt=_flat(results, "corrupt")
        )
    if job == "restore_drill":
        results = _results(work)
        return dict(
            backups=[r.get("backup", {}) for r in results],
            restore_seconds=[r.get("restore_seconds") for r in results],
            checks=[r.get("checks", []) for r in results],
        )
    if job == "basebackup":
        return dict(
            backup=work.get("backup"),
            kept=work.get("kept"),
            deleted=work.get("deleted"),
            corrupt=work.get("corrupt"),
            wal_kept_from=work.get("wal_kept_from"),
            wal_deleted=len(_list(work.get("wal_deleted"))),
        )
    if job == "pitr_drill":
        return dict(_pick(work, PITR_KEYS), backup=_dict(work.get("recovery")).get("backup"))
    if job == "vacuum":
        return _by_item(work, VACUUM_KEYS)
    if job == "db_report":
        return _by_item(work, REPORT_KEYS)
    if job == "cache":
        return dict(group=extra.get("group"), patterns=_list(work.get("results")))
    if job == "host":
        journal = [line for line in str(_dict(work.get("journal")).get("stderr") or "").split("\n") if "freed" in line]
        debs = _list(_dict(work.get("debs")).get("files"))
        logs = _list(_dict(work.get("logs")).get("files"))
        removed = [r.get("path") for r in _results(work.get("releases")) if r.get("path")]
        return dict(
            journal=journal[0] if journal else "",
            apt_cache_files=len(debs),
            apt_cache_bytes=sum(_dict(f).get("size") or 0 for f in debs),
            old_logs=len(logs),
            old_logs_bytes=sum(_dict(f).get("size") or 0 for f in logs),
            releases_removed=removed,
        )
    if job == "certs":
        return dict(
            (c.get("name"), _pick(c, ("status", "value", "message")))
            for c in (_dict(c) for c in _list(work.get("checks")))
        )
    if job == "cert_renew":
        decision = _dict(work.get("decision"))
        issued = _dict(work.get("issued"))

        def first(key):
            return issued[key] if key in issued else decision.get(key)

        return dict(
            renewed=bool(decision.get("renew")) and not extra.get("check_mode", False),
            reason=decision.get("reason", ""),
            days_left=first("days_left"),
            not_after=first("not_after"),
            serial=first("serial"),
        )
    if job == "search_health":
        return [
            _pick(c, CHECK_KEYS)
            for c in (_dict(c) for c in _list(work.get("checks")))
            if c.get("type") == "elasticsearch"
        ]
    if job == "search_shards":
        return dict((k, v) for k, v in work.items() if k not in RESULT_NOISE)
    if job == "search_cleanup":
        cleanup = _results(work.get("cleanup"))
        merged = _flat(_results(work.get("merge")), "merged")
        return dict(
            deleted=_flat(cleanup, "deleted"),
            would_delete=_flat(cleanup, "would_delete"),
            snapshots=[_dict(r.get("snapshot")).get("name") for r in cleanup if r.get("snapshot")],
            merged=[_dict(m).get("index") for m in merged],
        )
    raise MaintenanceRunError("summary: unknown job %r (one of %s)" % (job, ", ".join(JOBS)))


def _parse(stamp, what):
    try:
        return datetime.datetime.strptime(str(stamp), STAMP)
    except ValueError:
        raise MaintenanceRunError(
            "result: %s %r is not a time like 2026-01-31T02:00:00.000000Z" % (what, stamp)
        ) from None


def result(
    job,
    started,
    finished,
    window=None,
    hosts=None,
    active=None,
    flights=None,
    summaries=None,
    errors=None,
    refused=None,
    holder=None,
    skipped=False,
    previous=None,
    name="",
    run_by="hand",
    controller="",
    check_mode=False,
):
    """The JSON result of a job run. ``hosts``: every host of the play; ``active``: those
    still running; ``flights``, ``summaries``, ``errors`` (None or {} when the host had none) and
    ``refused`` are per host, in the order of ``hosts``."""
    hosts = [str(h) for h in _list(hosts)]
    active = set(str(h) for h in _list(active))
    per_host = [_list(v) for v in (flights, summaries, errors, refused)]
    for values, what in zip(per_host, ("flights", "summaries", "errors", "refused")):
        if values and len(values) != len(hosts):
            raise MaintenanceRunError("result: %s has %d entries for %d hosts" % (what, len(values), len(hosts)))
    flights, summaries, host_errors, host_refused = (v or [None] * len(hosts) for v in per_host)
    lost = [h for h in hosts if h not in active]
    all_errors = [e for e in host_errors if isinstance(e, dict) and e]
    all_errors += [dict(task="?", msg=LOST_MSG, host=h) for h in lost]
    was_refused = any(bool(r) for r in host_refused)
    holder = _dict(holder)
    window = _dict(window)
    if skipped:
        status, message = "skipped: outside window", window.get("reason", "")
    elif was_refused:
        status = "refused: platform lock held"
        message = "the platform lock is held by %s running %s since %s" % (
            holder.get("owner") or "?",
            holder.get("job") or "?",
            holder.get("started") or "?",
        )
    elif all_errors:
        status = "failed"
        message = "; ".join("%s: %s: %s" % (e.get("host"), e.get("task"), e.get("msg")) for e in all_errors)
    else:
        status, message = "ok", "done"
    duration = (_parse(finished, "finished") - _parse(started, "started")).total_seconds()
    return {
        "job": name or job,
        "tags": [job],
        "status": status,
        "message": message,
        "run_by": run_by,
        "controller": controller,
        "check_mode": bool(check_mode),
        "started": started,
        "finished": finished,
        "duration_seconds": round(duration, 3),
        "window": window,
        "hosts": hosts,
        "lock_holder": holder if was_refused else None,
        "flight": dict((h, _dict(f)) for h, f in zip(hosts, flights)),
        "work": dict((h, s if s is not None else {}) for h, s in zip(hosts, summaries)),
        "errors": all_errors,
        "last_success": finished if status == "ok" else _dict(previous).get("last_success"),
    }


def succeeded(run):
    """Whether a job's result lets the play end well (ok, or skipped outside its window)."""
    status = str(_dict(run).get("status") or "")
    return status == "ok" or status.startswith("skipped")
