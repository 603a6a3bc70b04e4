# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report action: what an operator looks at in a database, and two opt-in repairs.

Order of work: sessions idle in transaction longer than ``terminate_idle_in_transaction``
are ended first (only when that is above 0; never this module's own session), because such a
session would make REINDEX CONCURRENTLY wait. Then invalid indexes are rebuilt with REINDEX
INDEX CONCURRENTLY (only with ``reindex_invalid``), except an index still being built by
someone else and the leftovers of an interrupted REINDEX CONCURRENTLY (``*_ccnew``,
``*_ccold``: rebuilding those would create a duplicate; they are reported for dropping). A
rebuild that fails leaves an invalid ``*_ccnew`` index behind; the module drops the one its
own attempt created. Then the report is read: slow queries (pg_stat_statements, when
installed in the database), tables scanned sequentially more often than by index, indexes
never scanned, and connection usage.

Check mode lists what would be ended and rebuilt (taking the table lock a rebuild needs, in
a transaction it rolls back) and does neither.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.bosun.platform.plugins.module_utils._maintenance.session import (
    LOCK_NOT_AVAILABLE,
    StatementError,
)
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.spec import (
    display_name,
    mask_query,
    quote_ident,
)

LEFTOVER = re.compile(r"_cc(new|old)[0-9]*$")

IDLE_IN_XACT_SQL = """
SELECT pid, usename AS user, application_name AS application, client_addr::text AS client, state,
       EXTRACT(EPOCH FROM now() - state_change)::float8 AS idle_seconds,
       EXTRACT(EPOCH FROM now() - xact_start)::float8 AS xact_age
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND pid <> pg_backend_pid()
  AND backend_type = 'client backend' AND datname = current_database()
  AND now() - state_change > make_interval(secs => %s)
ORDER BY state_change
"""

INVALID_INDEXES_SQL = """
SELECT i.indexrelid::bigint AS oid, i.indrelid::bigint AS table_oid, n.nspname AS schema,
       ci.relname AS name, ct.relname AS table_name, pg_relation_size(i.indexrelid)::bigint AS size_bytes,
       pg_get_indexdef(i.indexrelid) AS definition,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid) AS building
FROM pg_index i
JOIN pg_class ci ON ci.oid = i.indexrelid
JOIN pg_class ct ON ct.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ci.relnamespace
WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
  {only_table}
ORDER BY n.nspname, ci.relname
"""

UNUSED_INDEXES_SQL = """
SELECT s.schemaname AS schema, s.indexrelname AS name, s.relname AS table_name, s.idx_scan::bigint AS idx_scan,
       pg_relation_size(s.indexrelid)::bigint AS size_bytes
FROM pg_stat_user_indexes s
JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND i.indisvalid AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
ORDER BY pg_relation_size(s.indexrelid) DESC, s.schemaname, s.indexrelname
"""

SEQ_SCAN_SQL = """
SELECT s.schemaname AS schema, s.relname AS name, s.seq_scan::bigint AS seq_scan,
       COALESCE(s.idx_scan, 0)::bigint AS idx_scan, s.seq_tup_read::bigint AS seq_tup_read,
       s.n_live_tup::bigint AS live_tuples, pg_total_relation_size(s.relid)::bigint AS size_bytes
FROM pg_stat_user_tables s
WHERE s.seq_scan > COALESCE(s.idx_scan, 0) AND s.n_live_tup >= %s
ORDER BY s.seq_tup_read DESC, s.schemaname, s.relname
LIMIT %s
"""

SLOW_SQL = """
SELECT s.queryid::text AS queryid, r.rolname AS user, s.calls::bigint AS calls,
       round(s.{total}::numeric, 3)::float8 AS total_ms, round(s.{mean}::numeric, 3)::float8 AS mean_ms,
       s.rows::bigint AS rows, s.query
FROM {schema}.pg_stat_statements s
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.{order} DESC
LIMIT %s
"""

CONNECTIONS_SQL = """
SELECT COALESCE(state, 'unknown') AS state, count(*)::int AS n
FROM pg_stat_activity WHERE backend_type = 'client backend'
GROUP BY 1 ORDER BY 1
"""

SETTINGS_SQL = """
SELECT current_setting('max_connections')::int AS max,
       current_setting('superuser_reserved_connections')::int AS reserved
"""


def _session_entry(row):
    return dict(
        pid=row["pid"],
        user=row["user"],
        application=row["application"],
        client=row["client"],
        state=row["state"],
        idle_seconds=round(row["idle_seconds"] or 0, 1),
        xact_age=round(row["xact_age"] or 0, 1),
    )


def terminate_idle(session, params, check_mode, result):
    limit = params["terminate_idle_in_transaction"]
    if not limit:
        return
    for row in session.rows(IDLE_IN_XACT_SQL, (limit,), doing="listing sessions idle in transaction"):
        entry = _session_entry(row)
        if check_mode:
            result["terminated"].append(entry)
            continue
        try:
            done = session.terminate(row["pid"])
        except StatementError as exc:
            result["warnings"].append("could not end session pid %s (user %s): %s" % (row["pid"], row["user"], exc))
            continue
        if done:
            result["terminated"].append(entry)


def invalid_indexes(session, table_oid=None):
    only = "AND i.indrelid = %s" % int(table_oid) if table_oid is not None else ""
    return session.rows(INVALID_INDEXES_SQL.format(only_table=only), doing="listing invalid indexes")


def _index_entry(row):
    return dict(
        index=display_name(row["schema"], row["name"]),
        table=display_name(row["schema"], row["table_name"]),
        size_bytes=row["size_bytes"],
        definition=row["definition"],
        building=bool(row["building"]),
        leftover=bool(LEFTOVER.search(row["name"])),
        outcome="reported",
    )


def rebuild_invalid(session, params, check_mode, result, clock):
    for row in invalid_indexes(session):
        entry = _index_entry(row)
        result["invalid_indexes"].append(entry)
        if not params["reindex_invalid"]:
            continue
        if entry["building"]:
            entry["outcome"] = "building"
            result["notes"].append(
                "%s is not rebuilt: an index build on %s is in progress" % (entry["index"], entry["table"])
            )
            continue
        if entry["leftover"]:
            entry["outcome"] = "leftover"
            result["notes"].append(
                "%s is not rebuilt: it is the leftover of an interrupted REINDEX CONCURRENTLY; "
                "drop it with DROP INDEX CONCURRENTLY" % entry["index"]
            )
            continue
        before = set(r["oid"] for r in invalid_indexes(session, row["table_oid"]))
        began = clock()
        try:
            if check_mode:
                session.probe_lock(row["schema"], row["table_name"], params["lock_timeout"], None)
            else:
                session.reindex_concurrently(row["schema"], row["name"], params["lock_timeout"])
        except StatementError as exc:
            entry["outcome"] = "failed"
            failure = dict(index=entry["index"], table=entry["table"], error=exc.message, cleaned_up=[])
            if exc.code == LOCK_NOT_AVAILABLE:
                failure["error"] += " (a lock or an older transaction was not released within lock_timeout)"
            if not check_mode:
                failure["cleaned_up"] = _drop_own_leftovers(session, row, before, params, result)
            result["reindex_failed"].append(failure)
            result["warnings"].append("REINDEX INDEX CONCURRENTLY %s failed: %s" % (entry["index"], failure["error"]))
            continue
        entry["outcome"] = "rebuilt"
        result["reindexed"].append(
            dict(
                index=entry["index"],
                table=entry["table"],
                definition=entry["definition"],
                seconds=round(clock() - began, 3),
            )
        )


def _drop_own_leftovers(session, row, before, params, result):
    """Drop the invalid *_ccnew index a failed REINDEX CONCURRENTLY of ``row`` left behind."""
    dropped = []
    try:
        after = invalid_indexes(session, row["table_oid"])
    except StatementError:
        return dropped
    for new in after:
        if new["oid"] in before or not LEFTOVER.search(new["name"]):
            continue
        name = display_name(new["schema"], new["name"])
        try:
            session.drop_index_concurrently(new["schema"], new["name"], params["lock_timeout"])
            dropped.append(name)
        except StatementError as exc:
            result["warnings"].append(
                "the failed rebuild left the invalid index %s, which could not be dropped: %s" % (name, exc.message)
            )
    return dropped


def slow_queries(session, params, result):
    schema = session.rows(
        "SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'"
    )
    if not schema:
        result["notes"].append(
            "pg_stat_statements is not installed in database '%s': no slow queries reported "
            "(it needs shared_preload_libraries = 'pg_stat_statements' and CREATE EXTENSION pg_stat_statements)"
            % params["db"]
        )
        return
    new = session.version >= 130000
    order = {
        "total_time": "total_exec_time" if new else "total_time",
        "mean_time": "mean_exec_time" if new else "mean_time",
    }
    sql = SLOW_SQL.format(
        schema=quote_ident(schema[0]["schema"]),
        total=order["total_time"],
        mean=order["mean_time"],
        order=order[params["slow_queries_by"]],
    )
    try:
        rows = session.rows(sql, (params["top"],), doing="reading pg_stat_statements")
    except StatementError as exc:
        result["notes"].append("slow queries not reported: %s" % exc.message)
        return
    for row in rows:
        row["query"] = mask_query(row["query"], session.secrets)
        result["slow_queries"].append(row)


def connections(session):
    settings = session.rows(SETTINGS_SQL)[0]
    by_state = dict((r["state"], r["n"]) for r in session.rows(CONNECTIONS_SQL, doing="counting connections"))
    used = sum(by_state.values())
    return dict(
        used=used,
        max=settings["max"],
        reserved=settings["reserved"],
        usage_ratio=round(float(used) / settings["max"], 4) if settings["max"] else None,
        by_state=by_state,
    )


def run(session, params, check_mode=False, clock=time.monotonic):
    """The report action."""
    start = clock()
    result = dict(
        changed=False,
        slow_queries=[],
        seq_scan_tables=[],
        unused_indexes=[],
        invalid_indexes=[],
        connections={},
        reindexed=[],
        reindex_failed=[],
        terminated=[],
        notes=[],
        warnings=[],
    )
    if not session.sees_all_sessions():
        result["notes"].append(
            "login_user %s sees only its own role's sessions and query texts (grant it pg_monitor)"
            % params["login_user"]
        )
    terminate_idle(session, params, check_mode, result)
    rebuild_invalid(session, params, check_mode, result, clock)
    slow_queries(session, params, result)
    for row in session.rows(
        SEQ_SCAN_SQL, (params["seq_scan_min_rows"], params["top"]), doing="reading table statistics"
    ):
        row["table"] = display_name(row.pop("schema"), row.pop("name"))
        result["seq_scan_tables"].append(row)
    for row in session.rows(UNUSED_INDEXES_SQL, doing="reading index statistics"):
        schema = row.pop("schema")
        row["index"] = display_name(schema, row.pop("name"))
        row["table"] = display_name(schema, row.pop("table_name"))
        result["unused_indexes"].append(row)
    result["connections"] = connections(session)
    result["changed"] = bool(result["reindexed"] or result["terminated"])
    result["elapsed"] = round(clock() - start, 3)
    result["msg"] = summary(params["db"], result, check_mode)
    return result


def summary(db, result, check_mode):
    conn = result["connections"]
    parts = [
        "database '%s': %d slow queries listed" % (db, len(result["slow_queries"])),
        "%d tables scanned more sequentially than by index" % len(result["seq_scan_tables"]),
        "%d unused indexes" % len(result["unused_indexes"]),
        "%d invalid indexes" % len(result["invalid_indexes"]),
        "connections %s of %s" % (conn.get("used"), conn.get("max")),
    ]
    if result["reindexed"]:
        parts.append("%s %d" % ("would rebuild" if check_mode else "rebuilt", len(result["reindexed"])))
    if result["reindex_failed"]:
        parts.append("%d rebuilds failed" % len(result["reindex_failed"]))
    if result["terminated"]:
        parts.append(
            "%s %d sessions idle in transaction" % ("would end" if check_mode else "ended", len(result["terminated"]))
        )
    return ", ".join(parts)
