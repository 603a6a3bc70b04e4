# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgres: a real login and ``SELECT 1``, then what an operator asks of a database server.

Connections used of max_connections (the check's value), whether it is a replica and its
replay lag, WAL archiving (failing, age of the last archived segment), the size of pg_wal
(it grows when archiving fails, until the disk is full) and the age of the oldest open
transaction. Connection options are the collection's shared ones (_postgres).
Use a role with ``pg_monitor`` so the other sessions' transaction start times are visible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.bosun.platform.plugins.module_utils import _postgres
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import (
    classify_text,
    fmt_duration,
    fmt_num,
)
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import CRIT, OK, UNKNOWN, Threshold
from ansible_collections.bosun.platform.plugins.module_utils._io import redact

TYPE = "postgres"
FAMILY_ARGS = _postgres.POSTGRES_COMMON_ARGS
OPTIONS = dict(dbname=dict(type="str", default="postgres"))
METRICS = dict(
    connections=Threshold(70, 85, unit="%"),
    archive_age=Threshold(900, 3600, unit="s"),
    replication_lag=Threshold(30, 300, unit="s"),
    oldest_transaction=Threshold(600, 3600, unit="s"),
    wal_size=Threshold(2048, 4096, unit="MB"),
)

SQL = """
SELECT
  1 AS one,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
  current_setting('max_connections')::int AS max_connections,
  pg_is_in_recovery() AS in_recovery,
  current_setting('archive_mode') AS archive_mode,
  a.archived_count,
  a.failed_count,
  a.last_failed_wal,
  EXTRACT(EPOCH FROM now() - a.last_archived_time)::float8 AS archive_age,
  EXTRACT(EPOCH FROM now() - a.last_failed_time)::float8 AS failed_age,
  (a.last_failed_time IS NOT NULL
     AND (a.last_archived_time IS NULL OR a.last_failed_time > a.last_archived_time)) AS archive_failing,
  CASE WHEN pg_is_in_recovery() THEN
    CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL
              AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
         ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END
  END AS replication_lag,
  (SELECT EXTRACT(EPOCH FROM max(now() - xact_start))::float8 FROM pg_stat_activity
    WHERE xact_start IS NOT NULL AND backend_type = 'client backend'
      AND pid <> pg_backend_pid()) AS oldest_transaction,
  has_function_privilege('pg_ls_waldir()', 'EXECUTE') AS can_list_wal
FROM pg_stat_archiver a
"""

# pg_ls_waldir() needs superuser or pg_monitor; asked only when the role may call it.
WAL_SQL = "SELECT coalesce(sum(size), 0)::bigint AS wal_bytes, count(*) AS wal_files FROM pg_ls_waldir()"


def target(options):
    return _postgres.describe(options, options.get("dbname"))


def secrets(options):
    return _postgres.secrets_of(options)


def describe(options):
    return "PostgreSQL %s" % _postgres.describe(options, options.get("dbname"))


def run(probe, options):
    if not _postgres.HAS_PSYCOPG2:
        probe.fail(
            "the Python library psycopg2 is required on the managed host "
            "(python3-psycopg2, or pip install psycopg2-binary)",
            status=UNKNOWN,
        )
    params = dict(options)
    # libpq waits at least 2 s; the runner's deadline still ends the check on time.
    params["connect_timeout"] = int(
        max(2, min(int(options.get("connect_timeout") or 10), math.ceil(probe.remaining())))
    )
    where = describe(options)
    try:
        conn = _postgres.connect(params, options.get("dbname"))
    except _postgres.PostgresError as exc:
        text = str(exc)
        why = classify_text(text, probe.timeout)
        if why == "authentication failed":
            probe.fail("%s: authentication failed for user %s" % (where, options.get("login_user")))
        probe.fail("%s: %s (%s)" % (where, why, _detail(text)))
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (int(probe.remaining() * 1000),))
        row = _postgres.query(conn, SQL)[0]
        if row.get("can_list_wal"):
            row.update(_postgres.query(conn, WAL_SQL)[0])
    except _postgres.psycopg2.Error as exc:
        text = redact(str(exc).strip(), secrets(options))
        probe.fail("%s: query failed: %s" % (where, text.splitlines()[0] if text else type(exc).__name__))
    finally:
        conn.close()
    measure(probe, row)


def _detail(text):
    """The server's or libpq's own words from a connect error, without the address prefix."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    for line in lines:
        if " failed: " in line:
            return line.rsplit(" failed: ", 1)[-1]
    line = lines[-1] if lines else text
    return line.split(": ", 1)[-1] if line.startswith("cannot connect to PostgreSQL") else line


def measure(probe, row):
    """Turn the one-row query result into metrics (separate for unit tests)."""
    used, limit = int(row["connections"]), int(row["max_connections"])
    pct = round(100.0 * used / limit, 1) if limit else 0.0
    probe.metric("connections", pct, "PostgreSQL %d/%d connections (%s %%)" % (used, limit, fmt_num(pct, 0)))
    role = "replica" if row["in_recovery"] else "primary"
    notes = ["%d/%d connections (%s %%)" % (used, limit, fmt_num(pct, 0)), role]

    if row["in_recovery"]:
        lag = row.get("replication_lag")
        if lag is None:
            probe.metric("replication_lag", None, "replica: nothing replayed yet", status=CRIT)
            notes.append("nothing replayed yet")
        else:
            lag = round(float(lag), 1)
            probe.metric("replication_lag", lag, "replica lag %s" % fmt_duration(lag))
            notes.append("replay lag %s" % fmt_duration(lag))

    if row["archive_mode"] in ("on", "always"):
        if row["archive_failing"]:
            probe.metric(
                "archive_failing",
                int(row["failed_count"] or 0),
                "WAL archiving failing (%s failures, last %s)" % (row["failed_count"], row["last_failed_wal"]),
                status=CRIT,
                unit="failures",
            )
            notes.append(
                "WAL archiving failing: %s failures, the last on %s %s ago"
                % (row["failed_count"], row["last_failed_wal"], fmt_duration(row["failed_age"] or 0))
            )
        if row["archive_age"] is None:
            if not row["archive_failing"]:
                probe.metric("archive_age", None, "no WAL archived yet", status=OK)
                notes.append("no WAL archived yet")
        else:
            age = round(float(row["archive_age"]), 1)
            probe.metric("archive_age", age, "last WAL archived %s ago" % fmt_duration(age))
            notes.append("last WAL archived %s ago" % fmt_duration(age))
    else:
        notes.append("WAL archiving off")

    if row.get("wal_bytes") is not None:
        size_mb = round(int(row["wal_bytes"]) / 1048576.0, 1)
        probe.metric(
            "wal_size",
            size_mb,
            "pg_wal %s MB in %d files" % (fmt_num(size_mb, 0), int(row.get("wal_files") or 0)),
            headline=False,
        )
        notes.append("pg_wal %s MB" % fmt_num(size_mb, 0))
    elif row.get("can_list_wal") is False:
        probe.metric("wal_size", None, "pg_wal size not readable (grant pg_monitor)", headline=False)

    oldest = row.get("oldest_transaction")
    if oldest is not None:
        oldest = round(float(oldest), 1)
        probe.metric("oldest_transaction", oldest, "oldest transaction %s" % fmt_duration(oldest), headline=False)
        notes.append("oldest transaction %s" % fmt_duration(oldest))
    probe.message = ", ".join(notes)
