"""The health report filters: grouping by tier, what is shown, recommendations, metrics."""

import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import health_report as hr
from ansible_collections.bosun.platform.plugins.module_utils._checks import elasticsearch_check as es
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import Probe
from ansible_collections.bosun.platform.plugins.module_utils._checks.plan import Plan
from ansible_collections.bosun.platform.plugins.module_utils._checks.runner import result_of


def metric(name, value, unit, status, text, *, headline=True):
    return dict(name=name, value=value, unit=unit, status=status, text=text, headline=headline)


def check(name, type_, status, message, metrics=(), tier=None):  # noqa: PLR0917 - reads like a row
    value = metrics[0]["value"] if metrics else None
    return dict(
        name=name,
        type=type_,
        status=status,
        value=value,
        unit=metrics[0]["unit"] if metrics else "",
        latency_ms=1.0,
        message=message,
        metrics=list(metrics),
        labels={"tier": tier} if tier else {},
    )


def memory(pct, status="ok"):
    return check(
        "memory", "memory", status, "memory %d %% used" % pct, [metric("used", pct, "%", status, "memory %d %%" % pct)]
    )


def result(*checks):
    return {"checks": list(checks), "duration_ms": 120.0, "changed": False}


HOSTVARS = {
    "lb1": {
        "group_names": ["lb"],
        "r": result(
            check(
                "nginx config",
                "nginx_config",
                "ok",
                "valid",
                [metric("valid", True, "", "ok", "nginx config valid")],
                "lb",
            ),
            check(
                "TLS cert", "tls_cert", "ok", "63 days", [metric("days", 63, "days", "ok", "TLS cert 63 days")], "lb"
            ),
            memory(40),
        ),
    },
    "app1": {
        "group_names": ["app"],
        "r": result(
            check("app health", "http", "ok", "HTTP 200", [metric("latency", 42, "ms", "ok", "/health 42 ms")], "app"),
            memory(50),
        ),
    },
    "app2": {
        "group_names": ["app"],
        "r": result(
            check("app health", "http", "ok", "HTTP 200", [metric("latency", 40, "ms", "ok", "/health 40 ms")], "app"),
            memory(78, "warn"),
        ),
    },
    "db1": {
        "group_names": ["db"],
        "r": result(
            check(
                "PostgreSQL",
                "postgres",
                "ok",
                "45/100",
                [
                    metric("connections", 45, "%", "ok", "PostgreSQL 45/100 connections (45 %)"),
                    metric("archive_age", 40, "s", "ok", "last WAL archived 40 s ago"),
                    metric("oldest_transaction", 2, "s", "ok", "oldest transaction 2 s", headline=False),
                ],
                "db",
            )
        ),
    },
    "cache1": {"group_names": ["cache"], "r": {"unreachable": True, "msg": "Failed to connect to the host via ssh"}},
}


def report(hosts=None, hostvars=None, **kw):
    return hr.health_report(
        list(hosts or HOSTVARS), hostvars or HOSTVARS, result_var="r", generated_at="2026-11-22T07:00:00Z", **kw
    )


def test_report_text_in_the_operators_format():
    text = hr.health_report_text(report())
    lines = text.splitlines()
    assert lines[0] == "Infrastructure Status Report  2026-11-22 07:00 UTC"
    assert lines[1] == "Load balancer:  \u2705 nginx config valid  \u2705 TLS cert 63 days"
    assert (
        lines[2]
        == "Application:    \u2705 app1 /health 42 ms  \u2705 app2 /health 40 ms  \u26a0\ufe0f app2 memory 78 %"
    )
    assert lines[3] == (
        "Database:       \u2705 PostgreSQL 45/100 connections (45 %)  \u2705 last WAL archived 40 s ago"
    )
    assert lines[4] == "Cache:          \U0001f534 cache1 unreachable: Failed to connect to the host via ssh"
    assert lines[5] == "Overall:        \U0001f534 crit: 8 checks (7 ok, 1 warn) on 5 hosts (1 without a result)"
    assert lines[6] == "Recommendations:"
    assert lines[7] == "  1. cache1: check that the host is up and reachable over SSH"
    assert lines[8] == "  2. app2 memory 78 %: find what uses the memory (ps, smem) or give the Droplet more"
    assert len(lines) == 9


