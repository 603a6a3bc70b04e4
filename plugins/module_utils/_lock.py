# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform lock: one job at a time changes the platform (deploy, rollback, restore, maintenance).

The lock is a small JSON file on one host of the platform (the lock host). It records who
holds it, which job, since when, a random token (only the holder of the token releases
it) and the holder's own time limit, ``stale_after``.

A live job's lock is never broken:

- ``stale_after`` is the holder's, recorded in the lock when it was taken, never the
  breaker's. A job run by the maintenance wrapper or AWX is stopped at its timeout, so its
  lock says ``timeout + STALE_MARGIN``; a job with no enforced timeout (a deploy run by
  hand) says 0: its lock is never taken to be abandoned, only ``break_lock`` breaks it.
- A job with a time limit leaves a keeper on the lock host: a small detached process that
  lives while the lock file holds the job's token, at most ``stale_after`` seconds (timed
  with the monotonic clock). The lock records the keeper's pid, process start time, boot
  id and pid namespace; while that process runs, the lock is live whatever the wall clock
  or the file's timestamps say.
- A lock is stale only when its time limit has passed *and* its keeper is not running.

Every change of the lock file (create, break, release) happens under ``flock`` of a guard
file next to it (``<path>.guard``, never removed; the kernel drops the flock when its
process dies, so the guard itself can never go stale). A breaker re-reads the lock under
the guard and removes it only when it is still the exact lock it judged stale, so a fresh
lock is never moved or overwritten. The new lock is published with ``link()`` of a fully
written temporary file, which fails if a lock exists: a lock is never overwritten and never
seen half-written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time
import uuid

from ansible_collections.bosun.platform.plugins.module_utils._io import fsync_dir

# Added to a job's timeout: the wrapper's SIGTERM-to-SIGKILL grace, systemd's backstop and
# the remote commands a stopped controller leaves finishing.
STALE_MARGIN = 900
# A lock written by an older version records no stale_after: the old default.
LEGACY_STALE_AFTER = 7200
# How often the keeper looks whether its lock is still there.
KEEPER_POLL = 2.0


