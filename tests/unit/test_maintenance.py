"""postgresql_maintenance without a server: options, thresholds, table names, VERBOSE parsing,
the vacuum loop (check mode, lock timeout, budget, refusal) on a fake session, redaction."""

import json

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._maintenance import main, report, session, spec, vacuum

from tests.support.modules import run_module
from tests.support.servers import free_port

SECRET = "m4int 'pw' $x \\ y"


def params(**over):
    base = dict(action="vacuum", db="app", login_password=SECRET, login_user="ops")
    base.update(over)
    return spec.default_params(**base)


# --- options ----------------------------------------------------------------------------------
def test_defaults_match_the_interface():
    p = spec.default_params()
    assert p["min_dead_ratio"] == 0.1 and p["min_dead_tuples"] == 1000
    assert p["lock_timeout"] == 5 and p["time_budget"] == 1800 and p["max_xact_age"] == 3600
    assert p["top"] == 10 and p["reindex_invalid"] is False and p["terminate_idle_in_transaction"] == 0
    assert p["analyze"] is True and p["tables"] == []
    assert spec.argument_spec()["login_password"]["no_log"] is True


@pytest.mark.parametrize(
    "over, message",
    [
        (dict(min_dead_ratio=1.5), "min_dead_ratio must be between 0 and 1 (got 1.5)"),
        (dict(min_dead_ratio=-0.1), "min_dead_ratio must be between 0 and 1"),
        (dict(min_dead_tuples=-1), "min_dead_tuples must be 0 or more"),
        (dict(lock_timeout=0), "lock_timeout must be more than 0 seconds"),
        (dict(time_budget=-5), "time_budget must be 0 or more"),
        (dict(max_xact_age=-1), "max_xact_age must be 0 or more"),
        (dict(top=0), "top must be 1 or more"),
        (dict(terminate_idle_in_transaction=-1), "terminate_idle_in_transaction must be 0 or more"),
        (dict(tables=["public.a", ""]), "tables holds an empty entry"),
        (dict(db=""), "db must name a database"),
    ],
)
def test_validate_refuses_bad_values(over, message):
    with pytest.raises(spec.MaintenanceError) as err:
        spec.validate(params(**over))
    assert message in err.value.message
    assert SECRET not in err.value.message


def test_validate_accepts_edges():
    spec.validate(params(min_dead_ratio=0, min_dead_tuples=0, time_budget=0, max_xact_age=0))
    spec.validate(params(min_dead_ratio=1, lock_timeout=0.2))


def test_quoting_and_names():
    assert spec.qualified('my "s"', "it's t") == '"my ""s"""."it\'s t"'
    assert spec.display_name("my s", 'q"t') == 'my s.q"t'
    assert spec.ms(5) == "5000ms" and spec.ms(0.0001) == "1ms"


def test_mask_query_hides_password_literals_and_secrets_and_bounds_length():
    text = "ALTER ROLE x PASSWORD 'hunter2 it''s' VALID UNTIL 'infinity'"
    masked = spec.mask_query(text)
    assert "hunter2" not in masked and "PASSWORD '********'" in masked and "VALID UNTIL 'infinity'" in masked
    assert spec.mask_query("CREATE ROLE y password E'a\\'b'") == "CREATE ROLE y password '********'"
    assert SECRET not in spec.mask_query("SELECT '%s'" % SECRET, [SECRET])
    assert len(spec.mask_query("x" * 5000)) == spec.QUERY_TEXT_MAX + 3


# --- thresholds -------------------------------------------------------------------------------
def table(name="t", live=1000, dead=5000, schema="public", oid=None, can_vacuum=True):
    return dict(oid=oid or abs(hash((schema, name))) % 100000, schema=schema, name=name, live=live, dead=dead,
                kind="r", can_vacuum=can_vacuum)  # fmt: skip


def test_dead_ratio():
    assert vacuum.dead_ratio(800, 200) == 0.2
    assert vacuum.dead_ratio(0, 0) == 0.0
    assert vacuum.dead_ratio(None, 5) == 1.0


