# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""postgresql_basebackup: pg_basebackup, pg_verifybackup, rename, manifest, retention of
base backups and of the archived WAL they need, metrics (the life of a run around the
backup itself is ``job.BackupJob``'s, shared with postgresql_dump).

::

    <backup_dir>/<UTC timestamp>[-<label>].dir/        base.tar[.zst|.gz|.lz4], pg_wal.tar[...], backup_manifest
    <backup_dir>/<UTC timestamp>[-<label>].manifest.json

Names, manifests and retention are those of the logical backups (``layout``,
``retention``): a base backup counts only when its manifest says it was verified and every
file still has its size and sha256. Archived WAL older than the start of the oldest kept
base backup is deleted; WAL a kept backup needs never is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import socket
import time

from ansible_collections.bosun.platform.plugins.module_utils._backup import tools
from ansible_collections.bosun.platform.plugins.module_utils._backup import wal as _wal
from ansible_collections.bosun.platform.plugins.module_utils._backup.job import (
    BackupJob,
    check_label,
    check_not_negative,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    MANIFEST_VERSION,
    BackupError,
    iso,
    tree_digest,
    tree_files,
    utc_now,
    write_manifest,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.metrics import metric_value
from ansible_collections.bosun.platform.plugins.module_utils._backup.pipeline import tail
from ansible_collections.bosun.platform.plugins.module_utils._io import (
    MIB,
    fsync_dir,
    fsync_tree,
    os_error_message,
    temp_dir_for,
    write_textfile_metrics,
)
from ansible_collections.bosun.platform.plugins.module_utils._postgres import (
    PostgresError,
    connect,
    describe,
    libpq_env,
    query,
)

COMPRESSIONS = ["auto", "zstd", "lz4", "gzip", "none"]
LOCATIONS = ["client", "server"]
DEFAULT_LEVELS = dict(zstd=1, lz4=1, gzip=1)
LEVELS = dict(zstd=(1, 22), lz4=(1, 12), gzip=(1, 9))
FIRST_RATIO = 0.5
METRICS_FILE = "bosun_basebackup.prom"
# verify is a string, as in postgresql_dump (full: every file read back and checked; none: the
# backup is published unverified). It was a boolean: "true" and "false" are still accepted,
# deprecated, and replaced before the run (tools.module_work).
VERIFY_CHOICES = ["full", "none"]
VERIFY_FORMER = {"true": "full", "false": "none"}

SERVER_SQL = """
SELECT current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       current_setting('wal_level') AS wal_level,
       current_setting('archive_mode') AS archive_mode,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
       (SELECT sum(pg_database_size(oid))::bigint FROM pg_database) AS cluster_size,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline
"""


def validate(params):
    check_label(params)
    if params.get("keep_last") is not None and params["keep_last"] < 1:
        raise BackupError("keep_last must be at least 1: the newest verified base backup is never deleted")
    method = params.get("compression") or "auto"
    level = params.get("compression_level")
    if level is not None and method not in ("auto", "none"):
        low, high = LEVELS[method]
        if not low <= level <= high:
            raise BackupError("compression_level %s is out of range for %s (%d-%d)" % (level, method, low, high))
    check_not_negative(params, "space_reserve_mb", "dir_lock_timeout")
    if params.get("verify", "full") not in VERIFY_CHOICES:
        raise BackupError("verify must be one of %s, not %r" % (", ".join(VERIFY_CHOICES), params["verify"]))


def compress_arg(params):
    """(method, level, pg_basebackup --compress value)."""
    method = params.get("compression") or "auto"
    if method == "auto":
        method = "zstd"
    if method == "none":
        return "none", None, "none"
    level = params.get("compression_level")
    if level is None:
        level = DEFAULT_LEVELS[method]
    return method, level, "%s-%s:%d" % (params.get("compression_location") or "client", method, level)


def read_backup_manifest(path):
    """(timeline, start LSN, end LSN) from pg_basebackup's backup_manifest."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        ranges = data["WAL-Ranges"]
        timeline = int(ranges[0]["Timeline"])
        start = min(_wal.parse_lsn(r["Start-LSN"]) for r in ranges)
        end = max(_wal.parse_lsn(r["End-LSN"]) for r in ranges)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackupError("cannot read the WAL range from %s: %s" % (path, exc)) from exc
    return timeline, start, end


class BaseBackup(BackupJob):
    """One base backup of the cluster in backup_dir, and the archived WAL the kept ones need."""

    PRODUCE = "take_backup"
    SIZE_KEY = "cluster_size"
    ESTIMATE_HOW = ("cluster %s x ratio %.3f of %s", "cluster %s x %.2f, no earlier base backup")
    PLANNED_SUFFIX = ".dir"

    def __init__(self, params, runner, check_mode, now=utc_now):
        super(BaseBackup, self).__init__(
            params, runner, check_mode, now=now, backup=None, wal_deleted=[], wal_kept_from=None, warnings=[]
        )
        self.store = _wal.DirectoryStore(params["wal_archive_dir"]) if params.get("wal_archive_dir") else None
        self.server = None

    @property
    def verifying(self):
        """Whether the new backup is checked with pg_verifybackup before it is published."""
        return self.params.get("verify", "full") == "full"

    def run(self):
        validate(self.params)
        try:
            self._cycle(self.backup_dir)
        except (IOError, OSError) as exc:
            raise self.fail(os_error_message(exc)) from exc
        return self.result

    def _inspect(self, target):
        self._prepare()

    def _produce(self, directory, target, context):
        return self._backup()

    # -- preparation ---------------------------------------------------------------------
    def _prepare(self):
        p = self.params
        try:
            conn = connect(p, "postgres")
        except PostgresError as exc:
            raise self.fail(str(exc)) from exc
        try:
            self.server = query(conn, SERVER_SQL)[0]
        except Exception as exc:  # psycopg2.Error: reported without a traceback
            raise self.fail(
                "cannot read the settings of %s: %s" % (describe(p), self.runner.redact(str(exc).strip()))
            ) from exc
        finally:
            conn.close()
        s = self.server
        self.result["server_version"] = s["server_version"]
        if s["wal_level"] == "minimal":
            raise self.fail("%s has wal_level minimal: base backups need replica or logical" % describe(p))
        if s["archive_mode"] not in ("on", "always"):
            self.result["warnings"].append(
                "archive_mode is %s on %s: this base backup restores to its own end only; point-in-time "
                "recovery needs WAL archiving" % (s["archive_mode"], describe(p))
            )
        self.pg_basebackup = tools.require_program("pg_basebackup", p.get("bin_dir"))
        client = tools.client_major(self.pg_basebackup, self.runner)
        server_major = tools.major_of_server(s["server_version_num"])
        if client < server_major:
            raise self.fail(
                "pg_basebackup is PostgreSQL %s but the server %s runs %s; install the PostgreSQL %s client "
                "and set bin_dir"
                % (
                    tools.major_label(client),
                    describe(p),
                    tools.major_label(server_major),
                    tools.major_label(server_major),
                )
            )
        if self.verifying:
            self.pg_verifybackup = tools.require_program("pg_verifybackup", p.get("bin_dir"), "to verify the backup")
        self.method, self.level, self.compress = compress_arg(p)
        if self.method in ("zstd", "lz4") and self.verifying:
            tools.require_tool(self.method, "to read the backup back for verification")
        self.result["compression"] = dict(method=self.method, level=self.level, location=p.get("compression_location"))

    # -- the backup ------------------------------------------------------------------------
    def _backup(self):
        cluster_size = int(self.server["cluster_size"] or 0)
        estimate, how = self._estimate(self.backup_dir, cluster_size, FIRST_RATIO)
        verify_space = cluster_size if self.verifying else 0
        if verify_space:
            how += ", and the cluster's size again to verify it"
        self._preflight(self.backup_dir, "a base backup of %s" % describe(self.params), estimate, how, verify_space)
        started, stem = self._choose_stem(self.backup_dir)
        final = os.path.join(self.backup_dir, stem + ".dir")
        summary = dict(
            path=final,
            manifest=os.path.join(self.backup_dir, stem + ".manifest.json"),
            compression=self.method,
            estimate_bytes=estimate,
            verified=None,
        )
        self.result["backup"] = summary
        self.result["changed"] = True
        if self.check_mode:
            return stem
        t0 = time.monotonic()
        tmp = temp_dir_for(final)
        try:
            target = os.path.join(tmp, "backup")
            argv = [
                self.pg_basebackup,
                "-w",
                "-D",
                target,
                "-Ft",
                "-X",
                "stream",
                "--compress=%s" % self.compress,
                "--manifest-checksums=SHA256",
                "--checkpoint=%s" % (self.params.get("checkpoint") or "fast"),
                "--label=bosun %s" % stem,
                "--no-sync",
            ]
            rc, _out, err = self.runner.run(argv, libpq_env(self.params, "postgres"))
            if rc != 0:
                raise self.fail(
                    "pg_basebackup of %s failed (exit %d): %s; nothing was written under %s"
                    % (describe(self.params), rc, tail(err), final)
                )
            timeline, start, end = read_backup_manifest(os.path.join(target, "backup_manifest"))
            verify = "none"
            if self.verifying:
                self._verify(target, final)
                verify = "pg_verifybackup"
            fsync_tree(target)
            files = tree_files(target)
            os.rename(target, final)
        except _wal.WalError as exc:
            raise self.fail("verification of %s failed: %s; nothing was written under it" % (final, exc.msg)) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(self.backup_dir)
        finished = self.now()
        segment_size = int(self.server["wal_segment_size"] or 16 * MIB)
        manifest = dict(
            manifest_version=MANIFEST_VERSION,
            tool="bosun.platform.postgresql_basebackup",
            kind="basebackup",
            file=os.path.basename(final),
            server=describe(self.params),
            host=socket.gethostname(),
            server_version=self.server["server_version"],
            server_version_num=self.server["server_version_num"],
            label=self.params.get("label"),
            format="tar",
            compression=self.method,
            compression_level=self.level,
            compression_location=self.params.get("compression_location") or "client",
            files=files,
            size=sum(f["size"] for f in files.values()),
            sha256=tree_digest(files),
            cluster_size=int(self.server["cluster_size"] or 0),
            timeline=timeline,
            start_lsn=_wal.format_lsn(start),
            end_lsn=_wal.format_lsn(end),
            start_lsn_num=start,
            end_lsn_num=end,
            start_wal=_wal.segment_name(timeline, start, segment_size),
            end_wal=_wal.segment_name(timeline, end, segment_size),
            wal_segment_size=segment_size,
            started=iso(started),
            finished=iso(finished),
            finished_epoch=round(time.time(), 3),
            duration=round(time.monotonic() - t0, 3),
            verify=verify,
            verified=True,
        )
        write_manifest(summary["manifest"], manifest)
        fsync_dir(self.backup_dir)
        for key in (
            "size",
            "sha256",
            "duration",
            "start_lsn",
            "end_lsn",
            "start_wal",
            "timeline",
            "started",
            "finished",
        ):
            summary[key] = manifest[key]
        summary["verified"] = True
        return stem

    def _verify(self, target, final):
        """Extract the tar files beside the backup and run pg_verifybackup on the copy."""
        scratch = temp_dir_for(final + ".verify")
        try:
            names = sorted(os.listdir(target))
            for name in names:
                if name.startswith("base.tar"):
                    _wal.extract_tar(os.path.join(target, name), scratch)
            for name in names:
                if name.startswith("pg_wal.tar"):
                    _wal.extract_tar(os.path.join(target, name), os.path.join(scratch, "pg_wal"))
            extra = [n for n in names if n.endswith(".tar") or ".tar." in n]
            extra = [n for n in extra if not n.startswith(("base.tar", "pg_wal.tar"))]
            if extra:
                raise self.fail(
                    "the base backup of %s has tablespaces (%s), which this module does not support"
                    % (describe(self.params), ", ".join(extra))
                )
            argv = [self.pg_verifybackup, "-m", os.path.join(target, "backup_manifest"), scratch]
            rc, out, err = self.runner.run(argv, tools.env_without_pg())
            if rc != 0:
                raise self.fail(
                    "pg_verifybackup rejected the base backup for %s (exit %d): %s; nothing was written under it"
                    % (final, rc, tail(err or out))
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- retention -------------------------------------------------------------------------
    def _retention_rules(self):
        if self.params.get("keep_last") is None:
            return None
        return dict(keep_last=self.params["keep_last"], keep_min_verified=1)

    def _retention(self, directory, new_stem):
        plan = self._plan_retention(directory, new_stem)
        if plan is None or not plan.verified:
            return
        keep_from = self._wal_keep_from(plan.keep, new_stem)
        self._delete(plan)
        if self.store is None or keep_from is None:
            return
        self.result["wal_kept_from"] = keep_from
        doomed = _wal.cleanup_plan(self.store, keep_from)
        for stored in doomed:
            self.result["wal_deleted"].append(stored.name)
            self.result["changed"] = True
            if not self.check_mode:
                self.store.delete(stored.key)
        if doomed and not self.check_mode:
            self.store.sync([s.key for s in doomed])

    def _wal_keep_from(self, kept, new_stem):
        """The first WAL file the oldest kept base backup needs (None: delete no WAL)."""
        starts = []
        for entry in kept:
            if entry.stem == new_stem and self.check_mode:
                current = self.server and self.server.get("current_lsn")
                if not current:
                    return None
                segment_size = int(self.server["wal_segment_size"] or 16 * MIB)
                starts.append(_wal.segment_name(int(self.server["timeline"]), _wal.parse_lsn(current), segment_size))
                continue
            m = entry.manifest or {}
            if not m.get("start_wal"):
                self.result["warnings"].append(
                    "no archived WAL was deleted: the kept base backup %s has no readable start WAL in its manifest"
                    % entry.display_path
                )
                return None
            starts.append(m["start_wal"])
        if not starts:
            return None
        return min(starts, key=_wal.position_key)

    # -- metrics -----------------------------------------------------------------------------
    def _metrics_file(self, mdir, directory, target, ok, run_at):
        newest = None
        count = 0
        oldest = None
        for manifest in self._verified_manifests(directory):
            count += 1
            newest = newest or manifest
            oldest = manifest
        wal_bytes = wal_files = None
        if self.store is not None:
            try:
                names = self.store.names()
                wal_files = len(names)
                wal_bytes = sum(self.store.size(s.key) for s in names)
            except (OSError, _wal.WalError):
                pass
        newest = newest or {}
        samples = [
            ("bosun_basebackup_last_status", "1 if the last base backup run succeeded, 0 if it failed.", ok),
            ("bosun_basebackup_last_run_timestamp_seconds", "Unix time of the last base backup run.", run_at),
            (
                "bosun_basebackup_last_success_timestamp_seconds",
                "Unix time the newest verified base backup finished.",
                newest.get("finished_epoch"),
            ),
            ("bosun_basebackup_last_size_bytes", "Size of the newest verified base backup.", newest.get("size")),
            ("bosun_basebackup_last_duration_seconds", "Seconds the newest base backup took.", newest.get("duration")),
            ("bosun_basebackup_count", "Verified base backups kept.", count),
            (
                "bosun_basebackup_oldest_recovery_point_timestamp_seconds",
                "Unix time of the earliest point-in-time recovery target (end of the oldest base backup).",
                (oldest or {}).get("finished_epoch"),
            ),
            ("bosun_wal_archive_bytes", "Bytes in the WAL archive.", wal_bytes),
            ("bosun_wal_archive_files", "Files in the WAL archive.", wal_files),
        ]
        rendered = [(name, text, "gauge", [({}, metric_value(value))]) for name, text, value in samples]
        write_textfile_metrics(mdir, METRICS_FILE, rendered)
        return os.path.join(mdir, METRICS_FILE)

    def _metrics_failed(self, target, msg):
        self.result["warnings"].append(msg)


def run(params, runner, check_mode=False, now=utc_now):
    """Run postgresql_basebackup; returns the result dict or raises BackupError (with .result)."""
    return BaseBackup(params, runner, check_mode, now=now).run()
