"""postgresql_maintenance against a real PostgreSQL: bloat, locks, budgets, long transactions.

Every effect is probed independently of the module, through psql or a psycopg2 session of
the test's own: n_dead_tup, pg_index.indisvalid, pg_stat_activity. Autovacuum is switched off
on the test tables so that only the module vacuums them. The harness server preloads
pg_stat_statements, so the slow-query list is tested for real in one database and the
"not installed" note in another.
"""

import json
import time

import psycopg2
import pytest

from tests.support.servers import PG_PASSWORD

ODD_SCHEMA = "odd schema"
ODD_TABLE = 'it\'s "q" t'
ODD_PLAIN = "%s.%s" % (ODD_SCHEMA, ODD_TABLE)


def qi(name):
    return '"%s"' % name.replace('"', '""')


def qn(schema, table):
    return "%s.%s" % (qi(schema), qi(table))


def lit(text):
    return "'%s'" % text.replace("'", "''")


def make_table(pg, db, schema, table, rows, delete_every=None, delete_count=None):
    """A table of ``rows`` rows without autovacuum; then some deleted (dead tuples)."""
    name = qn(schema, table)
    sql = [
        "CREATE SCHEMA IF NOT EXISTS %s" % qi(schema),
        "CREATE TABLE %s (id int, v text) WITH (autovacuum_enabled = false)" % name,
        "INSERT INTO %s SELECT g, md5(g::text) FROM generate_series(1, %d) g" % (name, rows),  # noqa: S608
    ]
    if delete_every:
        sql.append("DELETE FROM %s WHERE id %% %d <> 0" % (name, delete_every))  # noqa: S608
    if delete_count:
        sql.append("DELETE FROM %s WHERE id <= %d" % (name, delete_count))  # noqa: S608
    pg.psql("; ".join(sql) + "; SELECT pg_stat_force_next_flush()", db=db)
    return name


def dead_tuples(pg, db, schema, table):
    pg.psql("SELECT pg_stat_force_next_flush()", db=db)
    out = pg.psql(
        "SELECT n_dead_tup FROM pg_stat_all_tables WHERE schemaname = %s AND relname = %s"  # noqa: S608
        % (lit(schema), lit(table)),
        db=db,
    )
    return int(out)


def wait_dead(pg, db, schema, table, at_least):
    """Statistics arrive asynchronously: wait (bounded) until they show the dead tuples."""
    deadline = time.monotonic() + 15
    while True:
        dead = dead_tuples(pg, db, schema, table)
        if dead >= at_least or time.monotonic() > deadline:
            assert dead >= at_least, "statistics of %s.%s never showed %d dead tuples" % (schema, table, at_least)
            return dead
        time.sleep(0.2)


def session(pg, db, application, superuser=False):
    """A psycopg2 session of the test's own (app role, or superuser), for locks and open transactions."""
    conn = psycopg2.connect(
        host=pg.host,
        port=pg.port,
        user=pg.user if superuser else pg.app_user,
        password=pg.password if superuser else pg.app_password,
        dbname=db,
        application_name=application,
    )
    return conn


