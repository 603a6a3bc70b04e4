# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup directory: names, manifests and what counts as a backup.

::

    <backup_dir>/<database>/<UTC timestamp>[-<label>].<ext>              the backup
    <backup_dir>/<database>/<UTC timestamp>[-<label>].manifest.json      beside it
    <backup_dir>/_globals/...                                            pg_dumpall --globals-only

``<database>`` is the database name with every character outside ``[A-Za-z0-9._-]`` (and a
leading ``.`` or ``_``) percent-encoded, so any name is one safe directory name and no
database can collide with ``_globals``. A backup counts as a copy only when its manifest
says it was verified when written and its size and sha256 still match.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import tempfile

from ansible_collections.bosun.platform.plugins.module_utils._io import (
    TEMP_MARKER,
    atomic_write,
    is_temp_name,
    sha256_file,
)

UTC = datetime.timezone.utc
GLOBALS_DIR = "_globals"
LOCK_NAME = ".bosun-backup.lock"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
BACKUP_EXTENSIONS = (".dump.zst", ".dump.lz4", ".dump", ".dir", ".sql")
LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
NAME_RE = re.compile(
    r"^(?P<ts>\d{8}T\d{6}Z)(?:-(?P<label>[A-Za-z0-9_][A-Za-z0-9_-]{0,63}))?"
    r"(?P<ext>\.manifest\.json|\.dump\.zst|\.dump\.lz4|\.dump|\.dir|\.sql)$"
)
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class BackupError(Exception):
    """A backup, retention or restore step failed; ``msg`` is free of secrets.

    ``result`` carries what was done before the failure (returned with fail_json).
    """

    def __init__(self, msg, **result):
        super(BackupError, self).__init__(msg)
        self.msg = msg
        self.result = result


def db_dirname(dbname):
    """The directory name for a database's backups (reversible, filesystem-safe)."""
    out = []
    for i, ch in enumerate(dbname):
        if ch in _SAFE and not (i == 0 and ch in "._"):
            out.append(ch)
        else:
            out.extend("%%%02X" % b for b in bytearray(ch.encode("utf-8")))
    return "".join(out)


