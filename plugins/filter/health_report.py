# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the health report (roles/health, playbooks/health.yml).

- ``health_checks``: a host's groups and the role's settings -> the checks to run on it, those
  that need root apart (the logic is in module_utils/_health_plan.py).
- ``health_report``: the hosts of a play and their registered results -> the report dict
  (also the JSON file): status per host and tier, the items to show, recommendations.
- ``health_report_text``: the report dict -> the text operators read.
- ``health_report_metrics``: the report dict -> Prometheus textfile metrics.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import (
    SEVERITY,
    STATUSES,
    reaches,
    summarize,
    worst,
)
from ansible_collections.bosun.platform.plugins.module_utils._health_plan import HealthPlanError, host_checks
from ansible_collections.bosun.platform.plugins.module_utils._io import render_metrics

ICONS = dict(ok="\u2705", warn="\u26a0\ufe0f", unknown="\u2754", crit="\U0001f534")

DEFAULT_TIERS = [
    dict(group="lb", label="Load balancer"),
    dict(group="app", label="Application"),
    dict(group="db", label="Database"),
    dict(group="cache", label="Cache"),
    dict(group="search", label="Search"),
    dict(group="monitor", label="Monitoring"),
]
OTHER_TIER = dict(group="", label="Hosts")

ADVICE = {
    ("disk", "used"): "free space on the filesystem (old releases, logs, local backups) or grow the volume",
    ("disk", "inodes"): "too many small files: clean caches, sessions or mail queues",
    ("memory", "used"): "find what uses the memory (ps, smem) or give the Droplet more",
    ("load", "per_core"): "find the busy processes (top) or add CPUs / another app host",
    ("postgres", "connections"): "pool connections with PgBouncer or raise max_connections",
    (
        "postgres",
        "archive_failing",
    ): "WAL archiving fails: fix archive_command or its destination before pg_wal fills the disk",
    ("postgres", "archive_age"): "no WAL archived lately: check the archiver and archive_timeout",
    ("postgres", "replication_lag"): "the replica is behind: check the network and the primary's write load",
    (
        "postgres",
        "oldest_transaction",
    ): "a transaction has been open for long: find it in pg_stat_activity, it holds back vacuum",
    ("redis", "memory"): "raise maxmemory or review the eviction policy and key TTLs",
    ("redis", "evictions"): "the cache evicts keys nearly as fast as it is read: raise maxmemory or cache less",
    ("redis", "hit_rate"): "low cache hit rate: review TTLs and key patterns, or warm the cache after flushes",
    ("redis", "rejected_connections"): "Redis rejected clients: raise maxclients or fix connection leaks in the app",
    ("redis", "master_link"): "the replica lost its master: check replication and the network",
    ("elasticsearch", "status"): "shards are unassigned: ask GET _cluster/allocation/explain why",
    ("elasticsearch", "heap"): "high JVM memory pressure: fewer shards, lighter queries or a bigger heap",
    ("elasticsearch", "disk"): "disk above a watermark: delete old indices or grow the data volume",
    ("elasticsearch", "nodes"): "not the expected nodes in the cluster: check each node's service and the network",
    ("elasticsearch", "pending_tasks"): "the master falls behind with cluster changes: see GET _cluster/pending_tasks",
    ("tls_cert", "days"): "renew the certificate before it expires",
    ("http", "latency"): "slow responses: look at the app's workers, database queries and cache hit rate",
    "http": "check the service behind the URL and its logs",
    "tcp": "check that the service is running and listening",
    "tls_cert": "check the certificate, its chain and the name it is for",
    "postgres": "check the server, the credentials and pg_hba.conf",
    "redis": "check the server, the credentials and its ACL",
    "elasticsearch": "check the node, the credentials and the CA of its HTTPS certificate",
    "systemd": "see systemctl status and journalctl -u for the unit",
    "command": "run the command by hand to see why it fails",
    "nginx_config": "fix the configuration (nginx -t) before the next reload",
    "host": "check that the host is up and reachable over SSH",
}


def _tiers(tiers):
    out = []
    for tier in tiers or DEFAULT_TIERS:
        if not isinstance(tier, dict) or "group" not in tier:
            raise AnsibleFilterError("health_report: each tier needs a group (and a label), got %r" % (tier,))
        out.append(dict(group=str(tier["group"]), label=str(tier.get("label") or tier["group"])))
    return out


def _host_tier(group_names, tiers):
    for tier in tiers:
        if tier["group"] in (group_names or []):
            return tier["group"]
    return OTHER_TIER["group"]


def _get(mapping, key, default=None):
    try:
        return mapping.get(key, default)
    except AttributeError:
        return default


def _result_error(result):
    """Why a registered health_check result holds no checks, or None."""
    if not result:
        return "no health_check result (the host failed before the check ran)"
    if result.get("unreachable"):
        return "unreachable: %s" % (result.get("msg") or "no connection")
    if "checks" not in result:
        return "health_check failed: %s" % (result.get("msg") or "no result")
    return None