def pid_of(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def wait_state_age(pg, db, pid, seconds):
    """Wait (bounded) until session ``pid`` has been in its state/transaction for ``seconds``."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        age = pg.psql(
            "SELECT LEAST(EXTRACT(EPOCH FROM now() - state_change), EXTRACT(EPOCH FROM now() - xact_start)) "  # noqa: S608
            "FROM pg_stat_activity WHERE pid = %d" % pid,
            db=db,
        )
        if age and float(age) > seconds:
            return
        time.sleep(0.2)
    raise AssertionError("session %d never reached %s s" % (pid, seconds))


def by_table(result):
    return dict((t["table"], t) for t in result["tables"])


def assert_no_secret(result):
    assert PG_PASSWORD not in json.dumps(result)
    assert PG_PASSWORD not in result.get("_stderr", "")


def new_db(pg, name):
    pg.psql("CREATE DATABASE %s OWNER app" % qi(name))
    return name


def drop_db(pg, name):
    pg.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % qi(name))


@pytest.fixture
def db(postgres, request):
    name = "maint %s" % request.node.name[5:30]
    new_db(postgres, name)
    yield name
    drop_db(postgres, name)


def vacuum_args(pg, db, **over):
    args = dict(pg.conn_args(), action="vacuum", db=db)
    args.update(over)
    return args


# --- vacuum ------------------------------------------------------------------------------------
def test_vacuum_bloated_tables_skips_clean_ones_and_check_mode_changes_nothing(postgres, db, run_module):
    make_table(postgres, db, "public", "bloated", 10000, delete_every=5)
    make_table(postgres, db, ODD_SCHEMA, ODD_TABLE, 4000, delete_every=2)
    make_table(postgres, db, "public", "few_dead", 5000, delete_count=100)
    make_table(postgres, db, "public", "low_ratio", 30000, delete_count=1500)
    wait_dead(postgres, db, "public", "bloated", 8000)
    wait_dead(postgres, db, ODD_SCHEMA, ODD_TABLE, 2000)
    wait_dead(postgres, db, "public", "low_ratio", 1500)
    args = vacuum_args(postgres, db)

    planned = run_module("postgresql_maintenance", args, check_mode=True)
    assert planned["rc"] == 0, planned
    assert planned["changed"] is True and planned["vacuumed"] == 2
    assert dead_tuples(postgres, db, "public", "bloated") >= 8000
    assert dead_tuples(postgres, db, ODD_SCHEMA, ODD_TABLE) >= 2000

    done = run_module("postgresql_maintenance", args)
    assert done["rc"] == 0, done
    assert done["changed"] is True
    tables = by_table(done)
    assert [t["action"] for t in planned["tables"]] == [t["action"] for t in done["tables"]]
    for name in ("public.bloated", ODD_PLAIN):
        assert tables[name]["action"] == "vacuumed" and tables[name]["reason"] is None
        assert tables[name]["removed"] > 0
        assert tables[name]["dead_tuples_before"] > 0
    assert tables["public.bloated"]["removed"] == 8000
    assert tables["public.few_dead"]["action"] == "skipped"
    assert tables["public.few_dead"]["reason"] == "dead_tuples"
    assert "min_dead_tuples" in tables["public.few_dead"]["detail"]
    assert tables["public.low_ratio"]["reason"] == "dead_ratio"
    assert "min_dead_ratio 10.0%" in tables["public.low_ratio"]["detail"]
    assert done["vacuumed"] == 2 and done["skipped"] == 2
    assert dead_tuples(postgres, db, "public", "bloated") == 0
    assert dead_tuples(postgres, db, ODD_SCHEMA, ODD_TABLE) == 0
    assert dead_tuples(postgres, db, "public", "low_ratio") >= 1500
    assert_no_secret(done)

    again = run_module("postgresql_maintenance", args)
    assert again["changed"] is False and again["vacuumed"] == 0


def test_vacuum_named_tables_plain_and_quoted(postgres, db, run_module):
    make_table(postgres, db, ODD_SCHEMA, ODD_TABLE, 3000, delete_every=3)
    make_table(postgres, db, "public", "other", 3000, delete_every=3)
    wait_dead(postgres, db, ODD_SCHEMA, ODD_TABLE, 2000)
    quoted = qn(ODD_SCHEMA, ODD_TABLE)
    r = run_module("postgresql_maintenance", vacuum_args(postgres, db, tables=[quoted, ODD_PLAIN]))
    assert r["rc"] == 0, r
    assert [t["table"] for t in r["tables"]] == [ODD_PLAIN]  # both spellings, one table
    assert r["tables"][0]["action"] == "vacuumed"
    assert dead_tuples(postgres, db, "public", "other") >= 2000  # not listed, not vacuumed

    missing = run_module("postgresql_maintenance", vacuum_args(postgres, db, tables=["public.other", "public.nope"]))
    assert missing["failed"] and "'public.nope' not found in database '%s'" % db in missing["msg"]
    assert dead_tuples(postgres, db, "public", "other") >= 2000  # refused before vacuuming anything


def test_locked_table_is_skipped_after_lock_timeout_and_the_others_are_done(postgres, db, run_module):
    make_table(postgres, db, "public", "locked", 3000, delete_every=3)
    make_table(postgres, db, "public", "free", 3000, delete_every=3)
    wait_dead(postgres, db, "public", "free", 2000)
    holder = session(postgres, db, "bosun-test-locker", superuser=True)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE public.locked IN ACCESS EXCLUSIVE MODE")
        args = vacuum_args(postgres, db, tables=["public.locked", "public.free"], lock_timeout=1, max_xact_age=0)
        for check_mode in (True, False):
            r = run_module("postgresql_maintenance", args, check_mode=check_mode)
            assert r["rc"] == 0, r
            tables = by_table(r)
            assert tables["public.locked"]["action"] == "skipped"
            assert tables["public.locked"]["reason"] == "lock_timeout"
            assert "pid %d" % pid_of(holder) in tables["public.locked"]["detail"]
            assert "AccessExclusiveLock" in tables["public.locked"]["detail"]
            assert tables["public.free"]["action"] == "vacuumed"
            assert r["changed"] is True
        assert dead_tuples(postgres, db, "public", "free") == 0
    finally:
        holder.close()
    assert dead_tuples(postgres, db, "public", "locked") >= 2000


def test_time_budget_exhausted_reports_the_rest_as_skipped(postgres, db, run_module):
    for name in ("slow", "next1", "next2"):
        make_table(postgres, db, "public", name, 3000, delete_every=3)
    wait_dead(postgres, db, "public", "next2", 2000)
    holder = session(postgres, db, "bosun-test-budget", superuser=True)
    try:
        with holder.cursor() as cur:
            cur.execute("LOCK TABLE public.slow IN ACCESS EXCLUSIVE MODE")
        # The lock would be waited for 60 s; the budget of 1 s runs out first.
        args = vacuum_args(
            postgres, db, tables=["public.slow", "public.next1", "public.next2"], lock_timeout=60, time_budget=1
        )
        r = run_module("postgresql_maintenance", args)
    finally:
        holder.close()
    assert r["rc"] == 0, r
    assert r["budget_exhausted"] is True and r["changed"] is False
    assert [(t["table"], t["action"], t["reason"]) for t in r["tables"]] == [
        ("public.slow", "skipped", "budget"),
        ("public.next1", "skipped", "budget"),
        ("public.next2", "skipped", "budget"),
    ]
    assert "time budget exhausted" in r["msg"]
    assert dead_tuples(postgres, db, "public", "next1") >= 2000


def test_open_long_transaction_refuses_and_max_xact_age_0_runs(postgres, db, run_module):
    make_table(postgres, db, "public", "busy", 3000)
    old = session(postgres, db, "bosun-test-long-xact")
    try:
        with old.cursor() as cur:
            cur.execute("SELECT txid_current()")  # a transaction with an xid stays open
        old_pid = pid_of(old)
        postgres.psql("DELETE FROM public.busy WHERE id % 3 <> 0; SELECT pg_stat_force_next_flush()", db=db)
        wait_dead(postgres, db, "public", "busy", 2000)
        wait_state_age(postgres, db, old_pid, 1.2)

        refused = run_module("postgresql_maintenance", vacuum_args(postgres, db, max_xact_age=1))
        assert refused["failed"] and refused["rc"] == 1
        msg = refused["msg"]
        assert "refusing to vacuum database '%s'" % db in msg
        assert "pid %d" % old_pid in msg and "user app" in msg and "application 'bosun-test-long-xact'" in msg
        assert "idle in transaction" in msg and "max_xact_age: 0" in msg
        assert [b["pid"] for b in refused["blocking_transactions"]] == [old_pid]
        assert dead_tuples(postgres, db, "public", "busy") >= 2000
        assert_no_secret(refused)

        anyway = run_module("postgresql_maintenance", vacuum_args(postgres, db, max_xact_age=0))
        assert anyway["rc"] == 0, anyway
        busy = by_table(anyway)["public.busy"]
        assert busy["action"] == "vacuumed"
        # the old transaction keeps the rows it may still see: VACUUM says it could not remove them
        assert busy["dead_not_removable"] >= 2000 and busy["removed"] == 0
        assert "dead but not yet removable" in busy["detail"]
    finally:
        old.close()


def test_wrong_password_names_the_user_never_the_password(postgres, run_module):
    wrong = PG_PASSWORD + " wrong"
    for action in ("vacuum", "report"):
        r = run_module(
            "postgresql_maintenance", dict(postgres.conn_args(login_password=wrong), action=action, db="app")
        )
        assert r["failed"] and r["rc"] == 1
        assert "cannot connect to PostgreSQL at 127.0.0.1:%d/app as postgres" % postgres.port in r["msg"]
        assert "password authentication failed" in r["msg"]
        assert wrong not in json.dumps(r) and wrong not in r["_stderr"]
        assert "Traceback" not in r["_stderr"]


# --- report ------------------------------------------------------------------------------------
def test_invalid_index_reported_rebuilt_only_when_enabled(postgres, db, run_module):
    make_table(postgres, db, "public", "codes", 200)
    postgres.psql("INSERT INTO public.codes VALUES (7, 'dup')", db=db)  # id 7 twice
    failed = postgres.psql(
        'CREATE UNIQUE INDEX CONCURRENTLY "codes id ""uq""" ON public.codes (id)', db=db, check=False
    )
    assert failed.returncode != 0 and "could not create unique index" in failed.stderr
    index = 'public.codes id "uq"'

    def valid():
        return postgres.psql(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s"  # noqa: S608
            % lit('codes id "uq"'),
            db=db,
        )

    def indexes():
        return postgres.psql("SELECT relname FROM pg_class WHERE relkind = 'i' ORDER BY 1", db=db).splitlines()

    assert valid() == "f"
    args = dict(postgres.conn_args(), action="report", db=db)

    reported = run_module("postgresql_maintenance", args)
    assert reported["rc"] == 0, reported
    assert reported["changed"] is False
    assert [(i["index"], i["outcome"]) for i in reported["invalid_indexes"]] == [(index, "reported")]
    assert reported["reindexed"] == [] and valid() == "f"

    args["reindex_invalid"] = True
    planned = run_module("postgresql_maintenance", args, check_mode=True)
    assert planned["changed"] is True and [i["index"] for i in planned["reindexed"]] == [index]
    assert valid() == "f"

    # Duplicates still there: the rebuild fails, says so, and leaves no *_ccnew index behind.
    before = indexes()
    broken = run_module("postgresql_maintenance", args)
    assert broken["rc"] == 0, broken
    assert broken["changed"] is False
    assert [f["index"] for f in broken["reindex_failed"]] == [index]
    assert "could not create unique index" in broken["reindex_failed"][0]["error"]
    # module.warn: Ansible 2.19 returns warnings as structured events
    assert "REINDEX INDEX CONCURRENTLY %s failed" % index.replace('"', '\\"') in json.dumps(broken["warnings"])
    assert len(broken["reindex_failed"][0]["cleaned_up"]) == 1
    assert indexes() == before and valid() == "f"

    postgres.psql("DELETE FROM public.codes WHERE v = 'dup'", db=db)
    rebuilt = run_module("postgresql_maintenance", args)
    assert rebuilt["changed"] is True and [i["index"] for i in rebuilt["reindexed"]] == [index]
    assert rebuilt["invalid_indexes"][0]["outcome"] == "rebuilt"
    assert valid() == "t"
    again = run_module("postgresql_maintenance", args)
    assert again["changed"] is False and again["invalid_indexes"] == []