class LockHeld(Exception):
    """The lock is held by another job."""

    def __init__(self, path, holder, now, reason=""):
        self.path = path
        self.holder = holder
        self.reason = reason
        age = int(now - float(holder.get("started_ts", now)))
        super(LockHeld, self).__init__(
            "the platform lock %s is held by %s running %s since %s (%s ago)%s; wait for that job to "
            "finish, or break the lock with break_lock=true if it is dead"
            % (
                path,
                holder.get("owner", "?"),
                holder.get("job", "?"),
                holder.get("started", "?"),
                human_age(age),
                ": " + reason if reason else "",
            )
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


def lease(timeout=0, stale_after=None):
    """The ``stale_after`` a job records: given, else its timeout plus the margin, else 0 (never)."""
    if stale_after is not None:
        return max(0, int(stale_after))
    if timeout and int(timeout) > 0:
        return int(timeout) + STALE_MARGIN
    return 0


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
        # A lock that is not ours to read (a hand-made file; ours are never half-written):
        # treat it as held since its mtime.
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        holder = dict(owner="unknown (unreadable lock file)", job="unknown", started_ts=mtime, token=None)
        holder["started"] = _iso(mtime)
    return holder


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the keeper's identity and liveness ---------------------------------------------------
def _read(path):
    try:
        with open(path, "r") as f:
            return f.read()
    except (IOError, OSError):
        return None


def _boot_id():
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def _pid_namespace():
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _proc_stat(pid):
    """(state, start time in clock ticks since boot) of a process, or None when there is none."""
    text = _read("/proc/%d/stat" % int(pid))
    if not text or ")" not in text:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_identity(pid):
    """What identifies process ``pid`` of this host for as long as it runs (None without /proc)."""
    stat = _proc_stat(pid)
    boot_id = _boot_id()
    if stat is None or boot_id is None:
        return None
    return dict(pid=int(pid), start=stat[1], boot_id=boot_id, pidns=_pid_namespace(), host=socket.gethostname())


def keeper_state(keeper):
    """``alive``, ``dead`` or ``unknown`` (cannot be told from here) for a recorded keeper; None if none."""
    if not isinstance(keeper, dict) or not keeper.get("pid"):
        return None
    if keeper.get("host") != socket.gethostname():
        return "unknown"
    boot_id = _boot_id()
    if boot_id is None or not keeper.get("boot_id"):
        return "unknown"
    if keeper["boot_id"] != boot_id:
        return "dead"  # the lock host has restarted since
    if keeper.get("pidns") != _pid_namespace():
        return "unknown"  # another container of the same kernel
    try:
        stat = _proc_stat(int(keeper["pid"]))
    except (TypeError, ValueError):
        return "unknown"
    if stat is None or stat[0] in ("Z", "X") or stat[1] != keeper.get("start"):
        return "dead"
    return "alive"


def assess(holder, now):
    """Whether another job may break ``holder``'s lock now: {stale, reason, keeper, expires}."""
    keeper = keeper_state(holder.get("keeper"))
    stale_after = holder.get("stale_after", LEGACY_STALE_AFTER)
    try:
        stale_after = max(0, int(stale_after or 0))
    except (TypeError, ValueError):
        stale_after = LEGACY_STALE_AFTER
    since = float(holder.get("started_ts", now))
    expires = since + stale_after if stale_after else None
    out = dict(stale=False, keeper=keeper, expires=_iso(expires) if expires else None)
    if keeper == "alive":
        out["reason"] = "its keeper process %s on %s is running" % (holder["keeper"]["pid"], holder["keeper"]["host"])
    elif not stale_after:
        out["reason"] = "it set no time limit (stale_after 0), so only break_lock=true breaks it"
    elif now < expires:
        out["reason"] = "it counts as abandoned only after its time limit, at %s" % _iso(expires)
    else:
        out["stale"] = True
        out["reason"] = "its time limit ended at %s%s" % (
            _iso(expires),
            " and its keeper process is gone" if keeper == "dead" else "",
        )
    return out


# --- the keeper process ---------------------------------------------------------------------
class _Keeper:
    """A keeper started but not yet told to keep: ``go()`` once the lock is published, else ``cancel()``."""

    def __init__(self, identity, go_fd):
        self.identity = identity
        self._go = go_fd

    def go(self):
        self._send(b"1")

    def cancel(self):
        self._send(b"")

    def _send(self, data):
        if self._go is None:
            return
        try:
            if data:
                os.write(self._go, data)
        except OSError:
            pass
        finally:
            os.close(self._go)
            self._go = None


def _keep(path, token, seconds, go_fd):
    """The keeper's life: wait for go, then stay while the lock holds ``token``, at most ``seconds``."""
    try:
        if os.read(go_fd, 1) != b"1":
            return
    finally:
        os.close(go_fd)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(KEEPER_POLL, left))
        try:
            holder = read_lock(path)
        except LockError:
            holder = None
        if holder is None or holder.get("token") != token:
            return


def _spawn_keeper(path, token, seconds):
    """Start a detached keeper (double fork, new session, no inherited descriptors); None without /proc."""
    if _boot_id() is None:
        return None
    info_r, info_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(info_r)
            os.close(go_w)
            os.setsid()
            grandchild = os.fork()
            if grandchild:
                os.write(info_w, str(grandchild).encode("ascii"))
            else:
                os.close(info_w)
                if go_r < 3:  # keep it clear of the standard descriptors replaced below
                    go_r = fcntl.fcntl(go_r, fcntl.F_DUPFD, 3)
                os.chdir("/")
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                # Ansible (and ssh, docker exec) wait for the module's output to close.
                os.closerange(3, go_r)
                os.closerange(go_r + 1, 65536)
                _keep(path, token, seconds, go_r)
        finally:
            os._exit(0)
    os.close(info_w)
    os.close(go_r)
    os.waitpid(child, 0)
    data = os.read(info_r, 32)
    os.close(info_r)
    identity = process_identity(int(data)) if data else None
    keeper = _Keeper(identity, go_w)
    if identity is None:
        keeper.cancel()
        return None
    return keeper


