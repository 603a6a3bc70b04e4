# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every statement postgresql_maintenance sends, on one autocommit connection.

VACUUM and REINDEX CONCURRENTLY cannot run inside a transaction block, so the connection is
in autocommit mode; each statement is its own transaction, which also means each read of the
statistics views sees fresh numbers. Identifiers are always quoted (spec.qualified), values
always passed as parameters. The vacuum and report logic talk to this class only, so tests
can put a fake in its place.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import re

from ansible_collections.bosun.platform.plugins.module_utils import _postgres
from ansible_collections.bosun.platform.plugins.module_utils._io import redact
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.spec import (
    MaintenanceError,
    ms,
    quote_ident,
)

# Lock modes that conflict with the SHARE UPDATE EXCLUSIVE lock VACUUM (and a lock probe) takes.
CONFLICTS_WITH_VACUUM = (
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
UNDEFINED_TABLE = "42P01"
UNDEFINED_OBJECT = "42704"
INSUFFICIENT_PRIVILEGE = "42501"


class StatementError(Exception):
    """A statement failed; ``code`` is the SQLSTATE, the message is free of secrets."""

    def __init__(self, message, code=None):
        super(StatementError, self).__init__(message)
        self.message = message
        self.code = code


class _Notices(collections.deque):
    """Where psycopg2 appends server notices (VACUUM VERBOSE output); bounded."""

    def __init__(self):
        super(_Notices, self).__init__(maxlen=2000)


SURVEY_SQL = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       COALESCE(s.n_live_tup, 0)::bigint AS live, COALESCE(s.n_dead_tup, 0)::bigint AS dead,
       (r.rolsuper OR pg_has_role(c.relowner, 'USAGE') OR pg_has_role(d.datdba, 'USAGE') {maintain})
         AS can_vacuum
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_database d ON d.datname = current_database()
JOIN pg_roles r ON r.rolname = current_user
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
ORDER BY n.nspname, c.relname
"""

LONG_XACTS_SQL = """
SELECT pid, usename AS user, application_name AS application, client_addr::text AS client,
       state, EXTRACT(EPOCH FROM now() - xact_start)::float8 AS age
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND datname = current_database() AND now() - xact_start > make_interval(secs => %s)
ORDER BY xact_start
"""

PREPARED_XACTS_SQL = """
SELECT gid, owner AS user, EXTRACT(EPOCH FROM now() - prepared)::float8 AS age
FROM pg_prepared_xacts
WHERE database = current_database() AND now() - prepared > make_interval(secs => %s)
ORDER BY prepared
"""

SEES_ALL_SESSIONS_SQL = """
SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS sees_all
FROM pg_roles WHERE rolname = current_user
"""

LOCK_HOLDERS_SQL = """
SELECT l.pid, l.mode, a.usename AS user, a.application_name AS application, a.state
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = %s AND l.granted
  AND l.pid <> pg_backend_pid() AND l.mode = ANY(%s)
ORDER BY l.pid
"""

DEAD_SQL = "SELECT n_dead_tup::bigint AS dead, n_live_tup::bigint AS live FROM pg_stat_all_tables WHERE relid = %s"

# PostgreSQL 15+: "tuples: 8000 removed, 2000 remain, 0 are dead but not yet removable"
_TUPLES_15 = re.compile(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable")
# PostgreSQL 14 and older: "found 8000 removable, 2000 nonremovable row versions" and
# "0 dead row versions cannot be removed yet"
_TUPLES_OLD = re.compile(r"found (\d+) removable, (\d+) nonremovable row versions")
_NOT_REMOVABLE_OLD = re.compile(r"(\d+) dead row versions cannot be removed yet")
_REFUSED = re.compile(r"^WARNING:\s+(.*(?:skipping|permission denied).*)$", re.MULTILINE)


def parse_vacuum_verbose(notices):
    """Tuples removed and dead-but-not-removable of the main relation, from VACUUM VERBOSE.

    The heap of the table is reported before its TOAST table, so the first match is the
    table's own. Returns ``(removed, not_removable)``, None where the output did not say.
    """
    text = "\n".join(notices)
    found = _TUPLES_15.search(text)
    if found:
        return int(found.group(1)), int(found.group(3))
    found = _TUPLES_OLD.search(text)
    if found:
        rest = _NOT_REMOVABLE_OLD.search(text, found.end())
        return int(found.group(1)), int(rest.group(1)) if rest else None
    return None, None


def refusal_in(notices):
    """The server's words when VACUUM skipped the table with a warning (not owner ...)."""
    for notice in notices:
        found = _REFUSED.search(notice)
        if found:
            return found.group(1).strip()
    return None


class Session:
    """One autocommit connection to ``params['db']``."""

    def __init__(self, params, connect=None):
        self.params = params
        self.secrets = _postgres.secrets_of(params)
        self.where = _postgres.describe(params, params["db"])
        try:
            self.conn = (connect or _postgres.connect)(params, params["db"], autocommit=True)
        except _postgres.PostgresError as exc:
            raise MaintenanceError(str(exc)) from None
        self.notices = _Notices()
        self.conn.notices = self.notices
        self.version = self.rows("SHOW server_version_num")[0]["server_version_num"]
        self.version = int(self.version)

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001, S110 - closing is best effort  # nosec
            pass

    # low level -------------------------------------------------------------------------
    def _error(self, exc, doing):
        text = redact(str(getattr(exc, "pgerror", None) or exc).strip(), self.secrets)
        text = text.replace("ERROR:  ", "").splitlines()[0] if text else type(exc).__name__
        return StatementError("%s failed on %s: %s" % (doing, self.where, text), getattr(exc, "pgcode", None))

    def rows(self, sql, args=None, doing="a query"):
        try:
            return _postgres.query(self.conn, sql, args)
        except _postgres.psycopg2.Error as exc:
            raise self._error(exc, doing) from None

    def execute(self, sql, args=None, doing="a statement"):
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args)
        except _postgres.psycopg2.Error as exc:
            raise self._error(exc, doing) from None

    def _rollback_quietly(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute("ROLLBACK")
        except _postgres.psycopg2.Error:
            pass

    def _timeouts(self, lock_timeout, statement_timeout):
        self.execute(
            "SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
            (ms(lock_timeout), ms(statement_timeout) if statement_timeout else "0"),
            doing="setting lock_timeout",
        )

    def reset_timeouts(self):
        try:
            self.execute("RESET lock_timeout; RESET statement_timeout")
        except StatementError:
            pass

    @property
    def alive(self):
        return not self.conn.closed

    # vacuum ----------------------------------------------------------------------------
    def survey(self):
        """The tables (and materialized views) of the database this module may vacuum."""
        maintain = "OR has_table_privilege(c.oid, 'MAINTAIN')" if self.version >= 170000 else ""
        return self.rows(SURVEY_SQL.format(maintain=maintain), doing="listing the tables")

    def resolve(self, name):
        """The oid of ``name`` read as SQL (``"my schema"."t"``), or None."""
        try:
            found = self.rows("SELECT to_regclass(%s)::oid::bigint AS oid", (name,), doing="looking up a table")
        except StatementError:
            return None
        return found[0]["oid"] if found else None

    def sees_all_sessions(self):
        return bool(self.rows(SEES_ALL_SESSIONS_SQL)[0]["sees_all"])

    def long_transactions(self, max_age):
        """Open transactions (sessions, then prepared ones) older than ``max_age`` seconds."""
        found = self.rows(LONG_XACTS_SQL, (max_age,), doing="looking for long transactions")
        for row in self.rows(PREPARED_XACTS_SQL, (max_age,), doing="looking for prepared transactions"):
            row.update(pid=None, application=None, client=None, state="prepared (gid %s)" % row.pop("gid"))
            found.append(row)
        return found

    def lock_holders(self, oid):
        try:
            return self.rows(LOCK_HOLDERS_SQL, (oid, list(CONFLICTS_WITH_VACUUM)))
        except StatementError:
            return []

    def dead_tuples(self, oid):
        found = self.rows(DEAD_SQL, (oid,), doing="reading table statistics")
        return found[0] if found else {"dead": None, "live": None}

    def vacuum(self, schema, name, analyze, lock_timeout, statement_timeout):
        """VACUUM (VERBOSE[, ANALYZE]) one table; returns the server's notices.

        ``lock_timeout`` makes VACUUM give up instead of queueing behind a conflicting lock
        (and making everyone who comes after wait too); ``statement_timeout`` (None: none)
        keeps it within the run's time budget.
        """
        self._timeouts(lock_timeout, statement_timeout)
        self.notices.clear()
        options = "VERBOSE, ANALYZE" if analyze else "VERBOSE"
        self.execute(
            "VACUUM (%s) %s.%s" % (options, quote_ident(schema), quote_ident(name)),
            doing="VACUUM of %s.%s" % (schema, name),
        )
        return list(self.notices)

    def probe_lock(self, schema, name, lock_timeout, statement_timeout):
        """Check mode's stand-in for VACUUM: take VACUUM's lock in a transaction, roll back."""
        self._timeouts(lock_timeout, statement_timeout)
        try:
            self.execute("BEGIN")
            self.execute(
                "LOCK TABLE ONLY %s.%s IN SHARE UPDATE EXCLUSIVE MODE" % (quote_ident(schema), quote_ident(name)),
                doing="lock probe of %s.%s" % (schema, name),
            )
        finally:
            self._rollback_quietly()
        return []

    # report ----------------------------------------------------------------------------
    def has_extension(self, name):
        return bool(self.rows("SELECT 1 AS one FROM pg_extension WHERE extname = %s", (name,)))

    def reindex_concurrently(self, schema, name, lock_timeout):
        self._timeouts(lock_timeout, None)
        self.execute(
            "REINDEX INDEX CONCURRENTLY %s.%s" % (quote_ident(schema), quote_ident(name)),
            doing="REINDEX INDEX CONCURRENTLY of %s.%s" % (schema, name),
        )

    def drop_index_concurrently(self, schema, name, lock_timeout):
        self._timeouts(lock_timeout, None)
        self.execute(
            "DROP INDEX CONCURRENTLY IF EXISTS %s.%s" % (quote_ident(schema), quote_ident(name)),
            doing="DROP INDEX CONCURRENTLY of %s.%s" % (schema, name),
        )

    def terminate(self, pid):
        found = self.rows("SELECT pg_terminate_backend(%s) AS done", (pid,), doing="pg_terminate_backend(%s)" % pid)
        return bool(found and found[0]["done"])