def test_idle_in_transaction_sessions_ended_only_when_enabled(postgres, db, run_module):
    idle = session(postgres, db, "bosun-test-idle")
    active_other = session(postgres, db, "bosun-test-plain-idle")  # idle, not in a transaction
    try:
        with idle.cursor() as cur:
            cur.execute("SELECT 1")
        idle_pid = pid_of(idle)
        wait_state_age(postgres, db, idle_pid, 1.2)
        args = dict(postgres.conn_args(), action="report", db=db)

        def alive(pid):
            return postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d" % pid) == "1"  # noqa: S608

        off = run_module("postgresql_maintenance", args)
        assert off["rc"] == 0 and off["terminated"] == [] and off["changed"] is False
        assert off["connections"]["by_state"].get("idle in transaction", 0) >= 1
        assert off["connections"]["max"] == 40 and off["connections"]["used"] >= 2
        assert alive(idle_pid)

        args["terminate_idle_in_transaction"] = 1
        planned = run_module("postgresql_maintenance", args, check_mode=True)
        assert planned["changed"] is True and [s["pid"] for s in planned["terminated"]] == [idle_pid]
        assert planned["terminated"][0]["application"] == "bosun-test-idle"
        assert alive(idle_pid)

        done = run_module("postgresql_maintenance", args)
        assert done["changed"] is True and [s["pid"] for s in done["terminated"]] == [idle_pid]
        deadline = time.monotonic() + 10
        while alive(idle_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(idle_pid)
        assert alive(pid_of(active_other))
    finally:
        idle.close()
        active_other.close()


def test_report_slow_queries_seq_scans_unused_indexes(postgres, db, run_module):
    make_table(postgres, db, "public", "scanned", 3000)
    postgres.psql(
        "CREATE INDEX scanned_v ON public.scanned (v); CREATE EXTENSION pg_stat_statements; "
        "SELECT pg_stat_statements_reset()",
        db=db,
    )
    for _i in range(3):
        postgres.psql("SELECT count(*) FROM public.scanned WHERE id > 10", db=db)
    postgres.psql("CREATE ROLE %s; ALTER ROLE %s PASSWORD 'hunter2 s3cret'" % (qi("odd role"), qi("odd role")), db=db)
    postgres.psql("SELECT pg_stat_force_next_flush()", db=db)
    args = dict(postgres.conn_args(), action="report", db=db, top=50, seq_scan_min_rows=100)
    try:
        r = run_module("postgresql_maintenance", args)
    finally:
        postgres.psql("DROP ROLE %s" % qi("odd role"))
    assert r["rc"] == 0, r
    queries = [q["query"] for q in r["slow_queries"]]
    assert any("public.scanned WHERE id >" in q for q in queries), queries
    assert all(q["calls"] >= 1 and q["total_ms"] >= 0 for q in r["slow_queries"])
    assert "hunter2 s3cret" not in json.dumps(r)
    seq = dict((t["table"], t) for t in r["seq_scan_tables"])
    assert seq["public.scanned"]["seq_scan"] >= 3 and seq["public.scanned"]["idx_scan"] == 0
    assert "public.scanned_v" in [i["index"] for i in r["unused_indexes"]]
    assert r["changed"] is False

    # another database without the extension: a note, not an error
    other = run_module("postgresql_maintenance", dict(args, db="app"))
    assert other["rc"] == 0 and other["slow_queries"] == []
    assert any("pg_stat_statements is not installed in database 'app'" in n for n in other["notes"])
