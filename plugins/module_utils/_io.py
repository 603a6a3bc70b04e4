# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File helpers shared by the modules: atomic writes, checksums, textfile metrics, redaction,
directory locks, sizes and OS errors for messages."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import os
import tempfile
import time

TEMP_MARKER = ".bosun-tmp-"
MIB = 1024 * 1024


def fsync_dir(path):
    """fsync a directory so that a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(dest):
    """A fresh temporary name beside ``dest`` (same directory, so rename is atomic).

    The name carries TEMP_MARKER so that leftovers of a crashed run can be recognised.
    """
    directory, name = os.path.split(os.path.abspath(dest))
    fd, path = tempfile.mkstemp(prefix=".%s%s" % (name, TEMP_MARKER), dir=directory)
    os.close(fd)
    return path


def temp_dir_for(dest):
    """A fresh temporary directory beside ``dest`` (mode 0700), named like temp_path_for."""
    directory, name = os.path.split(os.path.abspath(dest))
    return tempfile.mkdtemp(prefix=".%s%s" % (name, TEMP_MARKER), dir=directory)


def is_temp_name(name):
    """True for a name made by temp_path_for/temp_dir_for (a leftover if no writer runs)."""
    return name.startswith(".") and TEMP_MARKER in name


def fsync_tree(path):
    """fsync every file and directory under ``path`` (and ``path`` itself)."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def free_bytes(path):
    """Bytes available to an unprivileged writer on the filesystem holding ``path``.

    ``path`` may not exist yet: its nearest existing parent is asked.
    """
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def atomic_write(dest, data, mode=0o644):
    """Write ``data`` (bytes or str) to ``dest``: temp file, fsync, rename, fsync dir."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = temp_path_for(dest)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(dest)))


def sha256_file(path, chunk_size=1024 * 1024):
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def _metric_labels(labels):
    if not labels:
        return ""
    parts = []
    for key in sorted(labels):
        value = str(labels[key]).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append('%s="%s"' % (key, value))
    return "{%s}" % ",".join(parts)


def render_metrics(metrics):
    """Render Prometheus text exposition.

    ``metrics`` is a list of ``(name, help, type, [(labels_dict, value), ...])``.
    """
    lines = []
    for name, help_text, metric_type, samples in metrics:
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s %s" % (name, metric_type))
        for labels, value in samples:
            lines.append("%s%s %s" % (name, _metric_labels(labels), value))
    return "\n".join(lines) + "\n"


def write_textfile_metrics(directory, filename, metrics):
    """Atomically write a node_exporter textfile (``filename`` must end in .prom)."""
    if not filename.endswith(".prom"):
        raise ValueError("textfile metrics must be named *.prom, not %s" % filename)
    atomic_write(os.path.join(directory, filename), render_metrics(metrics))


def redact(text, secrets, replacement="********"):
    """Replace every non-empty secret in ``text``."""
    if text is None:
        return text
    text = str(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(str(secret), replacement)
    return text


def human(n):
    """A byte count for messages: KiB below 10 MiB, MiB above; ``?`` for None."""
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


class LockBusy(Exception):
    """Another process holds a DirLock; ``waited`` is how many seconds this one waited."""

    def __init__(self, path, waited):
        super(LockBusy, self).__init__("%s is locked by another process (waited %ss)" % (path, waited))
        self.path = path
        self.waited = waited


class DirLock:
    """An exclusive flock on the lock file ``name`` in ``directory``, held inside ``with``.

    Check mode takes a shared lock on an existing lock file only (it creates nothing), so it
    reports the same conflict a real run would. A lock still held after ``timeout`` seconds
    raises LockBusy. The kernel drops the lock when its process dies, so it never goes stale.
    """

    def __init__(self, directory, name, check_mode=False, timeout=0, sleep=time.sleep):
        self.path = os.path.join(directory, name)
        self.check_mode = check_mode
        self.timeout = timeout
        self.sleep = sleep
        self.fd = None

    def __enter__(self):
        if self.check_mode:
            if not os.path.exists(self.path):
                return self
            self.fd = os.open(self.path, os.O_RDONLY)
            mode = fcntl.LOCK_SH | fcntl.LOCK_NB
        else:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            mode = fcntl.LOCK_EX | fcntl.LOCK_NB
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            try:
                fcntl.flock(self.fd, mode)
                return self
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(self.fd)
                    self.fd = None
                    raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise LockBusy(self.path, self.timeout or 0) from exc
                self.sleep(0.2)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
