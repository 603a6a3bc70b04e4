"""The decisions of a maintenance job run (module_utils/_maintenance_run.py) and its filters,
branch by branch, and the role's shape: one entry point per job of the playbook, every
option declared with a default read from the inventory's bosun_* variable."""

import json
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import maintenance_catalogue as mc
from ansible_collections.bosun.platform.plugins.filter import maintenance_run as flt
from ansible_collections.bosun.platform.plugins.module_utils import _maintenance_run as r

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "maintenance")
START = "2026-01-31T02:00:00.000000Z"
END = "2026-01-31T02:00:01.500000Z"


def load(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- window ---------------------------------------------------------------------------------


def test_a_given_window_wins_over_the_catalogue():
    assert r.window_spec("backup", "01:00-05:00", [{"name": "b", "tags": ["backup"], "window": "02:00-03:00"}]) == (
        "01:00-05:00"
    )
    assert r.window_spec("backup", "", [{"name": "b", "tags": ["backup"], "window": "02:00-03:00"}]) == ""


def test_the_first_catalogue_job_with_the_tag_gives_the_window():
    jobs = [
        {"name": "other", "tags": ["vacuum"], "window": "00:00-01:00"},
        {"name": "nightly", "tags": "host, backup", "window": "01:00-05:00"},
        {"name": "backup", "window": "06:00-07:00"},
    ]
    assert r.window_spec("backup", None, jobs) == "01:00-05:00"
    assert r.window_spec("backup", None, jobs[2:]) == "06:00-07:00"  # tags default to [name]
    assert r.window_spec("backup", None, [{"name": "backup"}]) == ""  # no window: any time
    assert r.window_spec("certs", None, jobs) == ""
    assert r.window_spec("certs", None, None) == ""
    assert flt.maintenance_window_spec("vacuum", None, jobs) == "00:00-01:00"


def test_the_window_spec_feeds_the_window_check():
    spec = flt.maintenance_window_spec("backup", None, [{"name": "b", "tags": ["backup"], "window": "22:00-04:00"}])
    assert mc.maintenance_window(spec, "23:30")["run"] is True
    assert mc.maintenance_window(spec, "12:00", False)["run"] is False


# --- failure, flight ---------------------------------------------------------------------------


def test_a_failure_names_host_task_and_message():
    got = r.failure("db1", {"name": "Vacuum", "action": "bosun.platform.postgresql_maintenance"}, {"msg": "boom"})
    assert got == {"error": {"host": "db1", "task": "Vacuum", "msg": "boom"}, "refused": False}


def test_a_failure_of_the_platform_lock_is_a_refusal_and_missing_parts_are_marked():
    got = flt.maintenance_failure("db1", {"action": "bosun.platform.platform_lock"}, None)
    assert got == {"error": {"host": "db1", "task": "?", "msg": "failed"}, "refused": True}
    assert r.failure("db1")["refused"] is False


def test_the_flight_keeps_each_phase():
    pre = r.flight(None, "pre", {"status": "ok", "msg": "all good"})
    assert pre == {"pre": {"status": "ok", "msg": "all good"}}
    both = flt.maintenance_flight(pre, "post", {"changed": False, "skipped": True, "false_condition": "x"})
    assert both == {"pre": {"status": "ok", "msg": "all good"}, "post": {"status": "skipped", "msg": ""}}
    assert r.flight({}, "post", None) == {"post": {"status": "skipped", "msg": ""}}


def test_the_flight_refuses_an_unknown_phase():
    with pytest.raises(r.MaintenanceRunError):
        r.flight({}, "during", {})
    with pytest.raises(AnsibleFilterError, match="phase must be pre or post"):
        flt.maintenance_flight({}, "during", {})


# --- health checks, certificates, releases ---------------------------------------------------


def test_the_disk_checks_and_the_tier_check_with_its_override():
    checks = r.health_checks(
        "db",
        disk_paths=["/", "/var/lib"],
        warn=70,
        crit=95,
        overrides={"postgres": {"name": "PG", "postgres": {"port": 5433}}},
    )
    assert checks == [
        {"type": "disk", "disk": {"path": "/"}, "warn": 70, "crit": 95},
        {"type": "disk", "disk": {"path": "/var/lib"}, "warn": 70, "crit": 95},
        {"name": "PG", "type": "postgres", "postgres": {"port": 5433}},
    ]


def test_the_app_override_is_merged_recursively_and_no_tier_means_disks_only():
    (app,) = r.health_checks("app", disk_paths=[], overrides={"app": {"http": {"json_path": "status"}}})
    assert app["http"] == {"url": "http://127.0.0.1:8000/health", "json_path": "status"}
    assert r.health_checks("", disk_paths=["/"]) == [{"type": "disk", "disk": {"path": "/"}, "warn": 80, "crit": 90}]
    assert flt.maintenance_health_checks(disk_paths=None) == []


def test_the_search_check_takes_the_connection_and_given_checks_replace_all():
    conn = {"url": "https://127.0.0.1:9200", "login_password": "s3cret"}
    (es,) = r.health_checks("search", disk_paths=[], elasticsearch=conn, overrides={"elasticsearch": None})
    assert es == {"name": "Elasticsearch", "type": "elasticsearch", "elasticsearch": conn}
    given = [{"type": "disk", "disk": {"path": "/srv"}}]
    assert r.health_checks("db", disk_paths=["/"], checks=given) == given
    for tier in ("cache", "lb"):
        assert len(r.health_checks(tier, disk_paths=[])) == 1


def test_an_unknown_tier_is_refused():
    with pytest.raises(AnsibleFilterError, match="tier must be one of"):
        flt.maintenance_health_checks("mail")


def test_the_certificate_checks():
    (default,) = r.cert_checks([], server_name="lb1", warn=20, crit=7)
    assert default == {
        "name": "TLS cert",
        "tls_cert": {"host": "127.0.0.1", "port": 443, "server_name": "lb1"},
        "type": "tls_cert",
        "warn": 20,
        "crit": 7,
    }
    (given,) = flt.maintenance_cert_checks([{"name": "api", "tls_cert": {"host": "api"}}], warn=30, crit=14)
    assert given["type"] == "tls_cert" and given["name"] == "api" and given["crit"] == 14


def test_old_releases_keep_the_newest_and_the_linked_ones():
    found = [{"path": "/r/%d" % i, "mtime": i} for i in range(1, 8)]
    links = [{"stat": {"lnk_source": "/r/2"}}, {"stat": {"exists": False}}, {}]
    assert r.old_releases(found, 3, links) == ["/r/4", "/r/3", "/r/1"]
    assert flt.maintenance_old_releases(found, "7", None) == []
    assert r.old_releases([], 0) == []


def test_old_releases_refuse_a_negative_keep():
    with pytest.raises(AnsibleFilterError, match="keep must be 0 or more"):
        flt.maintenance_old_releases([], -1)


# --- summaries -----------------------------------------------------------------------------------


def test_backup_and_restore_drill_summaries():
    dump = {"results": [{"backups": ["a"], "deleted": ["old"]}, {"backups": ["b"], "corrupt": ["bad"]}]}
    assert r.summary(dump, "backup") == {"backups": ["a", "b"], "deleted": ["old"], "corrupt": ["bad"]}
    drill = {"results": [{"backup": {"path": "p"}, "restore_seconds": 2.5, "checks": ["c"]}, {}]}
    assert r.summary(drill, "restore_drill") == {
        "backups": [{"path": "p"}, {}],
        "restore_seconds": [2.5, None],
        "checks": [["c"], []],
    }


def test_basebackup_and_pitr_drill_summaries():
    base = {
        "backup": "b",
        "kept": ["b"],
        "deleted": [],
        "corrupt": [],
        "wal_kept_from": "0001",
        "wal_deleted": ["x", "y"],
    }
    assert r.summary(base, "basebackup")["wal_deleted"] == 2
    drill = {
        "ok": True,
        "target_time": "t",
        "rpo_seconds": 1,
        "rto_seconds": 9,
        "archive_timeout": "60s",
        "host": "db1",
    }
    assert r.summary(dict(drill, recovery={"backup": "base1"}), "pitr_drill") == dict(
        {k: v for k, v in drill.items() if k != "host"}, backup="base1"
    )
    assert r.summary({"ok": False}, "pitr_drill") == {"ok": False, "backup": None}


def test_vacuum_and_db_report_summaries_are_by_database():
    work = {"results": [{"item": "app", "vacuumed": ["t"], "changed": True, "slow_queries": [1]}]}
    assert r.summary(work, "vacuum") == {"app": {"vacuumed": ["t"]}}
    assert r.summary(work, "db_report") == {"app": {"slow_queries": [1]}}


def test_cache_and_host_summaries():
    assert flt.maintenance_summary({"results": [{"pattern": "a:*"}]}, "cache", group="menu") == {
        "group": "menu",
        "patterns": [{"pattern": "a:*"}],
    }
    host = {
        "journal": {"stderr": "Vacuuming done, freed 12.0M of archived journals\nother"},
        "debs": {"files": [{"size": 10}, {"size": 5}]},
        "logs": {"files": [{"size": 7}]},
        "releases": {"results": [{"path": "/r/1"}, {"skipped": True}]},
    }
    assert r.summary(host, "host") == {
        "journal": "Vacuuming done, freed 12.0M of archived journals",
        "apt_cache_files": 2,
        "apt_cache_bytes": 15,
        "old_logs": 1,
        "old_logs_bytes": 7,
        "releases_removed": ["/r/1"],
    }
    quiet = r.summary({"journal": {}, "debs": {}, "logs": {}, "releases": {"skipped": True}}, "host")
    assert quiet["journal"] == "" and quiet["releases_removed"] == [] and quiet["apt_cache_bytes"] == 0


def test_certs_and_cert_renew_summaries():
    checks = {"checks": [{"name": "TLS cert", "status": "ok", "value": 60, "message": "60 days", "type": "tls_cert"}]}
    assert r.summary(checks, "certs") == {"TLS cert": {"status": "ok", "value": 60, "message": "60 days"}}
    decision = {"renew": True, "reason": "due", "days_left": 3, "not_after": "old", "serial": "1"}
    issued = {"days_left": 90, "not_after": "new", "serial": "2"}
    renewed = r.summary({"decision": decision, "issued": issued}, "cert_renew")
    assert renewed == {"renewed": True, "reason": "due", "days_left": 90, "not_after": "new", "serial": "2"}
    checked = r.summary({"decision": decision, "issued": {}}, "cert_renew", check_mode=True)
    assert checked["renewed"] is False and checked["days_left"] == 3
    assert r.summary({}, "cert_renew") == {
        "renewed": False,
        "reason": "",
        "days_left": None,
        "not_after": None,
        "serial": None,
    }


def test_search_summaries():
    health = {
        "checks": [{"type": "disk", "name": "/"}, {"type": "elasticsearch", "name": "ES", "status": "ok", "x": 1}]
    }
    assert r.summary(health, "search_health") == [{"name": "ES", "status": "ok"}]
    assert r.summary({"changed": False, "invocation": {}, "balance": 1.0}, "search_shards") == {"balance": 1.0}
    cleanup = {
        "cleanup": {
            "results": [{"deleted": ["i1"], "snapshot": {"name": "s1"}}, {"would_delete": ["i2"], "snapshot": None}]
        },
        "merge": {"results": [{"merged": [{"index": "m1"}]}]},
    }
    assert r.summary(cleanup, "search_cleanup") == {
        "deleted": ["i1"],
        "would_delete": ["i2"],
        "snapshots": ["s1"],
        "merged": ["m1"],
    }


def test_an_unknown_job_has_no_summary():
    with pytest.raises(AnsibleFilterError, match="unknown job 'mail'"):
        flt.maintenance_summary({}, "mail")


# --- the result ------------------------------------------------------------------------------------


def result(**kw):
    args = dict(
        started=START, finished=END, hosts=["db1", "db2"], active=["db1", "db2"], window={"reason": "no window"}
    )
    args.update(kw)
    return r.result("backup", **args)


def test_an_ok_run():
    got = result(
        flights=[{"pre": {"status": "ok"}}, None],
        summaries=[{"backups": ["a"]}, None],
        errors=[None, {}],
        refused=[False, False],
        previous={"last_success": "before"},
        run_by="timer",
        controller="ctl",
        check_mode=True,
    )
    assert got["status"] == "ok" and got["message"] == "done"
    assert got["job"] == "backup" and got["tags"] == ["backup"] and got["run_by"] == "timer"
    assert got["duration_seconds"] == 1.5 and got["last_success"] == END and got["check_mode"] is True
    assert got["flight"] == {"db1": {"pre": {"status": "ok"}}, "db2": {}}
    assert got["work"] == {"db1": {"backups": ["a"]}, "db2": {}}
    assert got["lock_holder"] is None and got["errors"] == []
    json.dumps(got)
    assert r.succeeded(got)


def test_a_skipped_run_keeps_the_last_success():
    got = result(
        skipped=True, window={"reason": "outside window 01:00-05:00 UTC (12:00)"}, previous={"last_success": "x"}
    )
    assert got["status"] == "skipped: outside window"
    assert got["message"] == "outside window 01:00-05:00 UTC (12:00)" and got["last_success"] == "x"
    assert flt.maintenance_succeeded(got)


def test_a_refused_run_names_the_holder():
    holder = {"owner": "ops", "job": "deploy.yml 3.0.0", "started": "2026-01-31T01:59:00Z"}
    got = result(refused=[True, False], holder=holder, errors=[{"host": "db1", "task": "Lock", "msg": "held"}, None])
    assert got["status"] == "refused: platform lock held"
    assert got["message"] == "the platform lock is held by ops running deploy.yml 3.0.0 since 2026-01-31T01:59:00Z"
    assert got["lock_holder"] == holder and got["last_success"] is None
    assert result(refused=[True, True])["message"] == "the platform lock is held by ? running ? since ?"
    assert not r.succeeded(got)


def test_a_failed_run_lists_each_error_and_the_lost_hosts():
    got = result(active=["db1"], errors=[{"host": "db1", "task": "Dump", "msg": "disk full"}, None])
    assert got["status"] == "failed"
    assert got["message"] == "db1: Dump: disk full; db2: ?: unreachable or failed before the job started"
    assert got["errors"][1] == {"task": "?", "msg": r.LOST_MSG, "host": "db2"}
    assert not flt.maintenance_succeeded(got) and not r.succeeded(None)


def test_the_result_name_and_bad_inputs():
    assert flt.maintenance_result("backup", started=START, finished=END, name="nightly")["job"] == "nightly"
    with pytest.raises(AnsibleFilterError, match="flights has 1 entries for 2 hosts"):
        flt.maintenance_result("backup", started=START, finished=END, hosts=["a", "b"], flights=[{}])
    with pytest.raises(AnsibleFilterError, match="started 'yesterday' is not a time"):
        flt.maintenance_result("backup", started="yesterday", finished=END)


def test_the_result_makes_the_metrics():
    text = mc.maintenance_result_metrics(result())
    assert 'bosun_maintenance_last_status{job="backup"} 1' in text


# --- the role ---------------------------------------------------------------------------------------------


def test_every_job_of_the_playbook_is_an_entry_point_with_a_spec():
    specs = load(ROLE, "meta", "argument_specs.yml")["argument_specs"]
    for job in r.JOBS:
        assert os.path.exists(os.path.join(ROLE, "tasks", job + ".yml")), job
        assert "maintenance_window" in specs[job]["options"], job
    for entry in specs:
        assert os.path.exists(os.path.join(ROLE, "tasks", entry + ".yml")), entry


def test_every_default_reads_the_inventory_variable_and_no_public_name_is_internal():
    defaults = load(ROLE, "defaults", "main.yml")
    for name in defaults:
        assert name.startswith("maintenance_") and not name.startswith("__"), name
    literal = {
        "maintenance_metrics_access_dir",
        "maintenance_metrics_access_user",
        "maintenance_metrics_access_become",
        "maintenance_pitr_cluster_required",
        "maintenance_cache_patterns",
        "maintenance_cache_what",
        "maintenance_health_overrides",
        "maintenance_lock",
    }
    for name, value in defaults.items():
        if name not in literal:
            assert "{{" in str(value) and ("bosun_" in str(value) or "redis_" in str(value)), name
