# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The life of a backup run, shared by postgresql_dump and postgresql_basebackup.

For each backup directory a run: inspects the source (when it backs up), creates the
directory, takes the directory's lock, removes the temp files of an interrupted run,
checks the free space against an estimate, writes the new backup, applies retention
(in check mode predicting it, the new backup included) and, whatever happened, writes
textfile metrics. A subclass says what a backup is and how it is written; check mode and
real runs share this one path, only the side effects are gated on ``check_mode``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os
import shutil
import time

from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import (
    LABEL_RE,
    LOCK_NAME,
    BackupError,
    list_backups,
    parse_timestamp,
    stale_temp_names,
    stem_for,
    temp_in_use,
    utc_now,
)
from ansible_collections.bosun.platform.plugins.module_utils._backup.retention import delete_entry, plan_retention
from ansible_collections.bosun.platform.plugins.module_utils._io import (
    MIB,
    DirLock,
    LockBusy,
    free_bytes,
    fsync_dir,
    human,
)
from ansible_collections.bosun.platform.plugins.module_utils._module import deprecated_alias

# The options postgresql_dump and postgresql_basebackup share with one meaning and default,
# documented once in the bosun.platform.backup doc fragment. dir_lock_timeout was lock_timeout,
# which in the same action group (group/bosun.platform.postgres) is PostgreSQL's lock_timeout
# of postgresql_maintenance.
BACKUP_COMMON_ARGS = dict(
    label=dict(type="str"),
    retention_checksums=dict(type="bool", default=True),
    space_reserve_mb=dict(type="int", default=64),
    dir_lock_timeout=dict(type="int", default=0, **deprecated_alias("lock_timeout")),
)


def backup_argument_spec(**extra):
    """The shared backup options (fresh copies) plus a module's own."""
    spec = copy.deepcopy(BACKUP_COMMON_ARGS)
    spec.update(extra)
    return spec


def check_label(params):
    """Refuse a label that could not be part of a backup's name."""
    label = params.get("label")
    if label is not None and not LABEL_RE.match(label):
        raise BackupError(
            "label %r is not allowed: use 1-64 letters, digits, '_' or '-', not starting with '-'" % label
        )


def check_not_negative(params, *keys):
    for key in keys:
        if (params.get(key) or 0) < 0:
            raise BackupError("%s must be 0 or more" % key)


class BackupDirLock(DirLock):
    """The lock of a backup directory, held for a whole run; a busy lock is a BackupError.

    Held while stale temp files are removed, so a temp file found is never one that a
    concurrent run is still writing.
    """

    def __init__(self, directory, check_mode, timeout=0):
        super(BackupDirLock, self).__init__(directory, LOCK_NAME, check_mode=check_mode, timeout=timeout)

    def __enter__(self):
        try:
            return super(BackupDirLock, self).__enter__()
        except LockBusy as exc:
            raise BackupError(
                "another backup run holds the lock %s (waited %ss, see dir_lock_timeout)" % (exc.path, exc.waited)
            ) from exc


class PlannedEntry:
    """The backup a check-mode run would write, for predicting retention."""

    def __init__(self, directory, stem, suffix=""):
        self.directory = directory
        self.stem = stem
        self.timestamp = parse_timestamp(stem[:16])
        self.label = stem[17:] or None
        self.display_path = os.path.join(directory, stem + suffix)
        self.manifest = None


