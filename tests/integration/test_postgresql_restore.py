"""postgresql_restore against a real PostgreSQL: new database, replace_existing, formats, drills.

The restored data is compared with the source by psql (row counts and an md5 over every
order), and the server's database list shows that no staging or scratch database is left.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.integration.test_postgresql_dump import (
    AWKWARD,
    TOTALS,
    assert_no_secret,
    create_db,
    databases,
    drop_db,
    qi,
    table_counts,
    unique,
)
from tests.support.collection import ROOT, collections_path
from tests.support.modules import run_module as _run_module

SOURCE = AWKWARD + " src"


def no_staging_left(postgres):
    return [d for d in databases(postgres) if d.startswith(("bosun_restore_", "bosun_replaced_", "bosun_drill_"))]


@pytest.fixture(scope="module")
def source(postgres, tmp_path_factory):
    """The source database, its expected contents and one backup per format."""
    from tests.support.modules import run_module

    create_db(postgres, SOURCE, rows=3000)
    expected = table_counts(postgres, SOURCE)
    backup_dir = str(tmp_path_factory.mktemp("restore-src"))
    backups = {}
    for key, extra in (
        ("zstd", dict()),
        ("lz4", dict(compression="lz4", label="lz4")),
        ("none", dict(compression="none", label="none")),
        ("directory", dict(format="directory", jobs=2, label="dir")),
    ):
        r = run_module("postgresql_dump", dict(postgres.conn_args(), db=SOURCE, backup_dir=backup_dir, **extra))
        assert r["rc"] == 0, r.get("msg")
        backups[key] = r["backups"][0]["path"]
    yield dict(db=SOURCE, expected=expected, backup_dir=backup_dir, backups=backups)
    drop_db(postgres, SOURCE)


def test_restore_into_new_database_check_mode_first(postgres, source, run_module):
    target = unique("restored 'it's\" here")
    args = dict(postgres.conn_args(), backup=source["backups"]["zstd"], target_db=target)
    planned = run_module("postgresql_restore", args, check_mode=True)
    assert planned["rc"] == 0, planned.get("msg")
    assert planned["changed"] is True and planned["target_exists"] is False and planned["replaced"] is False
    assert target not in databases(postgres)
    done = run_module("postgresql_restore", args)
    try:
        assert done["rc"] == 0, done.get("msg")
        assert done["changed"] is True and done["jobs"] == 1 and done["restore_seconds"] > 0
        assert any("--single-transaction" in c and "--exit-on-error" in c for c in done["commands"])
        assert table_counts(postgres, target) == source["expected"]
        owner_sql = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '%s'"  # noqa: S608
        assert postgres.psql(owner_sql % target.replace("'", "''")) == "app"
        assert no_staging_left(postgres) == []
        assert_no_secret(done, postgres.password)
        assert_no_secret(planned, postgres.password)
    finally:
        drop_db(postgres, target)


@pytest.mark.parametrize("key, jobs", [("lz4", 1), ("zstd", 2), ("none", 2), ("directory", 2)])
def test_restore_each_format(postgres, source, run_module, key, jobs):
    target = unique("fmt %s" % key)
    r = run_module(
        "postgresql_restore", dict(postgres.conn_args(), backup=source["backups"][key], target_db=target, jobs=jobs)
    )
    try:
        assert r["rc"] == 0, r.get("msg")
        assert r["jobs"] == jobs
        assert table_counts(postgres, target) == source["expected"]
        assert [n for n in os.listdir(os.path.dirname(source["backups"][key])) if ".bosun-tmp-" in n] == []
    finally:
        drop_db(postgres, target)


def test_existing_target_needs_replace_existing_and_is_replaced_whole(postgres, source, run_module):
    target = unique("live db")
    postgres.psql("CREATE DATABASE %s OWNER app" % qi(target))
    postgres.psql("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42)", db=target)
    try:
        args = dict(postgres.conn_args(), db=source["db"], backup_dir=source["backup_dir"], target_db=target)
        for check_mode in (True, False):
            refused = run_module("postgresql_restore", args, check_mode=check_mode)
            assert refused["failed"] and refused["changed"] is False
            assert (
                "database %s already exists" % target in refused["msg"] and "replace_existing: true" in refused["msg"]
            )
        assert postgres.psql("SELECT x FROM marker", db=target) == "42"
        planned = run_module("postgresql_restore", dict(args, replace_existing=True), check_mode=True)
        assert planned["changed"] is True and planned["target_exists"] is True and planned["replaced"] is True
        assert postgres.psql("SELECT x FROM marker", db=target) == "42"
        done = run_module("postgresql_restore", dict(args, replace_existing=True))
        assert done["rc"] == 0, done.get("msg")
        assert done["replaced"] is True and done["changed"] is True
        assert postgres.psql("SELECT to_regclass('marker') IS NULL", db=target) == "t"
        assert table_counts(postgres, target) == source["expected"]
        assert no_staging_left(postgres) == []
    finally:
        drop_db(postgres, target)


def test_failed_restore_leaves_the_target_as_it_was(postgres, run_module, tmp_path):
    """A backup whose table owner no longer exists: pg_restore stops; the target is untouched."""
    db = unique("owner gone")
    role = "gone %s" % db[-6:]
    postgres.psql("CREATE ROLE %s" % qi(role))
    postgres.psql("CREATE DATABASE %s OWNER app" % qi(db))
    try:
        postgres.psql("CREATE TABLE t (x int); ALTER TABLE t OWNER TO %s" % qi(role), db=db)
        r = run_module("postgresql_dump", dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path)))
        assert r["rc"] == 0, r.get("msg")
        path = r["backups"][0]["path"]
        postgres.psql("DROP TABLE t; CREATE TABLE marker (x int); INSERT INTO marker VALUES (7)", db=db)
        postgres.psql("DROP ROLE %s" % qi(role))
        failed = run_module("postgresql_restore", dict(postgres.conn_args(), backup=path, replace_existing=True))
        assert failed["failed"] and "restore of %s into" % path in failed["msg"]
        assert 'role "%s" does not exist' % role in failed["msg"]
        assert postgres.psql("SELECT x FROM marker", db=db) == "7"
        assert no_staging_left(postgres) == []
        ok = run_module(
            "postgresql_restore", dict(postgres.conn_args(), backup=path, replace_existing=True, no_owner=True)
        )
        assert ok["rc"] == 0, ok.get("msg")
        assert postgres.psql("SELECT to_regclass('marker') IS NULL AND to_regclass('t') IS NOT NULL", db=db) == "t"
    finally:
        drop_db(postgres, db)
        postgres.psql("DROP ROLE IF EXISTS %s" % qi(role))


# A row per dump in the awkwardly named table (a constant), to tell the restored backup by its contents.
MARK_SQL = "INSERT INTO " + TOTALS + " VALUES ('mark', %d)"  # noqa: S608
MARKS_SQL = "SELECT string_agg(total::text, ',' ORDER BY total) FROM " + TOTALS + " WHERE region = 'mark'"  # noqa: S608


def test_restore_by_label_takes_the_newest_verified_backup_with_it(postgres, run_module, tmp_path):
    """Three pre-migration dumps (the newest marked unverified) and a newer nightly one: the
    second pre-migration dump is restored, as its rows show."""
    db = create_db(postgres, unique("labelled 'db'"), rows=200)
    target = unique("from label")
    try:
        backups = []
        for i, label in enumerate(["pre-migration", "pre-migration", "pre-migration", "nightly"]):
            postgres.psql(MARK_SQL % i, db=db)
            r = run_module("postgresql_dump", dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path), label=label))
            assert r["rc"] == 0, r.get("msg")
            backups.append(r["backups"][0])
        with open(backups[2]["manifest"]) as f:
            manifest = json.load(f)
        with open(backups[2]["manifest"], "w") as f:
            json.dump(dict(manifest, verified=False), f)
        directory = os.path.dirname(backups[0]["path"])
        files = sorted(os.listdir(directory))

        args = dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path), label="pre-migration", target_db=target)
        planned = run_module("postgresql_restore", args, check_mode=True)
        assert planned["rc"] == 0, planned.get("msg")
        assert planned["changed"] is True and planned["target_exists"] is False
        assert planned["backup"]["path"] == backups[1]["path"] and planned["backup"]["selected_by"] == "label"
        assert target not in databases(postgres)
        done = run_module("postgresql_restore", args)
        assert done["rc"] == 0, done.get("msg")
        assert done["changed"] is True and done["backup"] == planned["backup"]
        assert postgres.psql(MARKS_SQL, db=target) == "0,1"
        assert no_staging_left(postgres) == []
        assert_no_secret(done, postgres.password)

        other = unique("no label")
        for check_mode in (True, False):
            missing = run_module("postgresql_restore", dict(args, label="pre-upgrade", target_db=other), check_mode)
            assert missing["failed"] and missing["changed"] is False
            assert missing["msg"] == "no verified backup of database %s with label pre-upgrade in %s" % (db, directory)
        assert other not in databases(postgres) and no_staging_left(postgres) == []
        assert sorted(os.listdir(directory)) == files
    finally:
        drop_db(postgres, target)
        drop_db(postgres, db)


def test_drill_passes_reports_rto_and_writes_metrics(postgres, source, run_module, tmp_path):
    args = dict(
        postgres.conn_args(),
        db=source["db"],
        backup_dir=source["backup_dir"],
        drill=True,
        drill_tables=["public.orders", '"sales dept"."Q1 ""totals"""'],
        drill_min_rows={"public.orders": 3000},
        drill_sql=["SELECT count(DISTINCT customer) = 97 FROM public.orders"],
        metrics_dir=str(tmp_path),
    )
    planned = run_module("postgresql_restore", args, check_mode=True)
    assert planned["rc"] == 0 and planned["changed"] is False and "checks" not in planned
    r = run_module("postgresql_restore", args)
    assert r["rc"] == 0, r.get("msg")
    assert r["changed"] is False and r["drill_database_dropped"] is True
    assert r["backup"]["path"] == source["backups"]["directory"]  # the newest backup
    assert [c["ok"] for c in r["checks"]] == [True] * 5
    assert r["checks"][0]["detail"] == "2 tables restored, 2 in the backup"
    assert r["restore_seconds"] > 0
    assert r["drill_database"] not in databases(postgres) and no_staging_left(postgres) == []
    prom = open(r["metrics_file"]).read()
    assert r["metrics_file"] == str(tmp_path / "bosun_restore_drill_bosun%20%22odd%22%20db%27s%20name%20src.prom")
    assert "bosun_restore_drill_last_status{" in prom and "} 1\n" in prom
    assert (
        'bosun_restore_drill_restore_seconds{database="bosun \\"odd\\" db\'s name src"} %r' % r["restore_seconds"]
        in prom
    )
    assert_no_secret(r, postgres.password)


