"""postgresql_dump / postgresql_restore main(): argument handling, refusals, redaction.

These run the modules as Ansible does (a subprocess reading its arguments from a file) but
need no server: every case fails before, or at, the connection.
"""

import json
import os

from tests.support.modules import run_module
from tests.support.servers import free_port
from tests.unit.test_backup_layout import make_backup

SECRET = "un 'it' pa$$ word"


def no_secret(result):
    assert SECRET not in json.dumps(result)
    assert SECRET not in result["_stderr"]


def test_dump_refuses_bad_label_before_connecting(tmp_path):
    r = run_module(
        "postgresql_dump", dict(db="app", backup_dir=str(tmp_path), label="has space", login_password=SECRET)
    )
    assert r["failed"] and "label 'has space' is not allowed" in r["msg"]
    assert os.listdir(str(tmp_path)) == []
    no_secret(r)


def test_dump_connection_failure_names_server_not_password(tmp_path):
    port = free_port()
    args = dict(
        db="app", backup_dir=str(tmp_path / "b"), login_host="127.0.0.1", login_port=port, login_password=SECRET
    )
    r = run_module("postgresql_dump", args)
    assert r["failed"] and r["rc"] == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:%d/app as postgres" % port in r["msg"]
    assert "Traceback" not in r["_stderr"]
    no_secret(r)
    r = run_module("postgresql_dump", args, check_mode=True)
    assert r["failed"] and "cannot connect" in r["msg"]
    no_secret(r)


def test_dump_requires_a_database_choice(tmp_path):
    r = run_module("postgresql_dump", dict(backup_dir=str(tmp_path)))
    assert r["failed"] and "name a database with db, or set all_databases: true" in r["msg"]


def test_retention_only_runs_without_a_server(tmp_path):
    d = tmp_path / "app"
    for day in (1, 2, 3):
        make_backup(str(d), "2025010%dT000000Z" % day)
    args = dict(db="app", backup_dir=str(tmp_path), dump=False, keep_last=1, login_port=free_port())
    planned = run_module("postgresql_dump", args, check_mode=True)
    assert planned["changed"] is True and len(planned["deleted"]) == 2
    assert len(os.listdir(str(d))) == 6
    done = run_module("postgresql_dump", args)
    assert done["changed"] is True and done["deleted"] == planned["deleted"]
    assert sorted(os.listdir(str(d))) == [
        ".bosun-backup.lock",
        "20250103T000000Z.dump.zst",
        "20250103T000000Z.manifest.json",
    ]
    again = run_module("postgresql_dump", args)
    assert again["changed"] is False and again["deleted"] == []


def test_restore_latest_needs_backup_dir_and_db():
    r = run_module("postgresql_restore", dict(db="app"))
    assert r["failed"] and "backup: latest needs backup_dir and db" in r["msg"]


def test_restore_refuses_a_path_that_is_no_backup(tmp_path):
    stray = tmp_path / "dump.sql"
    stray.write_text("SELECT 1;")
    r = run_module("postgresql_restore", dict(backup=str(stray)))
    assert r["failed"] and "is not a backup written by postgresql_dump" in r["msg"]


def test_restore_refuses_flipped_bytes_naming_the_file(tmp_path):
    path = make_backup(str(tmp_path / "app"), "20250101T000000Z", data=b"0123456789abcdef")
    with open(path, "r+b") as f:
        f.seek(5)
        f.write(b"\xff")
    for args in (dict(backup=path), dict(db="app", backup_dir=str(tmp_path), drill=True)):
        args.update(login_port=free_port(), login_password=SECRET)
        for check_mode in (True, False):
            r = run_module("postgresql_restore", args, check_mode=check_mode)
            assert r["failed"] and r["changed"] is False
            assert r["msg"].startswith("refusing to restore %s: sha256" % path)
            no_secret(r)


def test_restore_with_no_backup_at_all(tmp_path):
    r = run_module("postgresql_restore", dict(db="my db", backup_dir=str(tmp_path), drill=True))
    assert r["failed"] and "no backup of database my db in %s" % os.path.join(str(tmp_path), "my%20db") in r["msg"]


def test_drill_rejects_target_db():
    r = run_module("postgresql_restore", dict(db="a", backup_dir="/nonexistent", drill=True, target_db="x"))
    assert r["failed"] and "target_db does not apply to a drill" in r["msg"]


def labelled_backup(directory, stem, label, **kw):
    """make_backup with the label in the name and in the manifest (as postgresql_dump writes it)."""
    path = make_backup(directory, "%s-%s" % (stem, label), **kw)
    manifest = os.path.join(directory, "%s-%s.manifest.json" % (stem, label))
    with open(manifest) as f:
        data = json.load(f)
    data["label"] = label
    with open(manifest, "w") as f:
        json.dump(data, f)
    return path


def listing(directory):
    return sorted(os.path.join(p, n) for p, _d, names in os.walk(directory) for n in names)


def test_restore_by_label_reports_the_backup_it_chose(tmp_path):
    d = str(tmp_path / "app")
    labelled_backup(d, "20250101T000000Z", "pre-migration")
    chosen = labelled_backup(d, "20250102T000000Z", "pre-migration")
    labelled_backup(d, "20250103T000000Z", "pre-migration", verified=False)
    labelled_backup(d, "20250104T000000Z", "nightly")
    before = listing(str(tmp_path))
    args = dict(
        db="app", backup_dir=str(tmp_path), label="pre-migration", login_port=free_port(), login_password=SECRET
    )
    for check_mode in (True, False):
        # No server listens: the run stops after the choice, which the result still names.
        r = run_module("postgresql_restore", args, check_mode=check_mode)
        assert r["failed"] and r["changed"] is False
        assert r["backup"]["path"] == chosen and r["backup"]["selected_by"] == "label"
        assert r["backup"]["label"] == "pre-migration" and r["backup"]["timestamp"] == "2025-01-02T00:00:00+00:00"
        assert "Traceback" not in r["_stderr"]
        no_secret(r)
    assert listing(str(tmp_path)) == before


def test_restore_by_label_with_no_match_fails_naming_it_and_changes_nothing(tmp_path):
    d = str(tmp_path / "app")
    labelled_backup(d, "20250101T000000Z", "nightly")
    labelled_backup(d, "20250102T000000Z", "pre-migration", verified=False)
    before = listing(str(tmp_path))
    args = dict(db="app", backup_dir=str(tmp_path), label="pre-migration", login_port=free_port())
    for check_mode in (True, False):
        r = run_module("postgresql_restore", args, check_mode=check_mode)
        assert r["failed"] and r["changed"] is False and "backup" not in r
        assert r["msg"] == (
            "no verified backup of database app with label pre-migration in %s "
            "(1 with that label not verified or incomplete)" % d
        )
    assert listing(str(tmp_path)) == before


def test_restore_label_and_a_backup_path_are_mutually_exclusive(tmp_path):
    path = labelled_backup(str(tmp_path / "app"), "20250101T000000Z", "nightly")
    r = run_module("postgresql_restore", dict(backup=path, label="nightly", db="app", backup_dir=str(tmp_path)))
    assert r["failed"] and not r.get("changed")
    assert r["msg"].startswith("label and backup: %s are mutually exclusive" % path)
    r = run_module("postgresql_restore", dict(label="nightly"))
    assert r["failed"] and "label needs backup_dir and db" in r["msg"]