class BackupJob:
    """One run of a backup module over one or more backup directories.

    A subclass sets:

    ``PRODUCE``         the option that, false, leaves out the backup (retention only)
    ``SIZE_KEY``        the manifest key of the source size a backup's size is proportional to
    ``ESTIMATE_HOW``    how an estimate was made: (from an earlier backup, without one)
    ``PLANNED_SUFFIX``  added to a planned backup's stem for its path in check-mode results

    and implements ``_inspect``, ``_produce``, ``_retention_rules``, ``_metrics_file`` and
    ``_metrics_failed``.
    """

    PRODUCE = "backup"
    SIZE_KEY = None
    ESTIMATE_HOW = ("%s x ratio %.3f of %s", "%s x %.2f, no earlier backup")
    PLANNED_SUFFIX = ""

    def __init__(self, params, runner, check_mode, now=utc_now, sleep=time.sleep, **fields):
        self.params = params
        self.runner = runner
        self.check_mode = check_mode
        self.now = now
        self.sleep = sleep
        self.backup_dir = os.path.abspath(params["backup_dir"])
        self.result = dict(
            changed=False,
            check_mode=bool(check_mode),
            backup_dir=self.backup_dir,
            deleted=[],
            kept=[],
            corrupt=[],
            stale_temp_files=[],
            metrics_files=[],
            commands=runner.commands,
        )
        self.result.update(fields)

    @property
    def producing(self):
        """Whether this run writes a backup (else it applies retention only)."""
        return self.params.get(self.PRODUCE, True)

    def fail(self, msg):
        return BackupError(msg, **self.result)

    # -- one backup directory ----------------------------------------------------------------
    def _cycle(self, directory, target=None):
        """Inspect, lock, clean, back up, apply retention; metrics at the end, failed or not."""
        run_at = time.time()
        ok = False
        try:
            if not self.producing and not os.path.isdir(directory):
                return
            context = self._inspect(target) if self.producing else None
            self._ensure_directory(directory)
            with BackupDirLock(directory, self.check_mode, self.params.get("dir_lock_timeout") or 0):
                self._remove_stale(directory)
                new_stem = self._produce(directory, target, context) if self.producing else None
                self._retention(directory, new_stem)
            ok = True
        finally:
            if self.producing and self.params.get("metrics_dir") and not self.check_mode:
                self._write_metrics(directory, target, ok, run_at)

    def _inspect(self, target):
        """What the backup of ``target`` needs to know before the directory is locked."""
        raise NotImplementedError

    def _produce(self, directory, target, context):
        """Write (in check mode, plan) the new backup; returns its stem."""
        raise NotImplementedError

    def _make_directory(self, path, what, report=True):
        """Create a missing directory (mode 0700); with ``report`` its creation is a change."""
        if os.path.isdir(path):
            return
        if report:
            self.result["changed"] = True
        if self.check_mode:
            return
        try:
            os.makedirs(path, 0o700)
        except OSError as exc:
            raise self.fail("cannot create %s: %s" % (what, exc.strerror)) from exc

    def _ensure_directory(self, directory):
        self._make_directory(directory, "backup_dir %s" % directory)

    def _remove_stale(self, directory):
        """Remove the temp files of an interrupted run (the caller holds the directory's lock)."""
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
                raise self.fail("cannot remove the stale temp file %s: %s" % (path, exc.strerror)) from exc
        if self.result["stale_temp_files"] and not self.check_mode:
            fsync_dir(directory)

    # -- before the backup ---------------------------------------------------------------------
    def _estimate(self, directory, source_size, first_ratio, allowance=0):
        """(estimated backup bytes, how it was estimated).

        ``source_size`` times the ratio of backup size to ``SIZE_KEY`` of the newest verified
        backup in ``directory``; without one, ``first_ratio``. Plus ``allowance``.
        """
        for entry in list_backups(directory):
            m = entry.manifest
            if entry.claimed_verified() and m.get(self.SIZE_KEY) and m.get("size") is not None:
                ratio = float(m["size"]) / float(m[self.SIZE_KEY])
                how = self.ESTIMATE_HOW[0] % (human(source_size), ratio, entry.stem)
                return int(source_size * ratio) + allowance, how
        how = self.ESTIMATE_HOW[1] % (human(source_size), first_ratio)
        return int(source_size * first_ratio) + allowance, how

    def _preflight(self, directory, what, estimate, how, extra=0):
        """Refuse, before anything is written, when the estimate (plus ``extra`` and
        space_reserve_mb) does not fit; dict(estimate_bytes, free_bytes) otherwise."""
        reserve = (self.params.get("space_reserve_mb") or 0) * MIB
        free = free_bytes(directory)
        need = estimate + extra + reserve
        if free < need:
            raise self.fail(
                "not enough free space in %s for %s: about %s needed (%s, plus space_reserve_mb %d), %s free; "
                "nothing was written" % (directory, what, human(need), how, reserve // MIB, human(free))
            )
        return dict(estimate_bytes=estimate, free_bytes=free)

    def _choose_stem(self, directory):
        """(start time, stem) of the new backup: a name no backup in ``directory`` has."""
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
        raise self.fail("a backup named %s already exists in %s" % (stem, directory))

    # -- retention -----------------------------------------------------------------------------
    def _retention_rules(self):
        """Keyword arguments of plan_retention, or None when retention is off."""
        raise NotImplementedError

    def _plan_retention(self, directory, new_stem):
        """The RetentionPlan of ``directory`` (the new backup counts as verified); None when off."""
        rules = self._retention_rules()
        if rules is None:
            return None
        entries = list_backups(directory)
        if self.check_mode and new_stem and not any(e.stem == new_stem for e in entries):
            entries = [PlannedEntry(directory, new_stem, self.PLANNED_SUFFIX)] + entries
        checksums = self.params.get("retention_checksums", True)

        def check(entry):
            if entry.stem == new_stem:
                return True, None
            return entry.check(checksum=checksums)

        plan = plan_retention(entries, now=self.now(), check=check, **rules)
        summary = plan.as_result()
        self.result["kept"].extend(summary["kept"])
        self.result["corrupt"].extend(summary["corrupt"])
        return plan

    def _delete(self, plan):
        for entry in plan.delete:
            self.result["deleted"].append(entry.display_path)
            self.result["changed"] = True
            if not self.check_mode:
                try:
                    delete_entry(entry)
                except OSError as exc:
                    raise self.fail("retention could not delete %s: %s" % (entry.display_path, exc.strerror)) from exc

    def _retention(self, directory, new_stem):
        plan = self._plan_retention(directory, new_stem)
        if plan is not None:
            self._delete(plan)

    # -- metrics -------------------------------------------------------------------------------
    @staticmethod
    def _verified_manifests(directory):
        """Manifests of the backups in ``directory`` that say they were verified, newest first."""
        for entry in list_backups(directory):
            if entry.claimed_verified():
                yield entry.manifest

    def _metrics_file(self, mdir, directory, target, ok, run_at):
        """Write the textfile metrics of this run into ``mdir``; returns the file's path."""
        raise NotImplementedError

    def _metrics_failed(self, target, msg):
        """Report metrics that could not be written."""
        raise NotImplementedError

    def _write_metrics(self, directory, target, ok, run_at):
        mdir = self.params["metrics_dir"]
        try:
            path = self._metrics_file(mdir, directory, target, ok, round(run_at, 3))
        except (IOError, OSError) as exc:
            self._metrics_failed(target, "cannot write metrics to %s: %s" % (mdir, exc))
            return
        if path not in self.result["metrics_files"]:
            self.result["metrics_files"].append(path)