@pytest.mark.parametrize(
    "live, dead, reason",
    [
        (10000, 999, "dead_tuples"),  # fewer than 1000 dead
        (100000, 5000, "dead_ratio"),  # 4.8 %
        (9000, 1000, None),  # exactly 10 %: not below
        (0, 1000, None),
        (0, 0, "dead_tuples"),
    ],
)
def test_threshold_skip(live, dead, reason):
    found = vacuum.threshold_skip(table(live=live, dead=dead), 0.1, 1000)
    assert (found[0] if found else None) == reason


def test_threshold_zero_means_every_table():
    assert vacuum.threshold_skip(table(live=0, dead=0), 0, 0) is None


def test_threshold_detail_gives_figures():
    reason, detail = vacuum.threshold_skip(table(live=100000, dead=5000), 0.1, 1000)
    assert detail == "5,000 dead of 105,000 tuples (4.8%): below min_dead_ratio 10.0%"


# --- choosing tables ----------------------------------------------------------------------------
SURVEY = [
    table("small", dead=10, oid=1),
    table("big", dead=9000, oid=2),
    table('it\'s "q"', schema="odd s", dead=500, oid=3),
    table("b", schema="a.x", dead=1, oid=4),  # schema with a dot
]


def test_default_order_is_most_dead_first():
    chosen = vacuum.choose_tables(SURVEY, [], lambda n: None, "app")
    assert [t["oid"] for t in chosen] == [2, 3, 1, 4]


def test_named_tables_plain_or_sql_in_given_order_without_duplicates():
    sql = {'"odd s"."it\'s ""q"""': 3, "small": 1}
    chosen = vacuum.choose_tables(
        SURVEY, ["a.x.b", 'odd s.it\'s "q"', '"odd s"."it\'s ""q"""', "small"], sql.get, "app"
    )
    assert [t["oid"] for t in chosen] == [4, 3, 1]


def test_unknown_tables_fail_naming_them():
    with pytest.raises(spec.MaintenanceError) as err:
        vacuum.choose_tables(SURVEY, ["public.big", "public.nope", "x"], lambda n: None, "app")
    assert "'public.nope', 'x' not found in database 'app'" in err.value.message


# --- VACUUM VERBOSE -------------------------------------------------------------------------------
PG15 = [
    'INFO:  vacuuming "app.public.t"\n',
    'INFO:  finished vacuuming "app.public.t": index scans: 0\npages: 0 removed, 74 remain, 74 scanned (100.00% '
    "of total)\ntuples: 8000 removed, 2000 remain, 12 are dead but not yet removable\n",
    'INFO:  finished vacuuming "app.pg_toast.pg_toast_1": index scans: 0\ntuples: 3 removed, 0 remain, 0 are dead '
    "but not yet removable\n",
]
PG14 = [
    'INFO:  vacuuming "public.t"\n',
    'INFO:  "t": found 700 removable, 300 nonremovable row versions in 10 out of 10 pages\n'
    "DETAIL:  5 dead row versions cannot be removed yet, oldest xmin: 1234\n",
]


def test_parse_vacuum_verbose_takes_the_table_not_its_toast():
    assert session.parse_vacuum_verbose(PG15) == (8000, 12)
    assert session.parse_vacuum_verbose(PG14) == (700, 5)
    assert session.parse_vacuum_verbose(["INFO:  something else"]) == (None, None)


def test_refusal_warnings_are_recognised():
    assert "only table or database owner" in session.refusal_in(
        ['WARNING:  skipping "t" --- only table or database owner can vacuum it\n']
    )
    assert session.refusal_in(['WARNING:  permission denied to vacuum "t", skipping it\n'])
    assert session.refusal_in(PG15) is None


