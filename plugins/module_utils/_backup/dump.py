# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql_dump: preflight, dump, verify, rename, manifest, retention, metrics.

One code path serves check mode and real runs; only the side effects (creating
directories, removing stale temp files, dumping, deleting) are gated on ``check_mode``.
The life of a run around the dump itself (lock, stale temp files, free space, retention,
metrics) is ``job.BackupJob``'s, shared with postgresql_basebackup.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import socket
import time

from ansible_collections.bosun.platform.plugins.module_utils._backup import metrics as _metrics
from ansible_collections.bosun.platform.plugins.module_utils._backup import tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.job import (
    BackupJob,
    check_label,
    check_not_negative,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    GLOBALS_DIR,
    MANIFEST_VERSION,
    BackupError,
    db_dirname,
    dbname_from_dirname,
    iso,
    tree_digest,
    tree_files,
    utc_now,
    write_manifest,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.pipeline import (
    Stage,
    TailHasher,
    run_pipeline,
    tail,
)
from ansible_collections.bosun.platform.plugins.module_utils._io import (
    MIB,
    free_bytes,
    fsync_dir,
    fsync_tree,
    human,
    os_error_message,
    sha256_file,
    temp_dir_for,
    temp_path_for,
)
from ansible_collections.bosun.platform.plugins.module_utils._postgres import (
    PostgresError,
    connect,
    describe,
    libpq_env,
    query,
    server_version_num,
)

# Ratio of backup size to table data size assumed before a database has a verified backup.
FIRST_RATIO = dict(none=1.0)
DEFAULT_FIRST_RATIO = 0.5
SCHEMA_ALLOWANCE = 256 * 1024

USER_TABLES_SQL = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

DATA_SIZE_SQL = """
SELECT coalesce(sum(pg_table_size(c.oid)), 0) AS data_size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
"""

DATABASE_INFO_SQL = """
SELECT pg_database_size(d.oid) AS size, pg_get_userbyid(d.datdba) AS owner,
       pg_encoding_to_char(d.encoding) AS encoding, to_jsonb(d) AS row
FROM pg_database d WHERE d.datname = current_database()
"""

LIST_DATABASES_SQL = """
SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname
"""


def validate(params):
    if params.get("db") and params.get("all_databases"):
        raise BackupError("db and all_databases are mutually exclusive")
    if not params.get("db") and not params.get("all_databases"):
        raise BackupError("name a database with db, or set all_databases: true")
    check_label(params)
    for key in ("keep_last", "keep_days"):
        if params.get(key) is not None and params[key] < 0:
            raise BackupError("%s must be 0 or more, not %s" % (key, params[key]))
    if params.get("keep_last") == 0 and params.get("keep_days") is None:
        raise BackupError(
            "keep_last: 0 alone would keep nothing; the newest verified backup is always kept, say keep_last: 1"
        )
    if (params.get("keep_min_verified") or 0) < 1:
        raise BackupError("keep_min_verified must be at least 1: the newest verified backup is never deleted")
    if (params.get("jobs") or 1) < 1:
        raise BackupError("jobs must be at least 1")
    if (params.get("jobs") or 1) > 1 and params.get("format") != "directory":
        raise BackupError("jobs > 1 needs format: directory (pg_dump dumps in parallel only into a directory)")
    check_not_negative(params, "space_reserve_mb")
    if (params.get("compression_threads") or 0) < 0:
        raise BackupError("compression_threads must be 0 (one per CPU) or more")
    check_not_negative(params, "dir_lock_timeout")


def parse_toc(text):
    """(number of TOC entries, [rest of each TABLE line]) from ``pg_restore --list``."""
    entries = None
    tables = []
    for line in text.splitlines():
        m = re.match(r"^;\s+TOC Entries:\s+(\d+)", line)
        if m:
            entries = int(m.group(1))
            continue
        m = re.match(r"^-?\d+; \d+ \d+ (.*)$", line)
        if m and m.group(1).startswith("TABLE ") and not m.group(1).startswith("TABLE DATA "):
            tables.append(m.group(1)[len("TABLE ") :])
    return entries, tables


def missing_tables(expected, listed):
    """Expected (schema, name) pairs with no TABLE entry in the archive's table of contents."""
    missing = []
    for schema, name in expected:
        key = "%s %s" % (schema, name)
        if not any(rest == key or rest.startswith(key + " ") for rest in listed):
            missing.append("%s.%s" % (schema, name))
    return missing


class Dumper(BackupJob):
    """One backup per database (and one of the globals) in its own directory of backup_dir."""

    PRODUCE = "dump"
    SIZE_KEY = "data_size"
    ESTIMATE_HOW = ("table data %s x ratio %.3f of the backup %s", "table data %s x %.2f, no earlier backup")

    def __init__(self, params, runner, check_mode, now=utc_now, sleep=time.sleep):
        super(Dumper, self).__init__(params, runner, check_mode, now=now, sleep=sleep, backups=[], failed=[])

    # -- entry point -----------------------------------------------------------------
    def run(self):
        validate(self.params)
        if self.producing:
            targets = self._prepare_dump()
            self._make_directory(self.backup_dir, "backup_dir %s" % self.backup_dir)
        else:
            targets = self._retention_targets()
        for kind, dbname in targets:
            dirname = GLOBALS_DIR if kind == "globals" else db_dirname(dbname)
            try:
                self._cycle(os.path.join(self.backup_dir, dirname), (kind, dbname))
            except BackupError as exc:
                self.result["failed"].append(dict(database=dbname, kind=kind, msg=exc.msg))
            except (IOError, OSError) as exc:
                self.result["failed"].append(dict(database=dbname, kind=kind, msg=os_error_message(exc)))
        if self.result["failed"]:
            msgs = [
                "%s: %s" % (f["database"] if f["kind"] == "database" else "globals", f["msg"])
                for f in self.result["failed"]
            ]
            raise BackupError("; ".join(msgs), **self.result)
        return self.result

    # -- preparation ---------------------------------------------------------------
    def _connect(self, dbname):
        try:
            return connect(self.params, dbname)
        except PostgresError as exc:
            raise BackupError(str(exc), **self.result) from exc

    def _prepare_dump(self):
        p = self.params
        first_db = p.get("db") or p.get("maintenance_db") or "postgres"
        conn = self._connect(first_db)
        try:
            self.server_num = server_version_num(conn)
            self.server_version = query(conn, "SHOW server_version")[0]["server_version"]
            if p.get("all_databases"):
                dbs = [r["datname"] for r in query(conn, LIST_DATABASES_SQL)]
            else:
                dbs = [p["db"]]
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise BackupError(
                "cannot read the version and databases of %s: %s"
                % (describe(p, first_db), self.runner.redact(str(exc).strip())),
                **self.result,
            ) from exc
        finally:
            conn.close()
        self.result["server_version"] = self.server_version
        where = describe(p)
        server_major = tools.major_of_server(self.server_num)
        self.pg_dump = tools.require_program("pg_dump", p.get("bin_dir"))
        self.pg_restore = tools.require_program("pg_restore", p.get("bin_dir"), "to verify each backup")
        self.client = tools.client_major(self.pg_dump, self.runner)
        tools.check_can_dump("pg_dump", self.client, server_major, where)
        restore_client = tools.client_major(self.pg_restore, self.runner)
        if restore_client < self.client:
            raise BackupError(
                "pg_restore %s (%s) is older than pg_dump %s and cannot read its archives"
                % (tools.major_label(restore_client), self.pg_restore, tools.major_label(self.client))
            )
        self.plan = tools.plan_compression(
            p.get("compression") or "auto",
            p.get("format") or "custom",
            self.client,
            level=p.get("compression_level"),
            threads=p.get("compression_threads") or 0,
        )
        self.result["compression"] = dict(method=self.plan["method"], level=self.plan["level"], via=self.plan["via"])
        self.result["client_version"] = tools.major_label(self.client)
        targets = []
        if p.get("all_databases"):
            self.pg_dumpall = tools.require_program("pg_dumpall", p.get("bin_dir"))
            dumpall_client = tools.client_major(self.pg_dumpall, self.runner)
            tools.check_can_dump("pg_dumpall", dumpall_client, server_major, where)
            targets.append(("globals", None))
        targets.extend(("database", db) for db in dbs)
        return targets

    def _retention_targets(self):
        p = self.params
        if p.get("db"):
            return [("database", p["db"])]
        targets = []
        try:
            names = sorted(os.listdir(self.backup_dir))
        except OSError:
            names = []
        for name in names:
            if not os.path.isdir(os.path.join(self.backup_dir, name)) or name.startswith("."):
                continue
            if name == GLOBALS_DIR:
                targets.insert(0, ("globals", None))
            else:
                targets.append(("database", dbname_from_dirname(name)))
        return targets

    # -- one database (or the globals): the hooks of BackupJob._cycle ---------------------
    def _inspect(self, target):
        kind, dbname = target
        return self._database_info(dbname) if kind == "database" else None

    def _ensure_directory(self, directory):
        self._make_directory(directory, directory, report=False)

    def _produce(self, directory, target, context):
        kind, dbname = target
        return self._dump(kind, dbname, directory, context)["stem"]

    def _database_info(self, dbname):
        conn = self._connect(dbname)
        try:
            row = query(conn, DATABASE_INFO_SQL)[0]
            data_size = int(query(conn, DATA_SIZE_SQL)[0]["data_size"])
            tables = [(r["schema"], r["name"]) for r in query(conn, USER_TABLES_SQL)]
        except Exception as exc:  # psycopg2.Error; the module must not print a traceback
            raise BackupError(
                "cannot read the size and tables of %s: %s"
                % (describe(self.params, dbname), self.runner.redact(str(exc).strip()))
            ) from exc
        finally:
            conn.close()
        raw = row.get("row") or {}
        return dict(
            size=int(row["size"]),
            data_size=data_size,
            owner=row["owner"],
            encoding=row["encoding"],
            collate=raw.get("datcollate"),
            ctype=raw.get("datctype"),
            locale_provider=raw.get("datlocprovider"),
            icu_locale=raw.get("daticulocale") or raw.get("datlocale"),
            tables=tables,
        )

    def _tables_after(self, dbname):
        conn = self._connect(dbname)
        try:
            return [(r["schema"], r["name"]) for r in query(conn, USER_TABLES_SQL)]
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise BackupError(
                "cannot list the tables of %s: %s"
                % (describe(self.params, dbname), self.runner.redact(str(exc).strip()))
            ) from exc
        finally:
            conn.close()

    # -- the dump itself -------------------------------------------------------------
    def _dump(self, kind, dbname, directory, info):
        fmt = "plain" if kind == "globals" else self.params.get("format") or "custom"
        estimate, how = self._estimate_dump(directory, info)
        what = "the globals" if kind == "globals" else "the backup of %s" % dbname
        preflight = self._preflight(directory, what, estimate, how)
        started, stem = self._choose_stem(directory)
        ext = ".sql" if kind == "globals" else self.plan["ext"]
        final = os.path.join(directory, stem + ext)
        summary = dict(
            database=dbname,
            kind=kind,
            path=final,
            manifest=os.path.join(directory, stem + ".manifest.json"),
            stem=stem,
            format=fmt,
            compression="none" if kind == "globals" else self.plan["method"],
            label=self.params.get("label"),
            estimate_bytes=preflight["estimate_bytes"],
            free_bytes_before=preflight["free_bytes"],
        )
        if self.check_mode:
            summary["verified"] = None
            self.result["backups"].append(summary)
            self.result["changed"] = True
            return summary
        t0 = time.monotonic()
        if kind == "globals":
            manifest = self._dump_globals(final)
        else:
            manifest = self._dump_database(dbname, final, fmt, info)
        finished = self.now()
        manifest.update(
            manifest_version=MANIFEST_VERSION,
            tool="bosun.platform.postgresql_dump",
            kind=kind,
            database=dbname,
            server=describe(self.params),
            host=socket.gethostname(),
            server_version=self.server_version,
            server_version_num=self.server_num,
            client_version=tools.major_label(self.client),
            client_major=self.client,
            format=fmt,
            file=os.path.basename(final),
            label=self.params.get("label"),
            started=iso(started),
            finished=iso(finished),
            finished_epoch=round(time.time(), 3),
            duration=round(time.monotonic() - t0, 3),
            verified=True,
        )
        write_manifest(summary["manifest"], manifest)
        fsync_dir(directory)
        self.result["changed"] = True
        for key in ("size", "sha256", "duration", "started", "finished", "verified", "verify", "toc_entries", "tables"):
            if key in manifest:
                summary[key] = manifest[key]
        self.result["backups"].append(summary)
        return summary

    def _fail_path(self, path, what, detail):
        free = None
        try:
            free = free_bytes(os.path.dirname(path))
        except OSError:
            pass
        note = ""
        if free is not None and free < MIB:
            note = " (the filesystem of %s has %s free)" % (os.path.dirname(path), human(free))
        return BackupError("%s failed: %s%s; nothing was written under %s" % (what, detail, note, path))

    def _dump_database(self, dbname, final, fmt, info):
        env = libpq_env(self.params, dbname)
        what = "pg_dump of %s" % describe(self.params, dbname)
        plan = self.plan
        tmp = temp_dir_for(final) if fmt == "directory" else temp_path_for(final)
        try:
            if fmt == "directory":
                argv = [self.pg_dump, "-w", "-Fd", "-j", str(self.params.get("jobs") or 1)]
                argv += plan["dump_args"] + ["--no-sync", "-f", tmp]
                rc, _out, err = self.runner.run(argv, env)
                if rc != 0:
                    raise self._fail_path(final, what, "pg_dump exited with %d: %s" % (rc, tail(err)))
                fsync_tree(tmp)
                files = tree_files(tmp)
                size = sum(f["size"] for f in files.values())
                digest = tree_digest(files)
            elif plan["via"] == "stream":
                files = None
                digest, size = self._stream_dump(env, tmp, final, what)
            else:
                files = None
                argv = [self.pg_dump, "-w", "-Fc"] + plan["dump_args"] + ["--no-sync", "-f", tmp]
                rc, _out, err = self.runner.run(argv, env)
                if rc != 0:
                    raise self._fail_path(final, what, "pg_dump exited with %d: %s" % (rc, tail(err)))
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                size = os.path.getsize(tmp)
                digest = sha256_file(tmp)
            expected = sorted(set(info["tables"]) & set(self._tables_after(dbname)))
            verify = self._verify(tmp, fmt, expected, final)
            os.rename(tmp, final)
        except BaseException:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(os.path.dirname(final))
        manifest = dict(
            size=size,
            sha256=digest,
            compression=plan["method"],
            compression_level=plan["level"],
            compression_via=plan["via"],
            database_size=info["size"],
            data_size=info["data_size"],
            owner=info["owner"],
            encoding=info["encoding"],
            collate=info["collate"],
            ctype=info["ctype"],
            locale_provider=info["locale_provider"],
            icu_locale=info["icu_locale"],
            tables=len(expected),
        )
        if files is not None:
            manifest["files"] = files
        manifest.update(verify)
        return manifest

    def _stream_dump(self, env, tmp, final, what):
        """pg_dump -Fc -Z0 | compressor > tmp; both exit codes checked; fsync; sha256.

        The compressor writes the temp file itself (no extra copy through this process,
        which matters where pg_dump, the server and the compressor share two cores), and a
        thread hashes the file as it grows, so the checksum costs no time at the end.
        """
        stages = [
            Stage([self.pg_dump, "-w", "-Fc"] + self.plan["dump_args"], env=env, name="pg_dump"),
            Stage(self.plan["stream_args"], env=tools.env_without_pg(env), name=self.plan["method"]),
        ]
        hasher = TailHasher(tmp)
        try:
            with open(tmp, "wb") as out:
                hasher.start()
                try:
                    result = run_pipeline(stages, runner=self.runner, stdout=out)
                finally:
                    digest, size = hasher.finish()
                failures = result.failures()
                if failures:
                    raise self._fail_path(final, what, "; ".join(failures))
                out.flush()
                os.fsync(out.fileno())
            if size != os.path.getsize(tmp):
                raise self._fail_path(final, what, "%s changed while it was being written" % tmp)
            return digest, size
        except (IOError, OSError) as exc:
            raise self._fail_path(final, what, "writing %s: %s" % (tmp, exc.strerror or exc)) from exc

    def _verify(self, path, fmt, expected, final):
        """pg_restore --list must succeed and show every expected table ("full" reads all data)."""
        plan = self.plan
        mode = self.params.get("verify") or "list"
        what = "verification of %s" % final
        plain_env = tools.env_without_pg()
        if plan["via"] == "stream" and fmt == "custom":
            decompress = tools.decompress_argv(plan["method"], path)
            res = run_pipeline(
                [
                    Stage(decompress, env=plain_env, cut_short_ok=True),
                    Stage([self.pg_restore, "-l"], env=plain_env, name="pg_restore --list"),
                ],
                runner=self.runner,
            )
            if not res.ok:
                raise self._fail_path(final, what, "; ".join(res.failures()))
            toc = res.stdout.decode("utf-8", "replace")
        else:
            rc, toc, err = self.runner.run([self.pg_restore, "-l", path], plain_env)
            if rc != 0:
                raise self._fail_path(final, what, "pg_restore --list exited with %d: %s" % (rc, tail(err)))
        entries, listed = parse_toc(toc)
        if entries is None:
            raise self._fail_path(final, what, "pg_restore --list printed no table of contents")
        missing = missing_tables(expected, listed)
        if missing:
            raise self._fail_path(
                final,
                what,
                "the archive lacks %d of %d tables: %s" % (len(missing), len(expected), ", ".join(missing[:10])),
            )
        if mode == "full":
            self._verify_full(path, fmt, final, what, plain_env)
        return dict(verify=mode, toc_entries=entries)

    def _verify_full(self, path, fmt, final, what, plain_env):
        plan = self.plan
        if plan["via"] == "stream" and fmt == "custom":
            rc, _out, err = self.runner.run(tools.integrity_argv(plan["method"], path), plain_env)
            if rc != 0:
                raise self._fail_path(final, what, "%s -t exited with %d: %s" % (plan["method"], rc, tail(err)))
            res = run_pipeline(
                [
                    Stage(tools.decompress_argv(plan["method"], path), env=plain_env, cut_short_ok=True),
                    Stage([self.pg_restore, "-f", os.devnull], env=plain_env, name="pg_restore"),
                ],
                runner=self.runner,
            )
            if not res.ok:
                raise self._fail_path(final, what, "; ".join(res.failures()))
        else:
            rc, _out, err = self.runner.run([self.pg_restore, "-f", os.devnull, path], plain_env)
            if rc != 0:
                raise self._fail_path(final, what, "pg_restore of every entry exited with %d: %s" % (rc, tail(err)))

    def _dump_globals(self, final):
        p = self.params
        env = libpq_env(p, p.get("maintenance_db") or "postgres")
        tmp = temp_path_for(final)
        what = "pg_dumpall --globals-only of %s" % describe(p)
        try:
            argv = [self.pg_dumpall, "-w", "--globals-only", "--no-sync", "-f", tmp]
            if (p.get("maintenance_db") or "postgres") != "postgres":
                argv += ["-l", p["maintenance_db"]]
            rc, _out, err = self.runner.run(argv, env)
            if rc != 0:
                raise self._fail_path(final, what, "pg_dumpall exited with %d: %s" % (rc, tail(err)))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
                head = f.read(200)
                f.seek(max(0, os.path.getsize(tmp) - 200))
                end = f.read()
            if b"PostgreSQL database cluster dump" not in head or b"cluster dump complete" not in end:
                raise self._fail_path(final, "verification of %s" % final, "the script is incomplete")
            size = os.path.getsize(tmp)
            digest = sha256_file(tmp)
            os.rename(tmp, final)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(os.path.dirname(final))
        return dict(size=size, sha256=digest, compression="none", compression_via=None, verify="script", tables=0)

    def _estimate_dump(self, directory, info):
        """(estimated backup bytes, how it was estimated).

        The size of the tables' data (heap and TOAST: what pg_dump reads; indexes and the
        catalogs are not dumped) times the ratio of backup size to data size of the last
        verified backup; without one, a ratio of 0.5 (1 uncompressed). Plus SCHEMA_ALLOWANCE
        for the schema and the archive's table of contents.
        """
        if info is None:  # globals: a few kilobytes
            return SCHEMA_ALLOWANCE, "globals"
        ratio = FIRST_RATIO.get(self.plan["method"], DEFAULT_FIRST_RATIO)
        return self._estimate(directory, info["data_size"], ratio, SCHEMA_ALLOWANCE)

    # -- retention and metrics ---------------------------------------------------------
    def _retention_rules(self):
        p = self.params
        if p.get("keep_last") is None and p.get("keep_days") is None:
            return None
        return dict(
            keep_last=p.get("keep_last"),
            keep_days=p.get("keep_days"),
            keep_min_verified=p.get("keep_min_verified") or 1,
        )

    def _metrics_file(self, mdir, directory, target, ok, run_at):
        kind, dbname = target
        return _metrics.write_backup_metrics(
            mdir,
            os.path.basename(directory),
            database=dbname if kind == "database" else "",
            kind=kind,
            ok=ok,
            run_at=run_at,
            newest=next(self._verified_manifests(directory), None),
        )

    def _metrics_failed(self, target, msg):
        kind, dbname = target
        self.result["failed"].append(dict(database=dbname, kind=kind, msg=msg))


def run(params, runner, check_mode=False, now=utc_now, sleep=time.sleep):
    """Run postgresql_dump; returns the result dict or raises BackupError (with .result)."""
    return Dumper(params, runner, check_mode, now=now, sleep=sleep).run()