def _host_entry(host, hv, result_vars, tiers):
    """One host's entry from its registered results (several tasks: their checks in order;
    a skipped task adds nothing, the first error makes the host crit)."""
    groups = list(_get(hv, "group_names") or [])
    entry = dict(
        host=host, groups=groups, tier=_host_tier(groups, tiers), checks=[], status="crit", duration_ms=None, error=None
    )
    results = [_get(hv, name) for name in result_vars]
    ran = [r for r in results if not (isinstance(r, dict) and r.get("skipped"))]
    errors = [_result_error(r) for r in ran] or [_result_error(None)]
    error = next((e for e in errors if e), None)
    if error:
        entry["error"] = error
        return entry
    entry["checks"] = [c for r in ran for c in r["checks"]]
    durations = [r.get("duration_ms") for r in ran if r.get("duration_ms") is not None]
    entry["duration_ms"] = round(sum(durations), 1) if durations else None
    entry["status"] = worst(c["status"] for c in entry["checks"])
    return entry


def _items_of(host, check, host_tier):
    """What the report shows of one check: [(tier group, status, text, advice key)]."""
    labels = check.get("labels") or {}
    tier = labels.get("tier") or host_tier
    tier_check = bool(labels.get("tier"))
    metrics = check.get("metrics") or []
    shown = [m for m in metrics if m.get("headline") or m["status"] != "ok"]
    metric_worst = worst(m["status"] for m in metrics) if metrics else "ok"
    items = []
    if SEVERITY[check["status"]] > SEVERITY[metric_worst] or not shown:
        if check["status"] != "ok" or tier_check:
            message = check["message"]
            if check["status"] == "ok":
                text = check["name"]
            elif message.lower().startswith(check["name"].lower()):
                text = message
            else:
                text = "%s: %s" % (check["name"], message)
            items.append((tier, check["status"], text, check["name"], check["type"]))
        return items
    for metric in shown:
        if metric["status"] == "ok" and not tier_check:
            continue  # host resources: shown only when not ok
        items.append((tier, metric["status"], metric["text"], metric["text"], (check["type"], metric["name"])))
    return items


def health_report(
    hosts, hostvars, *, result_var="__bosun_health_result", tiers=None, generated_at=None, fail_on="crit"
):
    """Build the report dict from the play's hosts and their registered health_check results."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("health_report expects the list of hosts (ansible_play_hosts_all) as input")
    tiers = _tiers(tiers)
    labels = dict((t["group"], t["label"]) for t in tiers)
    labels[OTHER_TIER["group"]] = OTHER_TIER["label"]
    if generated_at is None:
        generated_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    result_vars = [result_var] if isinstance(result_var, str) else list(result_var or [])
    if not result_vars:
        raise AnsibleFilterError("health_report: result_var names no variable")
    entries = [_host_entry(h, hostvars[h] if h in hostvars else {}, result_vars, tiers) for h in hosts]
    rows = {}  # tier group -> list of items
    for entry in entries:
        if entry["error"]:
            rows.setdefault(entry["tier"], []).append(
                dict(
                    host=entry["host"],
                    status="crit",
                    text="%s %s" % (entry["host"], entry["error"]),
                    label=entry["host"],
                    check=None,
                    advice=ADVICE["host"],
                )
            )
            continue
        for check in entry["checks"]:
            for tier, status, text, label, key in _items_of(entry["host"], check, entry["tier"]):
                advice = ADVICE.get(key) or ADVICE.get(key[0] if isinstance(key, tuple) else key) or ""
                rows.setdefault(tier, []).append(
                    dict(host=entry["host"], check=check["name"], status=status, text=text, label=label, advice=advice)
                )
    # host names when a tier holds more than one host
    for items in rows.values():
        if len(set(i["host"] for i in items)) > 1:
            for item in items:
                for key in ("text", "label"):
                    if item[key] != item["host"] and not item[key].startswith(item["host"] + " "):
                        item[key] = "%s %s" % (item["host"], item[key])

    order = [t["group"] for t in tiers] + [OTHER_TIER["group"]]
    tier_rows = [
        dict(group=g, label=labels.get(g, g), status=worst(i["status"] for i in rows[g]), items=rows[g])
        for g in order
        if g in rows
    ]
    tier_rows += [
        dict(group=g, label=labels.get(g, g), status=worst(i["status"] for i in rows[g]), items=rows[g])
        for g in rows
        if g not in order
    ]

    all_checks = [c for e in entries for c in e["checks"]]
    summary = summarize(all_checks)
    summary["hosts"] = len(entries)
    summary["hosts_failed"] = sum(1 for e in entries if e["error"])
    status = worst([c["status"] for c in all_checks] + ["crit" for e in entries if e["error"]])
    recommendations = []
    seen = set()
    for row in tier_rows:
        for item in sorted(row["items"], key=lambda i: -SEVERITY[i["status"]]):
            if item["status"] == "ok" or not item["advice"]:
                continue
            line = "%s: %s" % (item["label"], item["advice"])
            if line not in seen:
                seen.add(line)
                recommendations.append(dict(status=item["status"], text=line))
    recommendations.sort(key=lambda r: -SEVERITY[r["status"]])
    failing = [
        dict(
            host=e["host"],
            check=c["name"],
            status=c["status"],
            message=c["message"],
            text="%s %s %s: %s" % (e["host"], c["name"], c["status"], c["message"]),
        )
        for e in entries
        for c in e["checks"]
        if c["status"] != "ok"
    ]
    failing += [
        dict(
            host=e["host"], check=None, status="crit", message=e["error"], text="%s crit: %s" % (e["host"], e["error"])
        )
        for e in entries
        if e["error"]
    ]
    failing.sort(key=lambda f: -SEVERITY[f["status"]])
    reasons = [f["text"] for f in failing if reaches(f["status"], fail_on)]
    return dict(
        generated_at=generated_at,
        status=status,
        fail_on=fail_on,
        failed=reaches(status, fail_on),
        summary=summary,
        tiers=tier_rows,
        recommendations=recommendations,
        failing=failing,
        reasons=reasons,
        hosts=dict((e["host"], dict((k, v) for k, v in e.items() if k != "host")) for e in entries),
    )


def _when(generated_at):
    try:
        stamp = datetime.datetime.strptime(generated_at, "%Y-%m-%dT%H:%M:%SZ")
        return stamp.strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return str(generated_at)


def health_report_text(report, width=16):
    """The report as text, in the style of the operators' status report."""
    if not isinstance(report, dict) or "tiers" not in report:
        raise AnsibleFilterError("health_report_text expects the dict made by bosun.platform.health_report")
    lines = ["Infrastructure Status Report  %s" % _when(report.get("generated_at"))]
    for row in report["tiers"]:
        cells = "  ".join("%s %s" % (ICONS[i["status"]], i["text"]) for i in row["items"])
        lines.append(("%s:" % row["label"]).ljust(width) + cells)
    summary = report["summary"]
    counts = ", ".join("%d %s" % (summary[s], s) for s in STATUSES if summary.get(s))
    hosts = "%d host%s" % (summary["hosts"], "" if summary["hosts"] == 1 else "s")
    if summary.get("hosts_failed"):
        hosts += " (%d without a result)" % summary["hosts_failed"]
    lines.append(
        "Overall:".ljust(width)
        + "%s %s: %s checks (%s) on %s"
        % (ICONS[report["status"]], report["status"], summary["total"], counts or "none", hosts)
    )
    if report["recommendations"]:
        lines.append("Recommendations:")
        lines.extend("  %d. %s" % (n, r["text"]) for n, r in enumerate(report["recommendations"], 1))
    else:
        lines.append("Recommendations: none, every check is ok.")
    return "\n".join(lines)