def test_report_dict_is_json_and_counts():
    data = report()
    json.dumps(data)  # the JSON file
    assert data["status"] == "crit" and data["failed"] is True
    assert data["summary"] == dict(ok=7, warn=1, unknown=0, crit=0, total=8, hosts=5, hosts_failed=1)
    assert data["hosts"]["app2"]["status"] == "warn"
    assert data["hosts"]["cache1"]["error"].startswith("unreachable")
    assert data["reasons"] == ["cache1 crit: unreachable: Failed to connect to the host via ssh"]  # fail_on=crit
    assert report(fail_on="warn")["reasons"] == [f["text"] for f in data["failing"]]
    assert [f["text"] for f in data["failing"]] == [
        "cache1 crit: unreachable: Failed to connect to the host via ssh",
        "app2 memory warn: memory 78 % used",
    ]


def test_fail_on_and_all_ok():
    healthy = dict((h, v) for h, v in HOSTVARS.items() if h in ("lb1", "app1", "db1"))
    data = report(healthy, healthy)
    assert data["status"] == "ok" and data["failed"] is False
    assert hr.health_report_text(data).splitlines()[-1] == "Recommendations: none, every check is ok."
    warned = dict(healthy, app2=HOSTVARS["app2"])
    assert report(warned, warned)["failed"] is False
    assert report(warned, warned, fail_on="warn")["failed"] is True
    assert report(dict(HOSTVARS), HOSTVARS, fail_on="never")["failed"] is False


def test_failed_check_shows_its_reason_and_module_failure_is_crit():
    hv = {
        "db1": {
            "group_names": ["db"],
            "r": result(
                check(
                    "PostgreSQL",
                    "postgres",
                    "crit",
                    "PostgreSQL 10.0.0.5:5432/postgres: authentication failed for user monitor",
                    tier="db",
                )
            ),
        },
        "app1": {"group_names": ["app", "lb"], "r": {"failed": True, "msg": "invalid checks: checks[0] (x): ..."}},
    }
    data = report(list(hv), hv)
    text = hr.health_report_text(data)
    assert "\U0001f534 PostgreSQL 10.0.0.5:5432/postgres: authentication failed for user monitor" in text
    assert "Load balancer:  \U0001f534 app1 health_check failed: invalid checks" in text  # first tier in order
    assert "check the server, the credentials and pg_hba.conf" in text


def test_custom_tiers_and_host_without_known_group():
    hv = {"misc": {"group_names": ["workers"], "r": result(memory(90, "crit"))}}
    data = report(["misc"], hv, tiers=[{"group": "workers", "label": "Workers"}])
    assert hr.health_report_text(data).splitlines()[1] == "Workers:        \U0001f534 memory 90 %"
    data = report(["misc"], hv)
    assert data["tiers"][0]["label"] == "Hosts"
    with pytest.raises(AnsibleFilterError, match="each tier needs a group"):
        report(["misc"], hv, tiers=[{"label": "x"}])


def test_metrics_textfile():
    text = hr.health_report_metrics(report())
    assert "bosun_health_status 3\n" in text
    assert 'bosun_health_host_status{host="app2"} 1\n' in text
    assert 'bosun_health_check_status{check="memory",host="app2",tier="app",type="memory"} 1\n' in text
    assert 'bosun_health_check_value{check="TLS cert",host="lb1",tier="lb",type="tls_cert",unit="days"} 63\n' in text
    assert "bosun_health_last_run_timestamp_seconds 1795330800\n" in text


def test_filters_reject_wrong_input():
    with pytest.raises(AnsibleFilterError):
        hr.health_report("lb1", HOSTVARS)
    with pytest.raises(AnsibleFilterError):
        hr.health_report_text({"x": 1})
    assert set(hr.FilterModule().filters()) == {
        "health_checks",
        "health_report",
        "health_report_text",
        "health_report_metrics",
    }


