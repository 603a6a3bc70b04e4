# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform lock: one job at a time changes the platform (deploy, rollback, maintenance).

The lock is a small JSON file on one host of the platform, created with O_EXCL so that
exactly one of two racing jobs gets it, whatever started them (a person, AWX, cron).
It records who holds it, which job, since when, and a random token; only the holder of
the token releases it. A lock older than ``stale_after`` seconds is taken to belong to a
job that died: the next job breaks it and says so. Breaking first renames the stale file
to a unique name (rename is atomic), so two jobs that both see a stale lock cannot both
take it over.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import json
import os
import socket
import time
import uuid

from ansible_collections.bosun.platform.plugins.module_utils._io import fsync_dir


class LockHeld(Exception):
    """The lock is held by another job."""

    def __init__(self, path, holder, now):
        self.path = path
        self.holder = holder
        age = int(now - float(holder.get("started_ts", now)))
        super(LockHeld, self).__init__(
            "the platform lock %s is held by %s running %s since %s (%s ago); wait for that job to "
            "finish, or break the lock with force=true if it is dead"
            % (path, holder.get("owner", "?"), holder.get("job", "?"), holder.get("started", "?"), human_age(age))
        )


class LockError(Exception):
    """The lock file cannot be read or written."""


def human_age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min" % (seconds // 60)
    return "%.1f h" % (seconds / 3600.0)


def read_lock(path):
    """Return the lock's content (dict), or None when there is no lock."""
    try:
        with open(path, "r") as f:
            data = f.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise LockError("cannot read the platform lock %s: %s" % (path, exc.strerror)) from None
    try:
        holder = json.loads(data)
        if not isinstance(holder, dict):
            raise ValueError("not an object")
    except ValueError:
        # A lock that is not ours to read (truncated by a crash mid-write is impossible with
        # O_EXCL + write + fsync, but a hand-made file is not): treat it as held since its mtime.
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        holder = dict(owner="unknown (unreadable lock file)", job="unknown", started_ts=mtime, token=None)
        holder["started"] = _iso(mtime)
    return holder


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _create(path, record):
    """Create the lock file exclusively; return False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise LockError("cannot create the platform lock %s: %s" % (path, exc.strerror)) from None
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def _break(path, holder):
    """Move a stale lock aside atomically; True when this caller did it."""
    aside = "%s.stale-%s" % (path, uuid.uuid4().hex[:12])
    try:
        os.rename(path, aside)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False  # somebody else broke it first
        raise LockError("cannot break the stale platform lock %s: %s" % (path, exc.strerror)) from None
    # The file moved may not be the one we judged stale (replaced in between): check.
    moved = read_lock(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        # Put the fresh lock back where it was and report it as held.
        try:
            os.rename(aside, path)
        except OSError:
            pass
        return False
    try:
        os.unlink(aside)
    except OSError:
        pass
    return True


def acquire(path, owner, job, stale_after, token=None, force=False, wait=0, check_mode=False, now=time.time):
    """Take the lock. Returns a dict: changed, token, holder, broken (the stale holder or None).

    Re-acquiring with the token of the current holder is a no-op (changed False).
    """
    deadline = now() + max(0, wait)
    broken = None
    while True:
        holder = read_lock(path)
        t = now()
        if holder is not None and token and holder.get("token") == token:
            return dict(changed=False, token=token, holder=holder, broken=None)
        if holder is not None:
            age = t - float(holder.get("started_ts", t))
            if force or (stale_after > 0 and age >= stale_after):
                if check_mode:
                    broken = holder
                elif _break(path, holder):
                    broken = holder
                    continue
                else:
                    continue
            elif t < deadline:
                time.sleep(min(1.0, max(0.05, deadline - t)))
                continue
            else:
                raise LockHeld(path, holder, t)
        record = dict(
            token=token or uuid.uuid4().hex,
            owner=owner,
            job=job,
            host=socket.gethostname(),
            started=_iso(t),
            started_ts=t,
        )
        if check_mode:
            return dict(changed=True, token=record["token"], holder=record, broken=broken)
        if _create(path, record):
            return dict(changed=True, token=record["token"], holder=record, broken=broken)
        # Lost a race with another job between read and create: look again.


def release(path, token, force=False, check_mode=False):
    """Release the lock held with ``token``. Returns a dict: changed, holder.

    Releasing a lock that is not there is a no-op. Releasing somebody else's lock fails
    unless ``force``.
    """
    holder = read_lock(path)
    if holder is None:
        return dict(changed=False, holder=None)
    if not force and holder.get("token") != token:
        raise LockError(
            "the platform lock %s is held by %s running %s since %s, not by this job (token mismatch); "
            "not released. Use force=true to remove it anyway."
            % (path, holder.get("owner", "?"), holder.get("job", "?"), holder.get("started", "?"))
        )
    if not check_mode:
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise LockError("cannot remove the platform lock %s: %s" % (path, exc.strerror)) from None
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    return dict(changed=True, holder=holder)
