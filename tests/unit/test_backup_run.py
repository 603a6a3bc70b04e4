"""The decisions of the backup and restore runbooks (module_utils/_backup_run.py) and their
filters, branch by branch, and the role's shape: one entry point per playbook, each playbook
a header calling it, every option with a default read from the inventory's bosun_* variable."""

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import backup_run as flt
from ansible_collections.bosun.platform.plugins.module_utils import _backup_run as r

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "backup")
ENTRY_POINTS = ["backup", "restore", "restore_drill", "pitr_drill", "restore_pitr"]
NOW = "2026-01-31T02:00:00+00:00"


def load(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- run results -------------------------------------------------------------------------------


def test_a_backup_that_never_ran_is_not_ok_and_lists_nothing():
    out = r.run_result(None, "backup", "db1", NOW)
    assert out == dict(job="backup", host="db1", finished=NOW, ok=False, backups=[], deleted=[], corrupt=[], errors=[])


def test_a_backup_flattens_each_databases_files_and_collects_the_errors():
    work = dict(
        results=[
            dict(item="app", backups=[{"path": "a"}], deleted=["old"], corrupt=[]),
            dict(item="crm", failed=True, msg="crm: no space left"),
            dict(item="*", backups=[{"path": "g"}, {"path": "h"}], failed=False),
        ]
    )
    out = r.run_result(work, "backup", "db1", NOW)
    assert out["ok"] is False
    assert out["backups"] == [{"path": "a"}, {"path": "g"}, {"path": "h"}] and out["deleted"] == ["old"]
    assert out["errors"] == ["crm: no space left"]
    assert r.run_result(dict(results=[work["results"][0]]), "backup", "db1", NOW)["ok"] is True


def test_a_drill_lists_backups_seconds_and_checks_per_database():
    work = dict(results=[dict(backup={"path": "p"}, restore_seconds=1.5, checks=[{"ok": True}]), dict()])
    out = r.run_result(work, "restore_drill", "db1", NOW)
    assert out["ok"] is True and out["job"] == "restore_drill"
    assert out["backups"] == [{"path": "p"}, {}]
    assert out["restore_seconds"] == [1.5, None] and out["checks"] == [[{"ok": True}], []]
    assert set(out) == {"job", "host", "finished", "ok", "backups", "restore_seconds", "checks", "errors"}


def test_an_unknown_job_is_an_error():
    with pytest.raises(r.BackupRunError, match="job must be one of backup, restore_drill"):
        r.run_result({}, "vacuum", "db1", NOW)
    with pytest.raises(AnsibleFilterError, match="^backup_run_result"):
        flt.backup_run_result({}, "vacuum", "db1", NOW)


# --- drills --------------------------------------------------------------------------------------


def test_drills_are_made_whole_from_names_and_mappings():
    out = r.drills(
        ["billing", {"db": "app", "tables": ["public.orders"], "min_rows": {"public.orders": 5}, "jobs": 4}], 2
    )
    assert out == [
        dict(db="billing", tables=[], min_rows={}, sql=[], jobs=2),
        dict(db="app", tables=["public.orders"], min_rows={"public.orders": 5}, sql=[], jobs=4),
    ]
    assert r.drills(None) == [] and r.drills([]) == []


@pytest.mark.parametrize("items", [[{"tables": ["t"]}], [""], [3], "app"])
def test_a_drill_without_a_database_is_an_error(items):
    with pytest.raises(AnsibleFilterError, match="^backup_drills"):
        flt.backup_drills(items)


# --- restore -------------------------------------------------------------------------------------


def test_a_restore_request_names_source_target_and_the_lock():
    out = r.restore_request("app", "", ["db1"])
    assert out == dict(db="app", target="app", refused="", lock_job="restore app into app")
    assert r.restore_request("app", "app_restored", ["db1"])["target"] == "app_restored"


@pytest.mark.parametrize("db, hosts", [("", ["db1"]), ("app", ["db1", "db2"]), ("app", [])])
def test_a_restore_without_a_database_or_one_host_is_refused(db, hosts):
    out = flt.backup_restore_request(db, hosts=hosts)
    assert "Give -e bosun_backup_restore_db=DATABASE" in out["refused"]
    assert "(hosts in this play: %s)" % ", ".join(hosts) in out["refused"]
    if not db:
        assert out["lock_job"] == "restore ? into ?"


def test_an_existing_target_needs_its_name_repeated():
    plan = dict(target_exists=True, backup=dict(path="/b/app/1.dump.zst", finished="2026-01-30T02:00:00Z"))
    refusal = r.restore_verdict(plan, "app", "", "db1")
    assert refusal.startswith("Database app exists on db1. Restoring /b/app/1.dump.zst (taken 2026-01-30T02:00:00Z)")
    assert "-e bosun_backup_restore_confirm=app," in refusal and "bosun_backup_restore_target_db=NAME" in refusal
    assert r.restore_verdict(plan, "app", "App", "db1") != ""
    assert r.restore_verdict(plan, "app", "app", "db1") == ""
    assert r.restore_verdict(dict(target_exists=False), "new", "", "db1") == ""


def test_the_restore_summary_names_the_safety_dump_when_one_was_taken():
    plan = dict(backup=dict(path="/b/1.dump"))
    assert r.restore_summary(plan, dict(restore_seconds=2.5), {}, "app") == "Restored /b/1.dump into app in 2.5 s."
    text = r.restore_summary(plan, {}, dict(backups=[dict(path="/b/pre.dump")]), "app")
    assert text == "Restored /b/1.dump into app in ? s. The replaced database was saved as /b/pre.dump"


# --- point-in-time recovery --------------------------------------------------------------------

LIVE = dict(
    data_dir="/var/lib/postgresql/16/main",
    config_file="/etc/postgresql/16/main/postgresql.conf",
    service="postgresql@16-main",
    port=5433,
)


def test_a_scratch_request_passes_its_one_target_and_the_backup():
    out = r.pitr_request("db1", target_name="pre migration", exclusive=True, backup="/b/20260101")
    assert out == dict(
        mode="scratch",
        target_args=["--target-name", "pre migration", "--target-exclusive", "--backup", "/b/20260101"],
        refused="",
        lock_job="restore_pitr scratch",
    )
    assert r.pitr_request("db1")["target_args"] == []


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(mode="inplace"), "bosun_pitr_mode must be scratch or replace, got 'inplace'"),
        (dict(target_time="2026-01-01", target_lsn="0/1"), "give at most one of bosun_pitr_target_time, _lsn, _name"),
        (dict(mode="replace"), "replacing the cluster of db1 needs -e \"bosun_pitr_confirm='replace db1'\""),
        (dict(mode="replace", confirm="replace db2"), "replacing the cluster of db1"),
    ],
)
def test_a_recovery_request_is_refused(kwargs, expected):
    assert expected in flt.backup_pitr_request("db1", **kwargs)["refused"]