def test_results_of_several_tasks_are_one_host_entry():
    """health.yml runs the checks that need root in their own task (become) and the others
    without: the report merges both registered results, a skipped task adds nothing."""
    nginx = check("nginx config", "nginx_config", "ok", "nginx -t ok", tier="lb")
    hostvars = {
        "lb1": {"group_names": ["lb"], "root": result(nginx), "r": result(memory(40))},
        "app1": {"group_names": ["app"], "root": {"skipped": True, "changed": False}, "r": result(memory(50))},
        "lb2": {"group_names": ["lb"], "root": {"unreachable": True, "msg": "ssh down"}, "r": result(memory(40))},
    }
    report = hr.health_report(["lb1", "app1", "lb2"], hostvars, result_var=["root", "r"])
    assert [c["name"] for c in report["hosts"]["lb1"]["checks"]] == ["nginx config", "memory"]
    assert report["hosts"]["lb1"]["duration_ms"] == 240.0
    assert [c["name"] for c in report["hosts"]["app1"]["checks"]] == ["memory"]
    assert report["hosts"]["app1"]["status"] == "ok"
    assert report["hosts"]["lb2"]["error"] == "unreachable: ssh down"
    assert report["summary"]["total"] == 3


def test_health_playbook_runs_only_nginx_config_with_become():
    """nginx -t reads the TLS key (root only): as a non-root admin it needs become, the other
    checks do not (the role's entry point checks; the play header's become is the option)."""
    import os

    import yaml
    from ansible_collections.bosun.platform.plugins.module_utils._health_plan import ROOT_TYPES

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(root, "playbooks", "health.yml")) as f:
        (play,) = yaml.safe_load(f)
    with open(os.path.join(root, "roles", "health", "tasks", "checks.yml")) as f:
        tasks = yaml.safe_load(f)
    checks = [t for t in tasks if "bosun.platform.health_check" in t]
    assert len(checks) == 2, checks
    root_task, other = checks
    assert root_task.get("become") is True and "become" not in other
    assert root_task["bosun.platform.health_check"]["checks"] == "{{ __health_checks.root }}"
    assert other["bosun.platform.health_check"]["checks"] == "{{ __health_checks.other }}"
    assert ROOT_TYPES == ("nginx_config",)
    assert "become" not in play or play["become"] == "{{ bosun_health_become | default(false) }}"
    assert [t["ansible.builtin.import_role"]["tasks_from"] for t in play["tasks"]] == ["checks", "report"]


def test_search_line_and_advice_of_an_elasticsearch_check():
    stats = {"nodes": {"n1": {"name": "es1", "jvm": {"mem": {"heap_used_percent": 90}}}}}
    stats["nodes"]["n1"]["fs"] = {"data": [{"path": "/d", "total_in_bytes": 100, "available_in_bytes": 8}]}
    settings = {"defaults": {"cluster.routing.allocation.disk.watermark.high": "90%"}}
    probe = Probe("Elasticsearch", 5, dict((k, v) for k, v in es.METRICS.items() if v is not None))
    es.measure(probe, {"status": "yellow", "number_of_nodes": 1, "unassigned_shards": 1}, stats, settings)
    plan = Plan(
        index=0,
        name="Elasticsearch",
        type_name="elasticsearch",
        kind=es,
        options={},
        timeout=5,
        thresholds={},
        labels={"tier": "search"},
        secrets=[],
    )
    hv = {"search1": {"group_names": ["search"], "r": result(result_of(plan, probe))}}
    lines = hr.health_report_text(report(["search1"], hv)).splitlines()
    assert lines[1] == (
        "Search:         \u26a0\ufe0f Elasticsearch heap 90 %  \u26a0\ufe0f cluster yellow, 1 node, 1 unassigned shard"
        "  \u26a0\ufe0f disk 92 % above the high watermark 90 % (no new shards there, shards move away)"
    )
    assert (
        lines[4]
        == "  1. Elasticsearch heap 90 %: high JVM memory pressure: fewer shards, lighter queries or a bigger heap"
    )
    assert lines[5].startswith(
        "  2. cluster yellow, 1 node, 1 unassigned shard: shards are unassigned: ask GET _cluster/"
    )
    assert lines[6].startswith(
        "  3. disk 92 % above the high watermark 90 % (no new shards there, shards move away): disk "
    )