def test_drill_fails_on_unmet_checks_and_still_cleans_up(postgres, source, run_module, tmp_path):
    args = dict(
        postgres.conn_args(),
        backup=source["backups"]["lz4"],
        drill=True,
        drill_tables=["public.invoices"],
        drill_min_rows={"public.orders": 3001},
        drill_sql=["SELECT false", "SELECT 1/0"],
        metrics_dir=str(tmp_path),
    )
    r = run_module("postgresql_restore", args)
    assert r["failed"] and r["changed"] is False
    assert "failed 4 of 5 checks" in r["msg"]
    assert "table public.invoices exists (missing)" in r["msg"]
    assert "rows of public.orders (3000 rows, at least 3001 wanted)" in r["msg"]
    assert "division by zero" in r["msg"]
    assert no_staging_left(postgres) == []
    prom = open(r["metrics_file"]).read()
    assert 'bosun_restore_drill_last_status{database="bosun \\"odd\\" db\'s name src"} 0' in prom
    assert 'bosun_restore_drill_last_success_timestamp_seconds{database="bosun \\"odd\\" db\'s name src"} NaN' in prom


def test_globals_backup_is_refused_with_a_pointer(postgres, run_module, tmp_path):
    r = run_module("postgresql_dump", dict(postgres.conn_args(), all_databases=True, backup_dir=str(tmp_path)))
    assert r["rc"] == 0, r.get("msg")
    (globals_path,) = [b["path"] for b in r["backups"] if b["kind"] == "globals"]
    refused = run_module("postgresql_restore", dict(postgres.conn_args(), backup=globals_path, replace_existing=True))
    assert refused["failed"] and "is a globals backup" in refused["msg"]
    assert json.load(open(globals_path.replace(".sql", ".manifest.json")))["kind"] == "globals"