# --- the vacuum loop on a fake session ------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeSession:
    """Stands in for session.Session; records what would have reached the server."""

    def __init__(self, tables, clock, long_xacts=(), locked=(), slow=None, sees_all=True):
        self.tables = tables
        self.clock = clock
        self.long_xacts = list(long_xacts)
        self.locked = set(locked)
        self.slow = slow or {}
        self.sees_all = sees_all
        self.vacuumed, self.probed, self.timeouts = [], [], []
        self.alive = True

    def sees_all_sessions(self):
        return self.sees_all

    def long_transactions(self, max_age):
        return [x for x in self.long_xacts if x["age"] > max_age]

    def survey(self):
        return self.tables

    def resolve(self, name):
        return None

    def lock_holders(self, oid):
        return [dict(pid=42, mode="AccessExclusiveLock", user="app", application="psql", state="idle")]

    def dead_tuples(self, oid):
        return dict(dead=0, live=1)

    def _work(self, name, statement_timeout):
        self.timeouts.append(statement_timeout)
        if name in self.locked:
            raise session.StatementError("canceling statement due to lock timeout", session.LOCK_NOT_AVAILABLE)
        cost = self.slow.get(name, 0.5)
        if statement_timeout is not None and cost > statement_timeout:
            self.clock.now += statement_timeout
            raise session.StatementError("canceling statement due to statement timeout", session.QUERY_CANCELED)
        self.clock.now += cost

    def vacuum(self, schema, name, analyze, lock_timeout, statement_timeout):
        self._work(name, statement_timeout)
        self.vacuumed.append(name)
        return ["INFO:  tuples: 4000 removed, 10 remain, 0 are dead but not yet removable"]

    def probe_lock(self, schema, name, lock_timeout, statement_timeout):
        if name in self.locked:
            raise session.StatementError("canceling statement due to lock timeout", session.LOCK_NOT_AVAILABLE)
        self.probed.append(name)
        return []


def tables3():
    return [table("a", dead=5000, oid=1), table("b", dead=4000, oid=2), table("clean", dead=5, oid=3)]


def test_vacuum_reports_each_table():
    clock = Clock()
    fake = FakeSession(tables3(), clock)
    result = vacuum.run(fake, params(), clock=clock)
    assert fake.vacuumed == ["a", "b"]
    assert [(t["table"], t["action"], t["reason"]) for t in result["tables"]] == [
        ("public.a", "vacuumed", None),
        ("public.b", "vacuumed", None),
        ("public.clean", "skipped", "dead_tuples"),
    ]
    assert result["tables"][0]["removed"] == 4000 and result["tables"][0]["dead_tuples_after"] == 0
    assert result["tables"][0]["seconds"] == 0.5
    assert result["changed"] is True and result["vacuumed"] == 2 and result["skipped"] == 1
    assert result["elapsed"] == 1.0 and result["budget_exhausted"] is False
    assert result["msg"].startswith("vacuumed 2 of 3 table(s) of database 'app'; skipped: 1 dead_tuples")


def test_check_mode_takes_the_same_path_without_vacuuming():
    clock = Clock()
    real = vacuum.run(FakeSession(tables3(), Clock(), locked={"b"}), params(), clock=Clock())
    fake = FakeSession(tables3(), clock, locked={"b"})
    planned = vacuum.run(fake, params(), check_mode=True, clock=clock)
    assert fake.vacuumed == [] and fake.probed == ["a"]
    assert [(t["action"], t["reason"]) for t in planned["tables"]] == [
        (t["action"], t["reason"]) for t in real["tables"]
    ]
    assert planned["changed"] is real["changed"] is True
    assert planned["tables"][0]["removed"] is None and "would be vacuumed" in planned["tables"][0]["detail"]
    assert planned["msg"].startswith("would vacuum 1 of 3")


def test_locked_table_is_skipped_naming_the_holder():
    clock = Clock()
    result = vacuum.run(FakeSession(tables3(), clock, locked={"a"}), params(lock_timeout=2), clock=clock)
    a = result["tables"][0]
    assert a["action"] == "skipped" and a["reason"] == "lock_timeout"
    assert (
        "within lock_timeout 2s" in a["detail"]
        and "pid 42 user app application 'psql' AccessExclusiveLock" in a["detail"]
    )
    assert result["tables"][1]["action"] == "vacuumed"