def dbname_from_dirname(dirname):
    """Inverse of db_dirname."""
    raw = bytearray()
    i = 0
    while i < len(dirname):
        if dirname[i] == "%" and re.match(r"^[0-9A-F]{2}$", dirname[i + 1 : i + 3]):
            raw.append(int(dirname[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(dirname[i].encode("utf-8"))
            i += 1
    return raw.decode("utf-8")


def utc_now():
    return datetime.datetime.now(UTC)


def timestamp_name(moment):
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text):
    return datetime.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def iso(moment):
    return moment.astimezone(UTC).isoformat()


def stem_for(moment, label=None):
    return timestamp_name(moment) + ("-%s" % label if label else "")


def parse_name(name):
    """(timestamp, label, ext) for a backup or manifest name, or None."""
    m = NAME_RE.match(name)
    if not m:
        return None
    return m.group("ts"), m.group("label"), m.group("ext")


def stem_of(name):
    parsed = parse_name(name)
    if parsed is None:
        return None
    return name[: -len(parsed[2])]


def read_manifest(path):
    """The manifest as a dict; ValueError names what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError("manifest %s is unreadable: %s" % (path, exc)) from exc
    if not isinstance(data, dict) or "sha256" not in data or "file" not in data:
        raise ValueError("manifest %s lacks the file name or sha256" % path)
    return data


def write_manifest(path, data):
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)


def tree_files(path):
    """{relative name: {size, sha256}} for every file under a directory-format backup."""
    files = {}
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            files[rel] = dict(size=os.path.getsize(full), sha256=sha256_file(full))
    return files


def tree_digest(files):
    """One sha256 over a directory backup's per-file checksums (sorted by name)."""
    lines = "".join("%s  %s\n" % (files[name]["sha256"], name) for name in sorted(files))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


class BackupEntry:
    """One backup in a database's directory: the backup, its manifest, or both."""

    def __init__(self, directory, stem):
        self.directory = directory
        self.stem = stem
        ts, label = stem[:16], stem[17:] or None
        self.timestamp = parse_timestamp(ts)
        self.label = label
        self.backup_name = None
        self.manifest_name = None
        self._manifest = None
        self.manifest_error = None
        self._loaded = False

    @property
    def path(self):
        return os.path.join(self.directory, self.backup_name) if self.backup_name else None

    @property
    def manifest_path(self):
        return os.path.join(self.directory, self.stem + MANIFEST_SUFFIX)

    @property
    def manifest(self):
        if not self._loaded:
            self._loaded = True
            if self.manifest_name is None:
                self.manifest_error = "no manifest"
            else:
                try:
                    self._manifest = read_manifest(self.manifest_path)
                except ValueError as exc:
                    self.manifest_error = str(exc)
        return self._manifest

    @property
    def display_path(self):
        return self.path or self.manifest_path

    def claimed_verified(self):
        """The manifest says verified (no checksum read): the cheap test for metrics."""
        m = self.manifest
        return bool(m and m.get("verified") and self.backup_name and m.get("file") == self.backup_name)

    def check(self, checksum=True):
        """(True, None) when this backup counts as a verified copy, else (False, reason)."""
        m = self.manifest
        if m is None:
            return False, self.manifest_error
        if not m.get("verified"):
            return False, "its manifest says it was not verified when written"
        if self.backup_name is None:
            return False, "the backup %s named by its manifest is missing" % m.get("file")
        if m.get("file") != self.backup_name:
            return False, "its manifest describes %s, not %s" % (m.get("file"), self.backup_name)
        path = self.path
        try:
            if os.path.isdir(path):
                return self._check_tree(m, checksum)
            size = os.path.getsize(path)
            if m.get("size") != size:
                return False, "size %d bytes differs from the manifest's %s" % (size, m.get("size"))
            if checksum:
                digest = sha256_file(path)
                if digest != m.get("sha256"):
                    return False, "sha256 %s differs from the manifest's %s" % (digest, m.get("sha256"))
        except OSError as exc:
            return False, "cannot read it: %s" % exc
        return True, None

    def _check_tree(self, m, checksum):
        expected = m.get("files") or {}
        found = {}
        for dirpath, _dirs, names in os.walk(self.path):
            for name in names:
                full = os.path.join(dirpath, name)
                found[os.path.relpath(full, self.path)] = full
        if set(found) != set(expected):
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            return False, "its files differ from the manifest (missing %s, unexpected %s)" % (missing, extra)
        for name in sorted(found):
            if os.path.getsize(found[name]) != expected[name].get("size"):
                return False, "%s has a size that differs from the manifest" % name
            if checksum and sha256_file(found[name]) != expected[name].get("sha256"):
                return False, "%s has a sha256 that differs from the manifest" % name
        return True, None

    def summary(self):
        m = self.manifest or {}
        return dict(
            path=self.display_path,
            manifest=self.manifest_path if self.manifest_name else None,
            timestamp=iso(self.timestamp),
            label=self.label,
            size=m.get("size"),
        )


def list_backups(directory):
    """Backups in one database's directory, newest first (temp files and locks ignored)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    entries = {}
    for name in names:
        if name.startswith(".") or is_temp_name(name):
            continue
        parsed = parse_name(name)
        if parsed is None:
            continue
        stem = name[: -len(parsed[2])]
        entry = entries.get(stem)
        if entry is None:
            entry = entries[stem] = BackupEntry(directory, stem)
        if parsed[2] == MANIFEST_SUFFIX:
            entry.manifest_name = name
        else:
            entry.backup_name = name
    return sorted(entries.values(), key=_newest_first_key, reverse=True)


def _newest_first_key(entry):
    # Names carry whole seconds; within one second the manifest's start time decides.
    started = (entry.manifest or {}).get("started") if entry.manifest_name else None
    return (entry.timestamp, started if isinstance(started, str) else "", entry.stem)


def stale_temp_names(directory):
    """Leftovers of an interrupted run (only safe to remove while holding the lock).

    A restore's temp files are not covered by the directory lock: the restore holds a lock
    on the file itself, so check ``temp_in_use`` before removing one.
    """
    try:
        return sorted(n for n in os.listdir(directory) if is_temp_name(n))
    except OSError:
        return []


# A restore's temp files: TEMP_MARKER (so every cleaner sees them) followed by this tag.
RESTORE_TEMP_TAG = TEMP_MARKER + "restore-"


def is_restore_temp_name(name):
    return is_temp_name(name) and RESTORE_TEMP_TAG in name


def temp_in_use(path):
    """True while a live process holds the lock ``locked_temp_file`` takes on a temp file.

    The lock (flock) goes away with the process that held it, kill -9 included, so a temp
    file that is not in use is a leftover.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        raise
    finally:
        os.close(fd)


def locked_temp_file(directory, name):
    """(fd, path) of a new restore temp file for ``name`` in ``directory``, locked by ``fd``.

    The name carries RESTORE_TEMP_TAG; the lock lasts until ``fd`` is closed (or the process
    dies), so a cleaner never removes the file while it is used. A cleaner that removed the
    file between its creation and the lock is noticed (the path no longer names ``fd``'s
    file) and another name is taken.
    """
    for _attempt in range(5):
        fd, path = tempfile.mkstemp(prefix=".%s%s" % (name, RESTORE_TEMP_TAG), dir=directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd, path
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                os.close(fd)
                raise
        os.close(fd)
    raise OSError(errno.EEXIST, "cannot keep a temp file in %s: it is removed as soon as it is made" % directory)


def entry_for_path(path):
    """The BackupEntry for a backup (file or directory) or manifest path, or None."""
    path = os.path.abspath(path.rstrip("/") or "/")
    directory, name = os.path.split(path)
    stem = stem_of(name)
    if stem is None:
        return None
    for entry in list_backups(directory):
        if entry.stem == stem:
            return entry
    return None