# --- changing the lock file -----------------------------------------------------------------
@contextlib.contextmanager
def _guard(path):
    """Hold the flock of ``<path>.guard`` (every change of the lock file happens under it)."""
    name = path + ".guard"
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LockError("cannot open the lock guard %s: %s" % (name, exc.strerror)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the flock


def _same(a, b):
    """True when two reads of the lock file saw the same lock."""
    return (
        a is not None
        and b is not None
        and a.get("token") == b.get("token")
        and a.get("started_ts") == b.get("started_ts")
    )


def _publish(path, record):
    """Create the lock file with ``record``, never over an existing one; False when one exists."""
    tmp = "%s.new-%s" % (path, uuid.uuid4().hex[:12])
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise LockError("cannot create the platform lock %s: %s" % (path, exc.strerror)) from None
    try:
        try:
            os.write(fd, json.dumps(record, sort_keys=True).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise LockError("cannot create the platform lock %s: %s" % (path, exc.strerror)) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def _take(path, record, judged=None):
    """Under the guard: remove the lock ``judged`` stale if it is still the one there, then publish.

    Returns (taken, broken): ``broken`` is the removed record. Nothing is removed when the file
    holds another lock than the one judged (a fresh one): the caller looks again.
    """
    with _guard(path):
        current = read_lock(path)
        broken = None
        if judged is not None:
            if not _same(current, judged):
                return False, None
            try:
                os.unlink(path)
            except OSError as exc:
                raise LockError("cannot break the stale platform lock %s: %s" % (path, exc.strerror)) from None
            broken = current
        elif current is not None:
            return False, None
        return _publish(path, record), broken


def acquire(
    path,
    owner,
    job,
    stale_after=0,
    token=None,
    break_lock=False,
    wait=0,
    check_mode=False,
    now=time.time,
    keeper=False,
):
    """Take the lock. Returns a dict: changed, token, holder, broken (the stale holder or None).

    ``stale_after`` is this job's own time limit, recorded in the lock (see ``lease``); with
    ``keeper`` and a time limit, a keeper process holds the lock alive on this host.
    Re-acquiring with the token of the current holder is a no-op (changed False).
    """
    deadline = now() + max(0, wait)
    stale_after = max(0, int(stale_after or 0))
    token = token or None
    mine = token or uuid.uuid4().hex
    kept = None
    try:
        while True:
            holder = read_lock(path)
            t = now()
            if holder is not None and token and holder.get("token") == token:
                return dict(changed=False, token=token, holder=holder, broken=None)
            judged = None
            if holder is not None:
                verdict = assess(holder, t)
                if not (break_lock or verdict["stale"]):
                    if t < deadline:
                        time.sleep(min(1.0, max(0.05, deadline - t)))
                        continue
                    raise LockHeld(path, holder, t, verdict["reason"])
                judged = holder
            record = dict(
                token=mine,
                owner=owner,
                job=job,
                host=socket.gethostname(),
                started=_iso(t),
                started_ts=t,
                stale_after=stale_after,
                expires=_iso(t + stale_after) if stale_after else None,
                keeper=None,
            )
            if check_mode:
                return dict(changed=True, token=mine, holder=record, broken=judged)
            if keeper and stale_after and kept is None:
                kept = _spawn_keeper(path, mine, stale_after)
            record["keeper"] = kept.identity if kept else None
            taken, broken = _take(path, record, judged)
            if taken:
                if kept:
                    kept.go()
                return dict(changed=True, token=mine, holder=record, broken=broken)
            # Another job changed the lock between our look and the guard: look again.
    finally:
        if kept:
            kept.cancel()


def release(path, token, break_lock=False, check_mode=False):
    """Release the lock held with ``token``. Returns a dict: changed, holder.

    Releasing a lock that is not there is a no-op. Releasing somebody else's lock fails
    unless ``break_lock``.
    """
    holder = read_lock(path)
    if holder is None:
        return dict(changed=False, holder=None)
    if not break_lock and holder.get("token") != token:
        raise LockError(
            "the platform lock %s is held by %s running %s since %s, not by this job (token mismatch); "
            "not released. Use break_lock=true to remove it anyway."
            % (path, holder.get("owner", "?"), holder.get("job", "?"), holder.get("started", "?"))
        )
    if check_mode:
        return dict(changed=True, holder=holder)
    with _guard(path):
        current = read_lock(path)
        if current is None:
            return dict(changed=False, holder=None)
        if not break_lock and current.get("token") != token:
            raise LockError(
                "the platform lock %s changed hands while it was being released (now held by %s); "
                "not released" % (path, current.get("owner", "?"))
            )
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise LockError("cannot remove the platform lock %s: %s" % (path, exc.strerror)) from None
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    return dict(changed=True, holder=current)