# -- the playbooks -------------------------------------------------------------------------------
def ansible_playbook(playbook, inventory, extra_vars_file, *extra):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    argv = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i",
        inventory,
        "-e",
        "@" + extra_vars_file,
        os.path.join(ROOT, "playbooks", playbook),
    ] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)


def test_playbooks_backup_drill_and_confirmed_restore(postgres, tmp_path):
    db = create_db(postgres, unique("playbook 'db'"), rows=700)
    try:
        inventory = tmp_path / "inventory.ini"
        inventory.write_text(
            "[db]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
        )
        backup_dir = tmp_path / "backups"
        settings = dict(
            bosun_backup_login_host=postgres.host,
            bosun_backup_login_port=postgres.port,
            bosun_backup_login_password=postgres.password,
            bosun_backup_dir=str(backup_dir),
            bosun_backup_databases=[db],
            bosun_backup_metrics_dir=str(tmp_path),
            bosun_backup_result_file=str(tmp_path / "backup.json"),
            bosun_backup_drills=[dict(db=db, tables=["public.orders"], min_rows={"public.orders": 700})],
            bosun_backup_drill_result_file=str(tmp_path / "drill.json"),
            bosun_backup_restore_db=db,
            bosun_lock_path=str(tmp_path / "platform.lock"),  # restore.yml takes the platform lock
            # On a db host the jobs become postgres (the rehearsal runs them so); here they run
            # as the test's user against the loopback server, with its login.
            bosun_backup_become=False,
        )
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(settings))

        run = ansible_playbook("backup.yml", str(inventory), str(vars_file))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        result = json.load(open(str(tmp_path / "backup.json")))
        assert result["ok"] is True and result["errors"] == []
        (backup,) = result["backups"]
        assert backup["database"] == db and os.path.exists(backup["path"])

        run = ansible_playbook("restore_drill.yml", str(inventory), str(vars_file))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        drill = json.load(open(str(tmp_path / "drill.json")))
        assert drill["ok"] is True and drill["backups"][0]["path"] == backup["path"]
        assert [c["ok"] for c in drill["checks"][0]] == [True, True, True]
        assert no_staging_left(postgres) == []

        postgres.psql("INSERT INTO public.orders (id, customer) VALUES (-1, -1)", db=db)
        refused = ansible_playbook("restore.yml", str(inventory), str(vars_file))
        assert refused.returncode != 0
        assert "exists on localhost" in refused.stdout and "bosun_backup_restore_confirm=" in refused.stdout
        assert postgres.psql("SELECT count(*) FROM public.orders", db=db) == "701"

        done = ansible_playbook(
            "restore.yml", str(inventory), str(vars_file), "-e", json.dumps({"bosun_backup_restore_confirm": db})
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert postgres.psql("SELECT count(*) FROM public.orders", db=db) == "700"
        safety = [n for n in os.listdir(os.path.dirname(backup["path"])) if n.endswith("-pre-restore.dump.zst")]
        assert len(safety) == 1
        for out in (run, refused, done):
            assert postgres.password not in out.stdout + out.stderr
    finally:
        drop_db(postgres, db)


# -- database-level privileges and settings ---------------------------------------------------------
def database_properties(postgres, db):
    """What a database carries outside its objects: owner, ACL, settings (with and without a
    role), comment and connection limit; role names only, so two databases compare equal."""
    where = "WHERE d.datname = '%s'" % db.replace("'", "''")
    acl_sql = "SELECT array_agg(a::text ORDER BY a::text) FROM pg_database d, unnest(d.datacl) a "
    settings_sql = (
        "SELECT coalesce(r.rolname, '(database)') || ': ' || array_to_string(s.setconfig, ' | ')"
        " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " LEFT JOIN pg_roles r ON r.oid = s.setrole "
    )
    one = "SELECT %s FROM pg_database d "
    return dict(
        owner=postgres.psql(one % "pg_get_userbyid(d.datdba)" + where),
        acl=postgres.psql(acl_sql + where),
        settings=postgres.psql(settings_sql + where + " ORDER BY 1").splitlines(),
        comment=postgres.psql(one % "shobj_description(d.oid, 'pg_database')" + where),
        connection_limit=postgres.psql(one % "d.datconnlimit" + where),
    )


def connect_as(postgres, db, role, password):
    """(ok, stderr) of a psql login of ``role`` into ``db``."""
    proc = postgres.psql("SELECT current_user", db=db, user=role, password=password, check=False)
    return proc.returncode == 0, proc.stderr


@pytest.fixture
def locked_down(postgres, tmp_path):
    """A database closed to PUBLIC, open to one reader, with database and per-role settings."""
    db = create_db(postgres, unique("locked 'down' db"), rows=50)
    suffix = db[-6:]
    reader, outsider, password = "reader %s" % suffix, "outsider %s" % suffix, "pw 'it' $x %s" % suffix
    for role in (reader, outsider):
        postgres.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (qi(role), password.replace("'", "''")))
    postgres.psql(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;"
        "GRANT CONNECT ON DATABASE {db} TO {reader};"
        "ALTER DATABASE {db} SET work_mem = '12MB';"
        "ALTER DATABASE {db} SET search_path = 'sales dept', public;"
        "ALTER ROLE {reader} IN DATABASE {db} SET statement_timeout = '7s';"
        'ALTER ROLE {reader} IN DATABASE {db} SET search_path = "sales dept";'
        "COMMENT ON DATABASE {db} IS 'orders; it''s \"ALTER DATABASE {lit}\"';"
        "ALTER DATABASE {db} CONNECTION LIMIT 33".format(db=qi(db), reader=qi(reader), lit=db.replace("'", "''"))
    )
    r = _run_module("postgresql_dump", dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path)))
    assert r["rc"] == 0, r.get("msg")
    expected = database_properties(postgres, db)
    assert "app=CTc/app" in expected["acl"] and "reader" in expected["acl"] and not re.search(r"[{,]=", expected["acl"])
    assert len(expected["settings"]) == 2
    targets = [db]
    yield dict(
        db=db,
        path=r["backups"][0]["path"],
        expected=expected,
        reader=reader,
        outsider=outsider,
        password=password,
        targets=targets,
    )
    for name in targets:
        drop_db(postgres, name)
    for role in (reader, outsider):
        postgres.psql("DROP ROLE IF EXISTS %s" % qi(role))


