# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which backups to keep and which to delete.

Rules, applied to one database's backups from newest to oldest:

* Only a *verified copy* counts: its manifest says it was verified when written and its
  size and sha256 still match (``retention_checksums: false`` checks the size only). An
  unverified, corrupt or manifest-less backup never counts toward any number below.
* ``keep_last: N`` keeps the N newest verified copies; ``keep_days: D`` keeps every backup
  younger than D days; with both, a backup is kept when either rule keeps it.
* ``keep_min_verified: M`` (at least 1) keeps the M newest verified copies whatever the
  other rules say: the newest verified backup is never deleted.
* A backup that is not a verified copy is kept while it is newer than the oldest kept
  copy (it is reported as ``corrupt``), and deleted with the rest once it is older.
* With neither ``keep_last`` nor ``keep_days`` nothing is deleted. With no verified copy
  at all nothing is deleted either.

Checksums are read lazily: only backups whose status decides the outcome are read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import shutil

from ansible_collections.bosun.platform.plugins.module_utils._io import fsync_dir


class RetentionPlan:
    def __init__(self):
        self.keep = []
        self.delete = []
        self.corrupt = []  # (entry, reason)
        self.verified = []  # verified copies that are kept

    def as_result(self):
        return dict(
            kept=[e.display_path for e in self.keep],
            deleted=[e.display_path for e in self.delete],
            corrupt=[dict(path=e.display_path, reason=reason) for e, reason in self.corrupt],
            verified_copies=len(self.verified),
        )


def plan_retention(entries, *, keep_last=None, keep_days=None, keep_min_verified=1, now=None, check=None):
    """Decide what to keep and delete. ``entries`` newest first; ``check(entry)`` -> (ok, reason)."""
    plan = RetentionPlan()
    if keep_last is None and keep_days is None:
        plan.keep = list(entries)
        return plan
    need = max(keep_last or 0, keep_min_verified or 1, 1)
    cutoff = None
    if keep_days is not None:
        cutoff = now - datetime.timedelta(days=keep_days)
    tentative = []  # (entry, verdict) with verdict "copy", "bad" or "expired"
    for entry in entries:
        in_window = cutoff is not None and entry.timestamp > cutoff
        if in_window or len(plan.verified) < need:
            ok, reason = check(entry)
            if ok:
                plan.verified.append(entry)
                tentative.append((entry, "copy"))
            else:
                plan.corrupt.append((entry, reason))
                tentative.append((entry, "keep-if-newer" if not in_window else "keep"))
        else:
            tentative.append((entry, "expired"))
    if not plan.verified:
        plan.keep = list(entries)
        return plan
    oldest_copy = plan.verified[-1]
    newer = True  # entries come newest first: everything before the oldest copy is newer
    for entry, verdict in tentative:
        if verdict in ("copy", "keep") or (verdict == "keep-if-newer" and newer):
            plan.keep.append(entry)
        else:
            plan.delete.append(entry)
        if entry is oldest_copy:
            newer = False
    return plan


def delete_entry(entry):
    """Remove a backup and then its manifest; fsync the directory."""
    if entry.backup_name:
        path = entry.path
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    if entry.manifest_name and os.path.lexists(entry.manifest_path):
        os.unlink(entry.manifest_path)
    fsync_dir(entry.directory)