def test_a_confirmed_replace_is_not_refused():
    assert r.pitr_request("db1", mode="replace", confirm="replace db1", target_time="t")["refused"] == ""


@pytest.mark.parametrize(
    "args, required",
    [
        (("scratch",), True),
        (("scratch", "/data"), False),
        (("replace", "/data"), True),
        (("replace", "/data", "pg.service"), True),
        (("replace", "/data", "pg.service", "/pg.conf"), False),
    ],
)
def test_the_live_cluster_is_needed_unless_every_path_is_given(args, required):
    assert flt.backup_pitr_cluster_required(*args) is required


def test_a_scratch_plan_protects_the_live_data_directory():
    plan = r.pitr_plan(r.pitr_request("db1"), live=LIVE, scratch_dir="/scratch", scratch_port=55433, stamp="S")
    assert plan == dict(
        mode="scratch",
        live_data_dir=LIVE["data_dir"],
        service=LIVE["service"],
        target_args=[],
        data_dir="/scratch",
        port=55433,
        mode_args=["--protect", LIVE["data_dir"]],
        aside=None,
    )
    given = r.pitr_plan(r.pitr_request("db1"), live=dict(data_dir=None), data_dir="/live", scratch_dir="/s")
    assert given["mode_args"] == ["--protect", "/live"]


def test_a_replace_plan_recovers_into_the_live_directory_and_keeps_the_old_one():
    request = r.pitr_request("db1", mode="replace", confirm="replace db1")
    plan = r.pitr_plan(request, live=LIVE, scratch_dir="/scratch", stamp="20260131T020000Z")
    assert plan["data_dir"] == LIVE["data_dir"] and plan["port"] == 5433
    assert plan["aside"] == LIVE["data_dir"] + ".pre-pitr-20260131T020000Z"
    assert plan["mode_args"] == [
        "--config-file",
        LIVE["config_file"],
        "--socket-dir",
        "/var/run/postgresql",
        "--stop-after",
    ]
    given = r.pitr_plan(
        request, live={}, data_dir="/d", service="pg", config_file="/c", port=6000, socket_dir="/run/pg", stamp="S"
    )
    assert (given["port"], given["service"], given["mode_args"][1], given["mode_args"][3]) == (
        6000,
        "pg",
        "/c",
        "/run/pg",
    )
    assert r.pitr_plan(request, live=dict(LIVE, port=None), stamp="S")["port"] == 5432


