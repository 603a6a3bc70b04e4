"""Apply the example app's database migrations: ``python -m bosun_example.migrate``.

Each ``migrations/NNNN_name.sql`` file runs once, in order, in its own transaction, and is
recorded in ``schema_migrations``. An advisory lock makes concurrent runs wait for each
other. The last line printed says what happened, for the caller's ``changed`` test:
``migrate: applied 0001_items`` or ``migrate: up to date``. Exit code 1 on failure.
"""

import sys
from pathlib import Path

from . import store

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LOCK_ID = 715_289_003  # any constant shared by every run of this app


def _statements(text):
    return [statement.strip() for statement in text.split(";") if statement.strip()]


def migrate(conn):
    conn.run("SELECT pg_advisory_lock(:id)", id=LOCK_ID)
    try:
        conn.run(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.run("SELECT version FROM schema_migrations")}
        applied = []
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.stem in done:
                continue
            conn.run("BEGIN")
            try:
                for statement in _statements(path.read_text(encoding="utf-8")):
                    conn.run(statement)
                conn.run("INSERT INTO schema_migrations (version) VALUES (:version)", version=path.stem)
                conn.run("COMMIT")
            except Exception:
                conn.run("ROLLBACK")
                raise
            applied.append(path.stem)
        return applied
    finally:
        conn.run("SELECT pg_advisory_unlock(:id)", id=LOCK_ID)


def main():
    try:
        conn = store.connect_database()
        try:
            applied = migrate(conn)
        finally:
            conn.close()
    except Exception as exc:  # report the cause in one line, without a traceback
        print("migrate: failed: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 1
    print("migrate: applied %s" % ", ".join(applied) if applied else "migrate: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