def test_budget_cancels_the_running_vacuum_and_skips_the_rest():
    clock = Clock()
    tables = [table("a", dead=9000, oid=1), table("slow", dead=8000, oid=2), table("c", dead=7000, oid=3)]
    fake = FakeSession(tables, clock, slow={"slow": 50})
    result = vacuum.run(fake, params(time_budget=10), clock=clock, start=clock())
    assert fake.vacuumed == ["a"]
    assert fake.timeouts == [10, 9.5]  # statement_timeout is what is left of the budget
    assert [(t["action"], t["reason"]) for t in result["tables"]] == [
        ("vacuumed", None),
        ("skipped", "budget"),
        ("skipped", "budget"),
    ]
    assert "ran out during this table" in result["tables"][1]["detail"]
    assert "not reached" in result["tables"][2]["detail"]
    assert result["budget_exhausted"] is True and "(time budget exhausted)" in result["msg"]


def test_no_budget_means_no_statement_timeout():
    clock = Clock()
    fake = FakeSession(tables3(), clock)
    vacuum.run(fake, params(time_budget=0), clock=clock)
    assert fake.timeouts == [None, None]


def test_long_transaction_refuses_naming_it():
    clock = Clock()
    old = dict(pid=4711, user="app", application="worker", client="10.0.0.5", state="idle in transaction", age=7390.4)
    fake = FakeSession(tables3(), clock, long_xacts=[old])
    with pytest.raises(spec.MaintenanceError) as err:
        vacuum.run(fake, params(), clock=clock)
    msg = err.value.message
    assert "refusing to vacuum database 'app'" in msg and "max_xact_age 3600 s" in msg
    assert "pid 4711, user app, application 'worker', from 10.0.0.5, state 'idle in transaction'" in msg
    assert "open for 2h03m10s (7390 s)" in msg
    assert err.value.result["blocking_transactions"] == [old] and fake.vacuumed == []
    result = vacuum.run(FakeSession(tables3(), clock, long_xacts=[old]), params(max_xact_age=0), clock=clock)
    assert result["vacuumed"] == 2


def test_limited_visibility_is_a_warning():
    clock = Clock()
    result = vacuum.run(FakeSession(tables3(), clock, sees_all=False), params(), clock=clock)
    assert "cannot see other users' transactions" in result["warnings"][0] and "ops" in result["warnings"][0]


def test_tables_the_role_may_not_vacuum_are_skipped():
    clock = Clock()
    fake = FakeSession([table("theirs", dead=5000, oid=9, can_vacuum=False)], clock)
    result = vacuum.run(fake, params(), clock=clock)
    assert result["tables"][0]["reason"] == "permission" and fake.vacuumed == [] and result["changed"] is False


# --- report pieces ----------------------------------------------------------------------------------
class FakeReportSession:
    version = 150000
    secrets = (SECRET,)

    def __init__(self, invalid, fail=None):
        self.invalid = invalid
        self.fail = fail
        self.reindexed, self.dropped, self.probed = [], [], []

    def rows(self, sql, args=None, doing=None):
        assert "pg_index" in sql
        if "i.indrelid = " in sql and self.reindexed and self.fail:
            return self.invalid + [dict(self.invalid[0], oid=99, name=self.invalid[0]["name"] + "_ccnew")]
        return list(self.invalid)

    def probe_lock(self, schema, name, lock_timeout, statement_timeout):
        self.probed.append(name)

    def reindex_concurrently(self, schema, name, lock_timeout):
        self.reindexed.append(name)
        if self.fail:
            raise session.StatementError(self.fail, "23505")

    def drop_index_concurrently(self, schema, name, lock_timeout):
        self.dropped.append(name)