def health_report_metrics(report):
    """Prometheus textfile metrics of the report (node_exporter textfile collector)."""
    if not isinstance(report, dict) or "hosts" not in report:
        raise AnsibleFilterError("health_report_metrics expects the dict made by bosun.platform.health_report")
    status_samples, value_samples, host_samples = [], [], []
    for host, entry in sorted(report["hosts"].items()):
        host_samples.append((dict(host=host), SEVERITY[entry["status"]]))
        for check in entry["checks"]:
            labels = dict(
                host=host,
                check=check["name"],
                type=check["type"],
                tier=(check.get("labels") or {}).get("tier") or entry["tier"] or "host",
            )
            status_samples.append((labels, SEVERITY[check["status"]]))
            if isinstance(check.get("value"), (int, float)) and not isinstance(check.get("value"), bool):
                value_samples.append((dict(labels, unit=check.get("unit") or ""), check["value"]))
    try:
        stamp = datetime.datetime.strptime(report["generated_at"], "%Y-%m-%dT%H:%M:%SZ")
        epoch = int((stamp - datetime.datetime(1970, 1, 1)).total_seconds())
    except (TypeError, ValueError):
        epoch = 0
    return render_metrics(
        [
            (
                "bosun_health_status",
                "Worst status of all checks: 0 ok, 1 warn, 2 unknown, 3 crit.",
                "gauge",
                [({}, SEVERITY[report["status"]])],
            ),
            (
                "bosun_health_host_status",
                "Worst status per host (3 when the host gave no result).",
                "gauge",
                host_samples,
            ),
            (
                "bosun_health_check_status",
                "Status per check: 0 ok, 1 warn, 2 unknown, 3 crit.",
                "gauge",
                status_samples,
            ),
            ("bosun_health_check_value", "Main value of each check, in its unit.", "gauge", value_samples),
            ("bosun_health_last_run_timestamp_seconds", "When the report was made.", "gauge", [({}, epoch)]),
        ]
    )


def health_checks(group_names, settings):
    """The checks of a host in ``group_names``: ``{root: [...], other: [...]}``."""
    if isinstance(group_names, str) or not isinstance(group_names, (list, tuple)):
        raise AnsibleFilterError("health_checks expects the host's group_names as input")
    if not isinstance(settings, dict):
        raise AnsibleFilterError("health_checks: settings must be a mapping")
    try:
        return host_checks(list(group_names), settings)
    except HealthPlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return dict(
            health_checks=health_checks,
            health_report=health_report,
            health_report_text=health_report_text,
            health_report_metrics=health_report_metrics,
        )
