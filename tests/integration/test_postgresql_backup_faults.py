"""Faults: a full disk before and during the dump, kill -9 mid-way, a wrong password,
flipped bytes, retention with a single verified backup.

Each test asserts that nothing is lost (older backups still check out against their
manifests and pg_restore can read them) and that the error says what happened.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.integration.test_postgresql_dump import (
    assert_no_secret,
    create_db,
    drop_db,
    leftovers,
    sha256_of,
    toc_of,
    unique,
)
from tests.support.collection import collections_path


# -- helpers ------------------------------------------------------------------------------------
def backup_files(directory):
    """Names under a database's backup directory, lock file excepted."""
    return sorted(n for n in os.listdir(directory) if n != ".bosun-backup.lock")


def assert_intact(postgres, backup):
    """A backup still matches its manifest and pg_restore reads it."""
    manifest = json.load(open(backup["manifest"]))
    assert sha256_of(backup["path"]) == manifest["sha256"] == backup["sha256"]
    assert "TABLE public orders app" in toc_of(postgres, backup["path"])


@contextlib.contextmanager
def running_module(name, args):
    """Start a module in its own session (so the test can kill it and its children).

    On leaving, whatever is left of it is killed and its argument file removed.
    """
    fd, path = tempfile.mkstemp(prefix="bosun-args-", suffix=".json")
    proc = None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
        env = dict(os.environ, PYTHONPATH=collections_path())
        proc = subprocess.Popen(
            [sys.executable, "-m", "ansible_collections.bosun.platform.plugins.modules.%s" % name, path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        yield proc
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        os.unlink(path)


def descendants(pid):
    """{pid: comm} of every process below ``pid``."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents[int(entry)] = (ppid, comm)
    found, frontier = {}, [pid]
    while frontier:
        current = frontier.pop()
        for child, (ppid, comm) in parents.items():
            if ppid == current and child not in found:
                found[child] = comm
                frontier.append(child)
    return found


def wait_for(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


class TableLock:
    """Hold ACCESS EXCLUSIVE on a partitioned table's parent so that pg_dump waits mid-way.

    The module's own preflight (sizes of the tables' data) does not touch the parent, which
    holds no data; pg_dump locks every table it dumps, the parent included.
    """

    def __init__(self, postgres, db):
        import psycopg2

        postgres.psql(
            "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);"
            "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
            db=db,
        )
        self.conn = psycopg2.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password=postgres.password, dbname=db
        )
        self.conn.cursor().execute("LOCK TABLE ONLY events IN ACCESS EXCLUSIVE MODE")

    def release(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


def waiting_dumps(postgres, db):
    return int(
        postgres.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND wait_event_type = 'Lock'"  # noqa: S608
            % db.replace("'", "''")
        )
    )


@pytest.fixture
def db(postgres):
    name = create_db(postgres, unique("fault db"), rows=1000)
    yield name
    drop_db(postgres, name)


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs, unmounted afterwards; skipped where mounting is not permitted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)


# -- full disk -------------------------------------------------------------------------------------
def test_disk_too_small_before_the_dump(postgres, db, run_module, small_fs, tmp_path):
    args = dict(postgres.conn_args(), db=db, backup_dir=str(small_fs), space_reserve_mb=0, metrics_dir=str(tmp_path))
    first = run_module("postgresql_dump", args)
    assert first["rc"] == 0, first.get("msg")
    old = first["backups"][0]
    db_dir = os.path.dirname(old["path"])
    before = backup_files(db_dir)
    st = os.statvfs(str(small_fs))
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 16 * 1024))
    for check_mode in (True, False):
        r = run_module("postgresql_dump", args, check_mode=check_mode)
        assert r["failed"] and r["changed"] is False
        assert "not enough free space in %s for the backup of %s" % (db_dir, db) in r["msg"]
        assert "nothing was written" in r["msg"]
    assert backup_files(db_dir) == before and leftovers(str(small_fs)) == []
    assert_intact(postgres, old)
    prom = open(r["metrics_files"][0]).read()
    assert "bosun_backup_last_status{" in prom and "} 0\n" in prom
    assert 'bosun_backup_last_size_bytes{database="%s",kind="database"} %d' % (db, old["size"]) in prom


def test_disk_fills_during_the_dump_then_recovers(postgres, db, run_module, small_fs):
    # First backup of highly compressible rows, while there is room: its ratio makes the
    # next estimate tiny. Then the filesystem shrinks back to 2 MiB.
    postgres.psql("CREATE TABLE filler AS SELECT g, repeat('a', 200) AS pad FROM generate_series(1, 60000) g", db=db)
    args = dict(postgres.conn_args(), db=db, backup_dir=str(small_fs), space_reserve_mb=0)
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
    first = run_module("postgresql_dump", args)
    assert first["rc"] == 0, first.get("msg")
    subprocess.run(["mount", "-o", "remount,size=2m", str(small_fs)], check=True)
    old = first["backups"][0]
    db_dir = os.path.dirname(old["path"])
    before = backup_files(db_dir)
    # Then the data turns incompressible: the dump no longer fits in what is left.
    postgres.psql(
        "TRUNCATE filler; INSERT INTO filler"
        " SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 90000) g",
        db=db,
    )
    r = run_module("postgresql_dump", args)
    assert r["failed"] and r["changed"] is False
    assert "No space left on device" in r["msg"], r["msg"]
    assert "nothing was written under %s" % db_dir in r["msg"]
    assert backup_files(db_dir) == before and leftovers(str(small_fs)) == []
    assert_intact(postgres, old)
    # More room, same command: the backup is made.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
    again = run_module("postgresql_dump", args)
    assert again["rc"] == 0, again.get("msg")
    assert_intact(postgres, again["backups"][0])
    assert_intact(postgres, old)


# -- kill -9 ------------------------------------------------------------------------------------------
def test_kill_9_of_pg_dump_mid_way_then_rerun(postgres, db, run_module, tmp_path):
    args = dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path))
    good = run_module("postgresql_dump", dict(args, label="before"))
    assert good["rc"] == 0, good.get("msg")
    db_dir = os.path.dirname(good["backups"][0]["path"])
    lock = TableLock(postgres, db)
    try:
        with running_module("postgresql_dump", args) as proc:
            wait_for(lambda: waiting_dumps(postgres, db), "pg_dump to wait for the table lock")
            dumps = wait_for(
                lambda: [p for p, comm in descendants(proc.pid).items() if comm == "pg_dump"], "the pg_dump process"
            )
            assert any(".dump.zst.bosun-tmp-" in n for n in os.listdir(db_dir))
            os.kill(dumps[0], signal.SIGKILL)
            lock.release()
            out, err = proc.communicate(timeout=60)
    finally:
        lock.release()
    result = json.loads(out)
    assert result["failed"] is True and proc.returncode == 1
    assert "pg_dump was killed by SIGKILL" in result["msg"]
    assert "nothing was written under" in result["msg"]
    assert leftovers(str(tmp_path)) == []
    assert backup_files(db_dir) == sorted(os.path.basename(good["backups"][0][k]) for k in ("path", "manifest"))
    assert_no_secret(dict(result, _stderr=err), postgres.password)
    rerun = run_module("postgresql_dump", args)
    assert rerun["rc"] == 0, rerun.get("msg")
    assert_intact(postgres, rerun["backups"][0])
    assert_intact(postgres, good["backups"][0])


def test_crash_of_the_whole_run_leaves_a_temp_file_the_next_run_removes(postgres, db, run_module, tmp_path):
    args = dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path))
    lock = TableLock(postgres, db)
    try:
        with running_module("postgresql_dump", args) as proc:
            wait_for(lambda: waiting_dumps(postgres, db), "pg_dump to wait for the table lock")
            os.killpg(proc.pid, signal.SIGKILL)  # the module, pg_dump and zstd at once
            proc.communicate(timeout=30)
    finally:
        lock.release()
    stale = leftovers(str(tmp_path))
    assert len(stale) == 1
    assert [n for n in os.listdir(os.path.dirname(stale[0])) if not n.startswith(".")] == []
    rerun = run_module("postgresql_dump", args)
    assert rerun["rc"] == 0, rerun.get("msg")
    assert rerun["stale_temp_files"] == stale
    assert leftovers(str(tmp_path)) == []
    assert_intact(postgres, rerun["backups"][0])


# -- wrong password ---------------------------------------------------------------------------------
def test_wrong_password_fails_without_leaking_it(postgres, db, run_module, tmp_path):
    wrong = "wr0ng 'pa$$' word " + postgres.password[-4:]
    args = dict(postgres.conn_args(login_password=wrong), db=db, backup_dir=str(tmp_path / "b"))
    r = run_module("postgresql_dump", args)
    assert r["failed"] and r["changed"] is False
    assert "password authentication failed" in r["msg"]
    assert "cannot connect to PostgreSQL at 127.0.0.1:%d/%s as postgres" % (postgres.port, db) in r["msg"]
    assert_no_secret(r, wrong, postgres.password)
    assert not os.path.exists(str(tmp_path / "b"))
    # The restore side: the backup checks out, the connection does not.
    good = run_module("postgresql_dump", dict(args, login_password=postgres.password))
    assert good["rc"] == 0, good.get("msg")
    drill = run_module(
        "postgresql_restore",
        dict(postgres.conn_args(login_password=wrong), backup=good["backups"][0]["path"], drill=True),
    )
    assert drill["failed"] and "password authentication failed" in drill["msg"]
    assert_no_secret(drill, wrong, postgres.password)


# -- flipped bytes ---------------------------------------------------------------------------------
def test_flipped_bytes_refused_by_restore_and_drill_and_not_counted(postgres, db, run_module, tmp_path):
    args = dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path))
    older = run_module("postgresql_dump", dict(args, label="a"))["backups"][0]
    newer = run_module("postgresql_dump", dict(args, label="b"))["backups"][0]
    size = os.path.getsize(newer["path"])
    with open(newer["path"], "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    target = unique("from flipped")
    for extra in (
        dict(db=db, backup_dir=str(tmp_path), target_db=target),
        dict(backup=newer["path"], target_db=target),
        dict(db=db, backup_dir=str(tmp_path), drill=True),
    ):
        r = run_module("postgresql_restore", dict(postgres.conn_args(), **extra))
        assert r["failed"] and r["changed"] is False
        assert r["msg"].startswith("refusing to restore %s: sha256" % newer["path"])
        assert target not in postgres.psql("SELECT datname FROM pg_database").splitlines()
    # Retention does not count the flipped backup: the older one is the copy kept.
    kept = run_module("postgresql_dump", dict(args, dump=False, keep_last=1))
    assert kept["rc"] == 0, kept.get("msg")
    assert kept["deleted"] == [] and kept["kept"] == [newer["path"], older["path"]]
    assert [c["path"] for c in kept["corrupt"]] == [newer["path"]] and "sha256" in kept["corrupt"][0]["reason"]
    # A new verified backup makes both older ones expendable, the flipped one included.
    fresh = run_module("postgresql_dump", dict(args, keep_last=1))
    assert fresh["rc"] == 0, fresh.get("msg")
    assert sorted(fresh["deleted"]) == sorted([newer["path"], older["path"]])
    assert_intact(postgres, fresh["backups"][0])
    # And the older intact backup could have been restored: restore by path works.
    restored = unique("from older")
    try:
        ok = run_module(
            "postgresql_restore", dict(postgres.conn_args(), backup=fresh["backups"][0]["path"], target_db=restored)
        )
        assert ok["rc"] == 0, ok.get("msg")
        assert postgres.psql("SELECT count(*) FROM public.orders", db=restored) == "1000"
    finally:
        drop_db(postgres, restored)


def test_retention_with_a_single_verified_backup(postgres, db, run_module, tmp_path):
    args = dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path))
    only = run_module("postgresql_dump", args)["backups"][0]
    for policy in (dict(keep_days=0), dict(keep_last=1, keep_days=0), dict(keep_last=1)):
        for check_mode in (True, False):
            r = run_module("postgresql_dump", dict(args, dump=False, **policy), check_mode=check_mode)
            assert r["rc"] == 0, r.get("msg")
            assert r["deleted"] == [] and r["changed"] is False and r["kept"] == [only["path"]]
    assert_intact(postgres, only)


# -- kill -9 of a restore -------------------------------------------------------------------------
def staging_databases(postgres):
    names = postgres.psql("SELECT datname FROM pg_database").splitlines()
    return sorted(n for n in names if n.startswith(("bosun_restore_", "bosun_replaced_", "bosun_drill_")))


def module_sessions(postgres):
    """Sessions the modules opened (their maintenance connection included)."""
    return int(postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bosun.platform'"))


class RoleLock:
    """Hold an uncommitted DROP ROLE: pg_restore's ``ALTER TABLE ... OWNER TO`` that role waits.

    A controlled pause point in the middle of a restore; ``release`` rolls the drop back.
    """

    def __init__(self, postgres, role):
        import psycopg2

        self.conn = psycopg2.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password=postgres.password, dbname="postgres"
        )
        self.conn.cursor().execute('DROP ROLE "%s"' % role.replace('"', '""'))

    def release(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


def test_kill_9_mid_restore_then_rerun_cleans_up(postgres, db, run_module, tmp_path):
    role = "pause %s" % db[-6:]
    postgres.psql('CREATE ROLE "%s"' % role)
    try:
        postgres.psql('CREATE TABLE pause_point (x int); ALTER TABLE pause_point OWNER TO "%s"' % role, db=db)
        backup = run_module("postgresql_dump", dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path)))
        assert backup["rc"] == 0, backup.get("msg")
        path = backup["backups"][0]["path"]
        # After the backup: the role owns nothing (so it can be dropped), and the live
        # database gets a table the backup lacks, to show it is never touched.
        postgres.psql("ALTER TABLE pause_point OWNER TO app; CREATE TABLE still_here (x int)", db=db)
        args = dict(postgres.conn_args(), backup=path, replace_existing=True, jobs=2)
        lock = RoleLock(postgres, role)
        try:
            with running_module("postgresql_restore", args) as proc:
                wait_for(
                    lambda: int(
                        postgres.psql(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'bosun\\_restore\\_%'"
                            " AND wait_event_type = 'Lock'"
                        )
                    ),
                    "pg_restore to wait for the role",
                )
                os.killpg(proc.pid, signal.SIGKILL)  # the module and pg_restore at once
                proc.communicate(timeout=30)
        finally:
            lock.release()
        stale = leftovers(str(tmp_path))
        assert len(stale) == 1 and os.path.dirname(stale[0]) == os.path.dirname(path)  # the decompressed copy
        (staging,) = staging_databases(postgres)
        assert staging.startswith("bosun_restore_")
        assert postgres.psql("SELECT to_regclass('still_here') IS NOT NULL", db=db) == "t"
        wait_for(lambda: module_sessions(postgres) == 0, "the server to close the killed module's sessions")

        target = unique("after crash")
        again = dict(postgres.conn_args(), backup=path, target_db=target, jobs=2)
        planned = run_module("postgresql_restore", again, check_mode=True)
        assert planned["rc"] == 0, planned.get("msg")
        assert planned["stale_temp_files"] == stale
        assert [(d["name"], d["kind"], d["ours"], d["removed"]) for d in planned["leftover_databases"]] == [
            (staging, "staging", True, True)
        ]
        assert leftovers(str(tmp_path)) == stale and staging_databases(postgres) == [staging]
        try:
            done = run_module("postgresql_restore", again)
            assert done["rc"] == 0, done.get("msg")
            assert done["stale_temp_files"] == stale
            assert [(d["name"], d["removed"], d["target"]) for d in done["leftover_databases"]] == [(staging, True, db)]
            assert leftovers(str(tmp_path)) == [] and staging_databases(postgres) == []
            assert postgres.psql("SELECT count(*) FROM public.orders", db=target) == "1000"
            assert postgres.psql("SELECT to_regclass('still_here') IS NOT NULL", db=db) == "t"
            assert postgres.psql("SELECT count(*) FROM public.orders", db=db) == "1000"
            assert_no_secret(done, postgres.password)
        finally:
            drop_db(postgres, target)
    finally:
        for name in staging_databases(postgres):
            drop_db(postgres, name)
        postgres.psql('DROP ROLE IF EXISTS "%s"' % role)


def test_leftover_databases_removed_only_when_ours(postgres, db, run_module, tmp_path):
    from ansible_collections.bosun.platform.plugins.module_utils._backup.restore import marker_comment

    def make(name, comment=None):
        postgres.psql('CREATE DATABASE "%s"' % name)
        if comment is not None:
            postgres.psql("COMMENT ON DATABASE \"%s\" IS '%s'" % (name, comment.replace("'", "''")))

    stranger = "bosun_restore_0123456789"  # the name pattern alone does not make it ours
    done_swap = "bosun_replaced_aaaaaaaaaa"  # its target exists: the swap finished
    only_copy = "bosun_replaced_bbbbbbbbbb"  # its target is gone: never dropped
    drill = "bosun_drill_cccccccccc"
    make(stranger)
    make(done_swap, marker_comment("replaced", "aaaaaaaaaa", db))
    make(only_copy, marker_comment("replaced", "bbbbbbbbbb", db + " gone"))
    make(drill, marker_comment("drill", "cccccccccc", db))
    try:
        backup = run_module("postgresql_dump", dict(postgres.conn_args(), db=db, backup_dir=str(tmp_path)))
        r = run_module(
            "postgresql_restore", dict(postgres.conn_args(), backup=backup["backups"][0]["path"], drill=True)
        )
        assert r["rc"] == 0, r.get("msg")
        found = {d["name"]: (d["ours"], d["removed"]) for d in r["leftover_databases"]}
        assert found == {
            stranger: (False, False),
            done_swap: (True, True),
            only_copy: (True, False),
            drill: (True, True),
        }
        assert r["changed"] is True
        assert staging_databases(postgres) == sorted([stranger, only_copy])
        # module.warn: Ansible 2.19 returns warnings as structured events
        assert "%s is the database %s gone as it was" % (only_copy, db) in json.dumps(r["warnings"])
    finally:
        for name in (stranger, done_swap, only_copy, drill):
            drop_db(postgres, name)
