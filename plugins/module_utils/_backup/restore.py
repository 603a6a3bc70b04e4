# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql_restore: checksum first, restore into a staging database, then swap; or drill.

A restore never touches the target database until the backup has been restored in full
into a staging database: a failed restore leaves the target as it was. With ``force`` an
existing target is then renamed away, the staging database renamed into its place and the
old one dropped. A drill restores into a scratch database, runs sanity checks, drops it and
reports how long the restore took (the recovery time it measured).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile
import time
import uuid

from ansible_collections.bosun.platform.plugins.module_utils._backup import metrics as _metrics
from ansible_collections.bosun.platform.plugins.module_utils._backup import tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.dump import USER_TABLES_SQL, os_error_message
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    GLOBALS_DIR,
    BackupError,
    db_dirname,
    entry_for_path,
    iso,
    list_backups,
    utc_now,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.pipeline import Stage, run_pipeline, tail
from ansible_collections.bosun.platform.plugins.module_utils._postgres import (
    PostgresError,
    connect,
    conninfo_dbname,
    describe,
    libpq_env,
    query,
    quote_ident,
    quote_literal,
)

RESTORE_TEMP_MARKER = ".bosun-restore-"


def validate(params):
    if (params.get("backup") or "latest") == "latest":
        if not params.get("backup_dir") or not params.get("db"):
            raise BackupError("backup: latest needs backup_dir and db (the database whose newest backup to restore)")
    if params.get("drill") and params.get("target_db"):
        raise BackupError("target_db does not apply to a drill: a drill restores into a scratch database it drops")
    if (params.get("jobs") or 1) < 1:
        raise BackupError("jobs must be at least 1")
    for name, minimum in (params.get("drill_min_rows") or {}).items():
        try:
            if int(minimum) < 0:
                raise ValueError()
        except (TypeError, ValueError):
            raise BackupError(
                "drill_min_rows[%s] must be a whole number of rows, 0 or more, not %r" % (name, minimum)
            ) from None


def resolve_backup(params):
    """The BackupEntry to restore: ``latest`` of ``db`` in ``backup_dir``, or a path."""
    choice = params.get("backup") or "latest"
    if choice == "latest":
        directory = os.path.join(os.path.abspath(params["backup_dir"]), db_dirname(params["db"]))
        entries = list_backups(directory)
        if not entries:
            raise BackupError("no backup of database %s in %s" % (params["db"], directory))
        return entries[0]
    entry = entry_for_path(choice)
    if entry is None:
        raise BackupError(
            "%s is not a backup written by postgresql_dump "
            "(expected <UTC timestamp>[-<label>].<ext> with its .manifest.json beside it)" % choice
        )
    return entry


def check_backup(entry):
    """The manifest of a backup whose checksum matches; BackupError naming the file otherwise."""
    ok, reason = entry.check(checksum=True)
    if not ok:
        raise BackupError("refusing to restore %s: %s" % (entry.display_path, reason), backup=entry.summary())
    return entry.manifest


