# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql_dump: preflight, dump, verify, rename, manifest, retention, metrics.

One code path serves check mode and real runs; only the side effects (creating
directories, removing stale temp files, dumping, deleting) are gated on ``check_mode``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import re
import shutil
import socket
import time

from ansible_collections.bosun.platform.plugins.module_utils._backup import metrics as _metrics
from ansible_collections.bosun.platform.plugins.module_utils._backup import tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    GLOBALS_DIR,
    LABEL_RE,
    LOCK_NAME,
    MANIFEST_VERSION,
    BackupError,
    db_dirname,
    dbname_from_dirname,
    iso,
    list_backups,
    parse_timestamp,
    stale_temp_names,
    stem_for,
    temp_in_use,
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
from ansible_collections.bosun.platform.plugins.module_utils._backup.retention import delete_entry, plan_retention
from ansible_collections.bosun.platform.plugins.module_utils._io import (
    free_bytes,
    fsync_dir,
    fsync_tree,
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

MIB = 1024 * 1024
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


def human(n):
    if n is None:
        return "?"
    if n < 10 * MIB:
        return "%.1f KiB" % (n / 1024.0)
    return "%.1f MiB" % (n / float(MIB))


def os_error_message(exc):
    """'<path>: <cause>' for an OSError, without a traceback."""
    if getattr(exc, "filename", None):
        return "%s: %s" % (exc.filename, exc.strerror or exc)
    return str(exc)


def validate(params):
    if params.get("db") and params.get("all_databases"):
        raise BackupError("db and all_databases are mutually exclusive")
    if not params.get("db") and not params.get("all_databases"):
        raise BackupError("name a database with db, or set all_databases: true")
    label = params.get("label")
    if label is not None and not LABEL_RE.match(label):
        raise BackupError(
            "label %r is not allowed: use 1-64 letters, digits, '_' or '-', not starting with '-'" % label
        )
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
    if (params.get("space_reserve_mb") or 0) < 0:
        raise BackupError("space_reserve_mb must be 0 or more")
    if (params.get("compression_threads") or 0) < 0:
        raise BackupError("compression_threads must be 0 (one per CPU) or more")
    if (params.get("lock_timeout") or 0) < 0:
        raise BackupError("lock_timeout must be 0 or more")


class DirLock:
    """An exclusive flock on a database's backup directory for the whole run.

    Held while stale temp files are removed, so a temp file found is never one that a
    concurrent run is still writing. Check mode takes a shared lock on an existing lock
    file only (it creates nothing) to report the same conflict a real run would.
    """

    def __init__(self, directory, check_mode, timeout=0):
        self.directory = directory
        self.check_mode = check_mode
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        path = os.path.join(self.directory, LOCK_NAME)
        if self.check_mode:
            if not os.path.exists(path):
                return self
            self.fd = os.open(path, os.O_RDONLY)
            mode = fcntl.LOCK_SH | fcntl.LOCK_NB
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            mode = fcntl.LOCK_EX | fcntl.LOCK_NB
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            try:
                fcntl.flock(self.fd, mode)
                return self
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise BackupError(
                        "another backup run holds the lock %s (waited %ss, see lock_timeout)"
                        % (path, self.timeout or 0)
                    ) from exc
                time.sleep(0.2)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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


class Dumper:
    def __init__(self, params, runner, check_mode, now=utc_now, sleep=time.sleep):
        self.params = params
        self.runner = runner
        self.check_mode = check_mode
        self.now = now
        self.sleep = sleep
        self.backup_dir = os.path.abspath(params["backup_dir"])
        self.secrets = runner.secrets
        self.result = dict(
            changed=False,
            check_mode=bool(check_mode),
            backup_dir=self.backup_dir,
            backups=[],
            deleted=[],
            kept=[],
            corrupt=[],
            stale_temp_files=[],
            failed=[],
            metrics_files=[],
            commands=runner.commands,
        )

    # -- entry point -----------------------------------------------------------------
    def run(self):
        validate(self.params)
        if self.params.get("dump", True):
            targets = self._prepare_dump()
            if not os.path.isdir(self.backup_dir):
                self.result["changed"] = True
                if not self.check_mode:
                    try:
                        os.makedirs(self.backup_dir, 0o700)
                    except OSError as exc:
                        raise BackupError(
                            "cannot create backup_dir %s: %s" % (self.backup_dir, exc.strerror), **self.result
                        ) from exc
        else:
            targets = self._retention_targets()
        for kind, dbname in targets:
            try:
                self._one(kind, dbname)
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

    # -- one database (or the globals) -----------------------------------------------
    def _one(self, kind, dbname):
        dirname = GLOBALS_DIR if kind == "globals" else db_dirname(dbname)
        directory = os.path.join(self.backup_dir, dirname)
        doing_dump = self.params.get("dump", True)
        run_at = time.time()
        ok = False
        try:
            info = None
            if not doing_dump and not os.path.isdir(directory):
                return
            if doing_dump and kind == "database":
                info = self._database_info(dbname)
            if not self.check_mode and not os.path.isdir(directory):
                try:
                    os.makedirs(directory, 0o700)
                except OSError as exc:
                    raise BackupError("cannot create %s: %s" % (directory, exc.strerror)) from exc
            with DirLock(directory, self.check_mode, self.params.get("lock_timeout") or 0):
                self._remove_stale(directory)
                new_entry_stem = None
                trusted = {}
                if doing_dump:
                    backup = self._dump(kind, dbname, directory, info)
                    new_entry_stem = backup["stem"]
                    trusted[new_entry_stem] = True
                self._retention(directory, new_entry_stem, trusted)
            ok = True
        finally:
            if doing_dump and self.params.get("metrics_dir") and not self.check_mode:
                self._write_metrics(directory, dirname, kind, dbname, ok=ok, run_at=run_at)

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

    def _remove_stale(self, directory):
        for name in stale_temp_names(directory):
            path = os.path.join(directory, name)
            if temp_in_use(path):  # a running restore's decompressed copy
                continue
            self.result["stale_temp_files"].append(path)
            self.result["changed"] = True
            if self.check_mode:
                continue
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError as exc:
                raise BackupError("cannot remove the stale temp file %s: %s" % (path, exc.strerror)) from exc
        if self.result["stale_temp_files"] and not self.check_mode:
            fsync_dir(directory)

    # -- preflight -----------------------------------------------------------------
    def _estimate(self, directory, info):
        """(estimated backup bytes, how it was estimated).

        The size of the tables' data (heap and TOAST: what pg_dump reads; indexes and the
        catalogs are not dumped) times the ratio of backup size to data size of the last
        verified backup; without one, a ratio of 0.5 (1 uncompressed). Plus SCHEMA_ALLOWANCE
        for the schema and the archive's table of contents.
        """
        if info is None:  # globals: a few kilobytes
            return SCHEMA_ALLOWANCE, "globals"
        data = info["data_size"]
        for entry in list_backups(directory):
            m = entry.manifest
            if entry.claimed_verified() and m.get("data_size") and m.get("size") is not None:
                ratio = float(m["size"]) / float(m["data_size"])
                how = "table data %s x ratio %.3f of the backup %s" % (human(data), ratio, entry.stem)
                return int(data * ratio) + SCHEMA_ALLOWANCE, how
        ratio = FIRST_RATIO.get(self.plan["method"], DEFAULT_FIRST_RATIO)
        return int(data * ratio) + SCHEMA_ALLOWANCE, "table data %s x %.2f, no earlier backup" % (human(data), ratio)

    def _preflight(self, kind, dbname, directory, info):
        estimate, how = self._estimate(directory, info)
        reserve = (self.params.get("space_reserve_mb") or 0) * MIB
        free = free_bytes(directory)
        what = "the globals" if kind == "globals" else "the backup of %s" % dbname
        if free < estimate + reserve:
            raise BackupError(
                "not enough free space in %s for %s: about %s needed (%s, plus space_reserve_mb %d), %s free; "
                "nothing was written" % (directory, what, human(estimate + reserve), how, reserve // MIB, human(free))
            )
        return dict(estimate_bytes=estimate, free_bytes=free)

    # -- the dump itself -------------------------------------------------------------
    def _choose_stem(self, directory):
        label = self.params.get("label")
        for _attempt in range(3):
            started = self.now()
            stem = stem_for(started, label)
            if not any(e.stem == stem for e in list_backups(directory)):
                return started, stem
            if self.check_mode:
                return started, stem
            # Names have one-second resolution; a run in the same second waits for the next.
            self.sleep(1.05 - (started.microsecond / 1e6))
        raise BackupError("a backup named %s already exists in %s" % (stem, directory))

    def _dump(self, kind, dbname, directory, info):
        fmt = "plain" if kind == "globals" else self.params.get("format") or "custom"
        preflight = self._preflight(kind, dbname, directory, info)
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

    # -- retention and metrics ---------------------------------------------------------
    def _retention(self, directory, new_stem, trusted):
        p = self.params
        if p.get("keep_last") is None and p.get("keep_days") is None:
            return
        entries = list_backups(directory)
        if self.check_mode and new_stem and not any(e.stem == new_stem for e in entries):
            entries = [_PlannedEntry(directory, new_stem)] + entries
        checksums = p.get("retention_checksums", True)

        def check(entry):
            if entry.stem in trusted:
                return True, None
            return entry.check(checksum=checksums)

        plan = plan_retention(
            entries,
            keep_last=p.get("keep_last"),
            keep_days=p.get("keep_days"),
            keep_min_verified=p.get("keep_min_verified") or 1,
            now=self.now(),
            check=check,
        )
        summary = plan.as_result()
        self.result["kept"].extend(summary["kept"])
        self.result["corrupt"].extend(summary["corrupt"])
        for entry in plan.delete:
            self.result["deleted"].append(entry.display_path)
            self.result["changed"] = True
            if not self.check_mode:
                try:
                    delete_entry(entry)
                except OSError as exc:
                    raise BackupError("retention could not delete %s: %s" % (entry.display_path, exc.strerror)) from exc

    def _write_metrics(self, directory, dirname, kind, dbname, *, ok, run_at):
        newest = None
        for entry in list_backups(directory):
            if entry.claimed_verified():
                newest = entry.manifest
                break
        mdir = self.params["metrics_dir"]
        try:
            path = _metrics.write_backup_metrics(
                mdir,
                dirname,
                database=dbname if kind == "database" else "",
                kind=kind,
                ok=ok,
                run_at=round(run_at, 3),
                newest=newest,
            )
        except (IOError, OSError) as exc:
            self.result["failed"].append(
                dict(database=dbname, kind=kind, msg="cannot write metrics to %s: %s" % (mdir, exc))
            )
            return
        if path not in self.result["metrics_files"]:
            self.result["metrics_files"].append(path)


class _PlannedEntry:
    """The backup a check-mode run would write, for predicting retention."""

    def __init__(self, directory, stem):
        self.directory = directory
        self.stem = stem
        self.timestamp = parse_timestamp(stem[:16])
        self.label = stem[17:] or None
        self.display_path = os.path.join(directory, stem)


def run(params, runner, check_mode=False, now=utc_now, sleep=time.sleep):
    """Run postgresql_dump; returns the result dict or raises BackupError (with .result)."""
    return Dumper(params, runner, check_mode, now=now, sleep=sleep).run()