@pytest.mark.parametrize(
    "request_, kwargs, message",
    [
        (dict(mode="scratch"), dict(live={}, scratch_dir="/s"), "no live data directory"),
        (dict(mode="replace"), dict(live=dict(data_dir="/d")), "replace needs the live cluster's unit"),
        (dict(mode="scratch"), dict(live=LIVE, scratch_dir=""), "scratch needs a scratch directory"),
        (dict(mode="other"), dict(live=LIVE, scratch_dir="/s"), "mode must be scratch or replace"),
    ],
)
def test_a_plan_that_cannot_be_made_is_an_error(request_, kwargs, message):
    with pytest.raises(AnsibleFilterError, match="^backup_pitr_plan: " + message):
        flt.backup_pitr_plan(request_, **kwargs)


def test_the_recovery_result_and_report():
    recovery = dict(
        backup="/b/1", recovery_seconds=3.2, stop="recovery stopping at restore point", socket_dir="/s", timeline=2
    )
    scratch = r.pitr_plan(r.pitr_request("db1"), live=LIVE, scratch_dir="/scratch", scratch_port=55432)
    out = r.pitr_result(recovery, scratch, "db1", NOW)
    assert out["job"] == "restore_pitr" and out["mode"] == "scratch" and out["old_data_dir"] is None
    assert out["backup"] == "/b/1" and out["finished"] == NOW
    assert r.pitr_report(recovery, scratch) == (
        "Recovered a scratch cluster from /b/1 in 3.2 s: recovery stopping at restore point; last transaction ?; "
        "new timeline 2. Connect with: psql -h /s -p 55432 -U postgres"
    )
    replace = r.pitr_plan(r.pitr_request("db1", mode="replace", confirm="replace db1"), live=LIVE, stamp="S")
    text = r.pitr_report(dict(backup="/b/1", recovery_seconds=1), replace)
    assert text.startswith("Recovered production from /b/1 in 1 s: end of the archive reached;")
    assert text.endswith("The old data directory is kept at %s.pre-pitr-S." % LIVE["data_dir"])
    assert r.pitr_result(recovery, replace, "db1", NOW)["old_data_dir"] == LIVE["data_dir"] + ".pre-pitr-S"


def test_the_pitr_drill_metrics():
    text = r.pitr_drill_metrics(dict(ok=True, rpo_seconds=1.25, rto_seconds="4.5"), 1769824800.12345)
    assert "bosun_pitr_drill_last_status 1\n" in text
    assert "bosun_pitr_drill_last_run_timestamp_seconds 1769824800.123\n" in text
    assert "bosun_pitr_drill_rpo_seconds 1.25\n" in text and "bosun_pitr_drill_rto_seconds 4.5\n" in text
    failed = r.pitr_drill_metrics(dict(ok="False", rpo_seconds=None, rto_seconds=""), 0)
    assert "bosun_pitr_drill_last_status 0\n" in failed
    assert "bosun_pitr_drill_rpo_seconds NaN\n" in failed and "bosun_pitr_drill_rto_seconds NaN\n" in failed
    assert failed.count("# TYPE") == 4 and failed.endswith("\n")


def test_the_pitr_drill_report():
    result = dict(
        ok=True, target_time="T", rto_seconds=2, rpo_seconds=1, archive_timeout="5s", recovery=dict(backup="/b")
    )
    assert (
        r.pitr_drill_report(result)
        == "PITR drill passed: recovered to T in 2 s (RTO) from /b; RPO 1 s (archive_timeout 5s)"
    )
    assert r.pitr_drill_report(dict(ok=False)).startswith(
        "PITR drill FAILED: recovered to None in None s (RTO) from ?;"
    )


# --- the role and the playbooks ------------------------------------------------------------------


def test_each_playbook_is_a_header_calling_its_entry_point():
    specs = load(ROLE, "meta", "argument_specs.yml")["argument_specs"]
    for name in ENTRY_POINTS:
        (play,) = load(ROOT, "playbooks", name + ".yml")
        (task,) = play["tasks"]
        assert task["ansible.builtin.include_role"] == {"name": "bosun.platform.backup", "tasks_from": name}
        assert os.path.exists(os.path.join(ROLE, "tasks", name + ".yml")) and name in specs


def test_every_option_reads_the_inventory_variable_it_names():
    defaults = load(ROLE, "defaults", "main.yml")
    options = load(ROLE, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, value in defaults.items():
        source = "bosun_pitr_" + name[len("backup_pitr_") :] if name.startswith("backup_pitr_") else "bosun_" + name
        assert value.startswith("{{ %s | default(" % source), name
        assert "C(%s)" % source in str(options[name]["description"]), name


def test_the_filters_are_documented():
    for name in flt.FilterModule().filters():
        doc = load(ROOT, "plugins", "filter", name + ".yml")
        assert doc["DOCUMENTATION"]["name"] == name