def invalid(name, building=False):
    return dict(oid=1, table_oid=2, schema="public", name=name, table_name="t", size_bytes=8192,
                definition="CREATE UNIQUE INDEX %s ON public.t (id)" % name, building=building)  # fmt: skip


def report_result():
    return dict(invalid_indexes=[], reindexed=[], reindex_failed=[], notes=[], warnings=[], terminated=[])


def test_invalid_indexes_only_reported_when_not_enabled():
    fake = FakeReportSession([invalid("i1")])
    result = report_result()
    report.rebuild_invalid(fake, params(action="report"), False, result, Clock())
    assert result["invalid_indexes"][0]["outcome"] == "reported" and fake.reindexed == [] and fake.probed == []


def test_rebuild_check_mode_predicts_without_rebuilding():
    fake = FakeReportSession([invalid("i1"), invalid("i1_ccnew"), invalid("i2", building=True)])
    result = report_result()
    report.rebuild_invalid(fake, params(action="report", reindex_invalid=True), True, result, Clock())
    assert [i["outcome"] for i in result["invalid_indexes"]] == ["rebuilt", "leftover", "building"]
    assert [r["index"] for r in result["reindexed"]] == ["public.i1"]
    assert fake.reindexed == [] and fake.probed == ["t"]


def test_failed_rebuild_drops_its_own_leftover_and_warns():
    fake = FakeReportSession([invalid("i1")], fail='could not create unique index "i1_ccnew"')
    result = report_result()
    report.rebuild_invalid(fake, params(action="report", reindex_invalid=True), False, result, Clock())
    assert fake.dropped == ["i1_ccnew"]
    assert result["reindex_failed"][0]["cleaned_up"] == ["public.i1_ccnew"]
    assert "REINDEX INDEX CONCURRENTLY public.i1 failed" in result["warnings"][0]
    assert result["reindexed"] == []


# --- main: redaction and the module's argument handling ----------------------------------------------
def test_run_redacts_secrets_from_errors_and_results():
    def factory(p):
        raise spec.MaintenanceError("cannot connect with %s" % SECRET, dict(detail=["pw %s" % SECRET]))

    with pytest.raises(spec.MaintenanceError) as err:
        main.run(params(), session_factory=factory)
    assert SECRET not in err.value.message and SECRET not in json.dumps(err.value.result)


def test_run_validates_before_connecting():
    def factory(p):
        raise AssertionError("must not connect")

    with pytest.raises(spec.MaintenanceError) as err:
        main.run(params(min_dead_ratio=2), session_factory=factory)
    assert "min_dead_ratio" in err.value.message


def no_secret(result):
    assert SECRET not in json.dumps(result)
    assert SECRET not in result["_stderr"]


def test_module_requires_action_and_db():
    r = run_module("postgresql_maintenance", dict(login_password=SECRET))
    assert r["failed"] and "action" in r["msg"] and "db" in r["msg"]
    no_secret(r)


def test_module_refuses_unknown_action():
    r = run_module("postgresql_maintenance", dict(action="vacuum full", db="app"))
    assert r["failed"] and "value of action must be one of: vacuum, report" in r["msg"]


def test_module_refuses_bad_ratio_before_connecting():
    r = run_module("postgresql_maintenance", dict(action="vacuum", db="app", min_dead_ratio=3, login_port=1))
    assert r["failed"] and "min_dead_ratio must be between 0 and 1 (got 3.0)" in r["msg"]
    assert "connect" not in r["msg"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_module_connection_failure_names_server_and_user_not_password(check_mode):
    port = free_port()
    args = dict(
        action="vacuum", db="app", login_host="127.0.0.1", login_port=port, login_user="ops", login_password=SECRET
    )
    r = run_module("postgresql_maintenance", args, check_mode=check_mode)
    assert r["failed"] and r["rc"] == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:%d/app as ops" % port in r["msg"]
    assert "Traceback" not in r["_stderr"]
    no_secret(r)