class Restorer:
    def __init__(self, params, runner, check_mode, now=utc_now):
        self.params = params
        self.runner = runner
        self.check_mode = check_mode
        self.now = now
        self.drill = bool(params.get("drill"))
        self.result = dict(changed=False, check_mode=bool(check_mode), drill=self.drill, commands=runner.commands)

    def fail(self, msg):
        return BackupError(msg, **self.result)

    # -- entry point -------------------------------------------------------------------
    def run(self):
        validate(self.params)
        started = time.time()
        entry = None
        try:
            entry = resolve_backup(self.params)
            self.result["backup"] = entry.summary()
            manifest = check_backup(entry)
            self.result["backup"].update(
                database=manifest.get("database"),
                kind=manifest.get("kind"),
                format=manifest.get("format"),
                compression=manifest.get("compression"),
                sha256=manifest.get("sha256"),
                finished=manifest.get("finished"),
                server_version=manifest.get("server_version"),
            )
            if manifest.get("kind") == "globals":
                self._restore_globals(entry)
            else:
                self._restore_database(entry, manifest)
        except (IOError, OSError) as exc:
            self._drill_metrics(entry, False, started)
            raise BackupError(os_error_message(exc), **self.result) from exc
        except BackupError as exc:
            self._drill_metrics(entry, False, started)
            for key, value in self.result.items():
                exc.result.setdefault(key, value)
            raise
        self._drill_metrics(entry, True, started)
        return self.result

    # -- plumbing ------------------------------------------------------------------------
    def _connect(self, dbname):
        try:
            return connect(self.params, dbname)
        except PostgresError as exc:
            raise self.fail(str(exc)) from exc

    def _sql(self, conn, statement, what, args=None):
        try:
            return query(conn, statement, args)
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise self.fail("%s failed: %s" % (what, self.runner.redact(str(exc).strip()))) from exc

    def _exists(self, conn, name):
        rows = self._sql(conn, "SELECT 1 AS one FROM pg_database WHERE datname = %s", "looking up a database", [name])
        return bool(rows)

    def _drop(self, conn, name):
        if self.server_num >= 130000:
            self._sql(conn, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % quote_ident(name), "dropping %s" % name)
        else:
            self._terminate(conn, name)
            self._sql(conn, "DROP DATABASE IF EXISTS %s" % quote_ident(name), "dropping %s" % name)

    def _terminate(self, conn, name):
        self._sql(
            conn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            "disconnecting the sessions of %s" % name,
            [name],
        )

    def _create(self, conn, name, manifest, owner):
        parts = ["CREATE DATABASE %s TEMPLATE template0" % quote_ident(name)]
        if manifest.get("encoding"):
            parts.append("ENCODING %s" % quote_literal(manifest["encoding"]))
        if manifest.get("locale_provider") == "i" and manifest.get("icu_locale") and self.server_num >= 150000:
            parts.append("LOCALE_PROVIDER icu ICU_LOCALE %s" % quote_literal(manifest["icu_locale"]))
        if manifest.get("collate"):
            parts.append("LC_COLLATE %s" % quote_literal(manifest["collate"]))
        if manifest.get("ctype"):
            parts.append("LC_CTYPE %s" % quote_literal(manifest["ctype"]))
        if owner:
            parts.append("OWNER %s" % quote_ident(owner))
        self._sql(conn, " ".join(parts), "creating the database %s" % name)

    def _owner(self, conn, manifest):
        wanted = self.params.get("owner") or manifest.get("owner")
        if not wanted:
            return None
        rows = self._sql(conn, "SELECT 1 AS one FROM pg_roles WHERE rolname = %s", "looking up a role", [wanted])
        if rows:
            return wanted
        if self.params.get("owner"):
            raise self.fail("the role %s named by owner does not exist on %s" % (wanted, describe(self.params)))
        self.result.setdefault("warnings", []).append(
            "the backup's database owner %s does not exist on %s; the database is owned by %s"
            % (wanted, describe(self.params), self.params.get("login_user"))
        )
        return None

    def _tools(self, manifest):
        p = self.params
        self.pg_restore = tools.require_program("pg_restore", p.get("bin_dir"))
        client = tools.client_major(self.pg_restore, self.runner)
        made_by = manifest.get("client_major") or 0
        if client < made_by:
            raise self.fail(
                "pg_restore %s (%s) cannot read an archive written by pg_dump %s; "
                "install the newer client and set bin_dir"
                % (tools.major_label(client), self.pg_restore, tools.major_label(made_by))
            )

    # -- database backups ------------------------------------------------------------------
    def _restore_database(self, entry, manifest):
        p = self.params
        self._tools(manifest)
        if manifest.get("compression_via") == "stream":
            tools.decompress_argv(manifest["compression"], entry.path)  # fails early when the tool is missing
        maintenance = p.get("maintenance_db") or "postgres"
        conn = self._connect(maintenance)
        try:
            self.server_num = int(
                self._sql(conn, "SHOW server_version_num", "reading the server version")[0]["server_version_num"]
            )
            token = uuid.uuid4().hex[:10]
            if self.drill:
                target = "bosun_drill_%s" % token
                exists = False
            else:
                target = p.get("target_db") or manifest.get("database")
                exists = self._exists(conn, target)
                if exists and not p.get("force"):
                    raise self.fail(
                        "database %s already exists on %s; set force: true to replace it (a restore into a new "
                        "database is the default), or choose another target_db" % (target, describe(self.params))
                    )
            self.result.update(target_db=target, target_exists=exists, replaced=bool(exists))
            if self.drill:
                self.result["drill_database"] = target
            else:
                self.result["changed"] = True
            owner = None if self.drill else self._owner(conn, manifest)
            if self.check_mode:
                return
            staging = target if self.drill else "bosun_restore_%s" % token
            self._create(conn, staging, manifest, owner)
            t0 = time.monotonic()
            try:
                self._pg_restore(entry, manifest, staging)
                restore_seconds = round(time.monotonic() - t0, 3)
                self.result["restore_seconds"] = restore_seconds
                if self.drill:
                    self._drill_checks(manifest, staging)
            except BaseException:
                self._drop(conn, staging)
                raise
            if self.drill:
                self._drop(conn, staging)
                self.result["drill_database_dropped"] = True
                failed = [c for c in self.result["checks"] if not c["ok"]]
                if failed:
                    raise self.fail(
                        "restore drill of %s failed %d of %d checks: %s"
                        % (
                            entry.display_path,
                            len(failed),
                            len(self.result["checks"]),
                            "; ".join("%s (%s)" % (c["check"], c["detail"]) for c in failed),
                        )
                    )
            else:
                self._swap(conn, staging, target, exists)
        finally:
            conn.close()

    def _pg_restore(self, entry, manifest, dbname):
        p = self.params
        jobs = p.get("jobs") or 1
        env = libpq_env(p, dbname)
        argv = [self.pg_restore, "-w", "--exit-on-error", "-d", conninfo_dbname(dbname)]
        if p.get("no_owner"):
            argv.append("--no-owner")
        what = "restore of %s into %s" % (entry.display_path, describe(p, dbname))
        streamed = manifest.get("compression_via") == "stream"
        temp = None
        try:
            if streamed and jobs > 1:
                temp = self._decompress_for_jobs(entry, manifest)
                if temp is None:
                    jobs = 1
            argv += ["--single-transaction"] if jobs == 1 else ["-j", str(jobs)]
            self.result["jobs"] = jobs
            if streamed and temp is None:
                res = run_pipeline(
                    [
                        Stage(tools.decompress_argv(manifest["compression"], entry.path), env=tools.env_without_pg()),
                        Stage(argv + ["-Fc"], env=env, name="pg_restore"),
                    ],
                    runner=self.runner,
                )
                if not res.ok:
                    raise self.fail("%s failed: %s" % (what, "; ".join(res.failures())))
            else:
                rc, _out, err = self.runner.run(argv + [temp or entry.path], env)
                if rc != 0:
                    raise self.fail("%s failed: pg_restore exited with %d: %s" % (what, rc, tail(err)))
        finally:
            if temp and os.path.exists(temp):
                os.unlink(temp)

    def _decompress_for_jobs(self, entry, manifest):
        """Parallel restore needs a seekable file: decompress a streamed backup into work_dir.

        Returns the temporary path, or None (restore with one job from the stream) when
        work_dir lacks room for the uncompressed archive.
        """
        work_dir = self.params.get("work_dir") or os.path.dirname(entry.path)
        need = int(manifest.get("database_size") or 0)
        try:
            st = os.statvfs(work_dir)
            free = st.f_bavail * st.f_frsize
        except OSError as exc:
            raise self.fail("work_dir %s is not usable: %s" % (work_dir, exc.strerror)) from exc
        if free < need:
            self.result.setdefault("warnings", []).append(
                "work_dir %s has %d bytes free, less than the database size %d: restoring with one job from the stream"
                % (work_dir, free, need)
            )
            return None
        fd, temp = tempfile.mkstemp(prefix=".%s%s" % (entry.backup_name, RESTORE_TEMP_MARKER), dir=work_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                res = run_pipeline(
                    [Stage(tools.decompress_argv(manifest["compression"], entry.path), env=tools.env_without_pg())],
                    sink=out.write,
                    runner=self.runner,
                )
        except (IOError, OSError) as exc:
            os.unlink(temp)
            raise self.fail("decompressing %s into %s failed: %s" % (entry.path, work_dir, exc)) from exc
        if not res.ok:
            os.unlink(temp)
            raise self.fail("decompressing %s failed: %s" % (entry.path, "; ".join(res.failures())))
        return temp

    def _swap(self, conn, staging, target, exists):
        """Put the restored staging database in the target's place."""
        if not exists:
            self._sql(conn, "ALTER DATABASE %s RENAME TO %s" % (quote_ident(staging), quote_ident(target)), "renaming")
            return
        old = "bosun_replaced_%s" % uuid.uuid4().hex[:10]
        self._sql(conn, "ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % quote_ident(target), "closing %s" % target)
        last = None
        for _attempt in range(10):
            self._terminate(conn, target)
            try:
                query(conn, "ALTER DATABASE %s RENAME TO %s" % (quote_ident(target), quote_ident(old)))
                last = None
                break
            except Exception as exc:  # psycopg2.Error: sessions reconnected in between
                last = exc
                time.sleep(0.5)
        if last is not None:
            self._sql(conn, "ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % quote_ident(target), "reopening")
            self._drop(conn, staging)
            raise self.fail(
                "cannot take %s out of service to replace it: %s; it was left as it was"
                % (target, self.runner.redact(str(last).strip()))
            )
        try:
            query(conn, "ALTER DATABASE %s RENAME TO %s" % (quote_ident(staging), quote_ident(target)))
        except Exception as exc:  # put the old database back
            query(conn, "ALTER DATABASE %s RENAME TO %s" % (quote_ident(old), quote_ident(target)))
            query(conn, "ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % quote_ident(target))
            self._drop(conn, staging)
            raise self.fail("cannot rename the restored database into %s: %s" % (target, exc)) from exc
        self._drop(conn, old)

    # -- drills ----------------------------------------------------------------------------
    def _drill_checks(self, manifest, dbname):
        p = self.params
        checks = []
        conn = self._connect(dbname)
        try:
            conn.set_session(readonly=True, autocommit=True)
            cur = conn.cursor()

            def run(sql):
                cur.execute(sql)
                return cur.fetchall()

            def record(name, fn):
                try:
                    ok, detail = fn()
                except Exception as exc:  # a failing query is a failed check, not a traceback
                    ok, detail = (
                        False,
                        self.runner.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else exc),
                    )
                checks.append(dict(check=name, ok=bool(ok), detail=detail))

            if manifest.get("tables") is not None:

                def table_count():
                    n = len(run(USER_TABLES_SQL))
                    return n == manifest["tables"], "%d tables restored, %d in the backup" % (n, manifest["tables"])

                record("table count", table_count)
            for table in p.get("drill_tables") or []:

                def exists(table=table):
                    found = run("SELECT to_regclass(%s)::text" % quote_literal(table))[0][0]
                    return found is not None, "found" if found else "missing"

                record("table %s exists" % table, exists)
            for table, minimum in sorted((p.get("drill_min_rows") or {}).items()):

                def rows(table=table, minimum=int(minimum)):
                    rel = run("SELECT to_regclass(%s)::text" % quote_literal(table))[0][0]
                    if rel is None:
                        return False, "table missing"
                    # rel is the server's own quoted rendering of a regclass: safe to splice.
                    n = run("SELECT count(*) FROM %s" % rel)[0][0]  # noqa: S608
                    return n >= minimum, "%d rows, at least %d wanted" % (n, minimum)

                record("rows of %s" % table, rows)
            for i, sql in enumerate(p.get("drill_sql") or []):

                def truth(sql=sql):
                    result = run(sql)
                    ok = len(result) == 1 and len(result[0]) >= 1 and result[0][0] is True
                    return ok, "returned true" if ok else "returned %s, not one row with true" % (result[:3],)

                record("drill_sql[%d]" % i, truth)
        finally:
            conn.close()
        self.result["checks"] = checks

    def _drill_metrics(self, entry, ok, started):
        if not self.drill or self.check_mode or not self.params.get("metrics_dir"):
            return
        m = (entry.manifest if entry is not None else None) or {}
        database = m.get("database") or self.params.get("db") or ""
        age = None
        if m.get("finished_epoch"):
            age = round(time.time() - float(m["finished_epoch"]), 3)
        try:
            path = _metrics.write_drill_metrics(
                self.params["metrics_dir"],
                db_dirname(database) if database else GLOBALS_DIR,
                database=database,
                ok=ok,
                run_at=round(started, 3),
                restore_seconds=self.result.get("restore_seconds"),
                backup_age=age,
            )
            self.result["metrics_file"] = path
        except (IOError, OSError) as exc:
            self.result.setdefault("warnings", []).append("cannot write metrics: %s" % exc)

    # -- globals ---------------------------------------------------------------------------
    def _restore_globals(self, entry):
        raise self.fail(
            "%s is a globals backup (roles and tablespaces of the whole server): postgresql_restore restores "
            "databases; replay it with psql on a new server as docs/backup-restore.md describes" % entry.display_path
        )


def run(params, runner, check_mode=False, now=utc_now):
    """Run postgresql_restore; returns the result dict or raises BackupError (with .result)."""
    result = Restorer(params, runner, check_mode, now=now).run()
    result["finished"] = iso(now())
    return result