def assert_locked_down(postgres, db, case):
    assert database_properties(postgres, db) == case["expected"]
    ok, err = connect_as(postgres, db, case["outsider"], case["password"])
    assert not ok and "permission denied for database" in err, err
    ok, err = connect_as(postgres, db, case["reader"], case["password"])
    assert ok, err
    shown = postgres.psql("SHOW search_path", db=db, user=case["reader"], password=case["password"])
    assert shown == '"sales dept"'


def test_restore_keeps_database_privileges_and_settings_when_replacing(postgres, locked_down, run_module):
    db = locked_down["db"]
    assert_locked_down(postgres, db, locked_down)
    # Drift after the backup: the restore puts the database back as it was dumped.
    postgres.psql("GRANT CONNECT ON DATABASE %s TO PUBLIC; ALTER DATABASE %s RESET ALL" % (qi(db), qi(db)))
    r = run_module("postgresql_restore", dict(postgres.conn_args(), backup=locked_down["path"], replace_existing=True))
    assert r["rc"] == 0, r.get("msg")
    assert_locked_down(postgres, db, locked_down)
    assert r["replaced"] is True and r["database_properties"]["privileges"] == 2
    assert no_staging_left(postgres) == []


def test_restore_into_a_new_database_carries_privileges_and_settings(postgres, locked_down, run_module):
    target = unique("locked copy")
    locked_down["targets"].append(target)
    r = run_module(
        "postgresql_restore", dict(postgres.conn_args(), backup=locked_down["path"], target_db=target, jobs=2)
    )
    assert r["rc"] == 0, r.get("msg")
    assert_locked_down(postgres, target, locked_down)
    assert r["database_properties"] == dict(privileges=2, settings=3, role_settings=2, comment=1, security_labels=0)
    drill = run_module("postgresql_restore", dict(postgres.conn_args(), backup=locked_down["path"], drill=True))
    assert drill["rc"] == 0, drill.get("msg")
    assert no_staging_left(postgres) == []
