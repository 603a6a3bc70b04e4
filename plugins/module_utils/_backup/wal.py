# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL archive of a PostgreSQL server, and point-in-time recovery from it: the library of
the bosun-wal command.

Standard library only. The collection's modules import it (postgresql_basebackup: LSNs,
segment names, the archive's store and cleanup); the postgresql role installs it on the db
hosts beside its command line, roles/postgresql/files/bosun_wal_cli.py, which only parses
the arguments and calls ``run`` with the function of each command (``archive_push``,
``archive_fetch``, ``archive_list``, ``recover``, ``stop``). PostgreSQL runs that command as
``archive_command`` and ``restore_command``::

    archive_command = 'bosun-wal push --archive /var/backups/postgresql/_pitr/wal %p %f'
    restore_command = 'bosun-wal fetch --archive /var/backups/postgresql/_pitr/wal %f %p'

Archive layout (``DirectoryStore``; another store, such as an S3-compatible bucket, only
has to offer the same few methods)::

    <archive>/<first 16 characters of the name>/<WAL file name>[.zst|.gz|.lz4]
    <archive>/<first 16 characters of the name>/<WAL file name>[...].sha256   sha256sum format
    <archive>/history/<timeline>.history[...]

Rules (those of PostgreSQL's archive_command, kept exactly):

* a file appears under its final name only complete and durable: compressed into a temp
  file beside it, fsynced, its checksum file put in place first, then the file published
  with ``link()``, which never replaces an existing file (a writer racing this one cannot
  be overwritten, nor overwrite), directory fsynced;
* pushing a file the archive already holds with the same content succeeds (exit 0), with
  different content fails (exit 3) and leaves the archived file alone;
* push exits between 0 and 125 (higher ones, and signals, stop PostgreSQL's archiver);
* messages go to stderr, which PostgreSQL writes to its log;
* fetching a file the archive does not hold exits 1 quietly (PostgreSQL probes for files
  that do not exist, such as the next timeline's history). Any other failure of fetch (the
  stored file's sha256 differs from its checksum file, it does not decompress, the
  decompressor or the archive is missing) exits 200: PostgreSQL reads an exit status above
  125 from restore_command as fatal and aborts the recovery, where 1-125 would mean "not
  in the archive" and end it, promoting at the point reached.

``recover`` restores a base backup (written by bosun.platform.postgresql_basebackup) into a
new data directory and replays the archive up to a target; ``stop`` stops such a cluster and
``stop --remove`` deletes it: only a scratch cluster ``recover`` created (it carries a marker
file naming its directory and a random id), never the live cluster's directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import glob
import gzip
import hashlib
import importlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

if __package__:
    from ansible_collections.bosun.platform.plugins.module_utils import _safe_tar
else:
    # Installed on a db host as bosun_wal.py beside the bosun-wal command line, and the shared
    # extraction code beside it (roles/postgresql/vars/main.yml, __postgresql_wal_tool_files).
    _safe_tar = importlib.import_module("bosun_safe_tar")

PROG = "bosun-wal"
EXIT_OK = 0
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_CORRUPT = 4
EXIT_NO_SPACE = 5
EXIT_IO = 6
EXIT_RECOVERY = 7
EXIT_REFUSED = 8
# fetch: any failure but "not in the archive". PostgreSQL treats a restore_command exit status
# above 125 as fatal (wait_result_is_any_signal) and aborts the recovery instead of ending it.
EXIT_FETCH_FATAL = 200
SCRATCH_MARKER = "bosun-wal-scratch.json"
DEFAULT_RECOVERY_TIMEOUT = 4 * 3600

COMPRESSIONS = ("none", "gzip", "zstd", "lz4")
EXTENSIONS = {"none": "", "gzip": ".gz", "zstd": ".zst", "lz4": ".lz4"}
DEFAULT_LEVELS = {"gzip": 1, "zstd": 3, "lz4": 1}
CHECKSUM_SUFFIX = ".sha256"
TEMP_MARKER = ".bosun-tmp-"
STALE_TEMP_SECONDS = 600
HISTORY_DIR = "history"
# 24 hex digits (timeline, log, segment) with an optional suffix, or a timeline history file.
WAL_NAME_RE = re.compile(r"^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
READY_RE = re.compile(r"LOG:\s+database system is ready to accept connections")


class WalError(Exception):
    """A failure with its exit code; the message names the file and the cause."""

    def __init__(self, msg, code=EXIT_IO):
        super(WalError, self).__init__(msg)
        self.msg = msg
        self.code = code


def log(msg):
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    sys.stderr.flush()


# -- names and positions ------------------------------------------------------------------
def check_name(name):
    if not WAL_NAME_RE.match(name or ""):
        raise WalError("%r is not a WAL file name (segment, .partial, .backup or .history)" % (name,), EXIT_USAGE)
    return name


def parse_lsn(text):
    """An LSN such as ``0/3000028`` as an integer."""
    m = re.match(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$", text or "")
    if not m:
        raise ValueError("%r is not an LSN (like 0/3000028)" % (text,))
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(value):
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def segment_name(timeline, lsn, segment_size=16 * 1024 * 1024):
    """The WAL segment file holding ``lsn`` on ``timeline`` (like pg_walfile_name)."""
    per_id = 0x100000000 // segment_size
    segno = lsn // segment_size
    return "%08X%08X%08X" % (timeline, segno // per_id, segno % per_id)


def position_key(name):
    """Log and segment of a WAL file name (timeline ignored, like pg_archivecleanup)."""
    return name[8:24]


# -- storage --------------------------------------------------------------------------------
def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


class StoredFile:
    """One archived WAL file: its key (path relative to the store) and compression."""

    def __init__(self, name, key, compression):
        self.name = name
        self.key = key
        self.compression = compression

    def __repr__(self):
        return "StoredFile(%r)" % self.key


class DirectoryStore:
    """The archive as a directory tree (a local disk or a mounted volume).

    The interface another store implements: ``find``, ``read``, ``read_checksum``, ``put``,
    ``names``, ``delete``, ``describe``.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def describe(self, key=""):
        return os.path.join(self.root, key) if key else self.root

    @staticmethod
    def subdir(name):
        return HISTORY_DIR if name.endswith(".history") else name[:16]

    def find(self, name):
        """The stored file for a WAL name (any compression), or None."""
        for method in COMPRESSIONS:
            key = os.path.join(self.subdir(name), name + EXTENSIONS[method])
            if os.path.isfile(os.path.join(self.root, key)):
                return StoredFile(name, key, method)
        if not os.path.isdir(self.root):
            raise WalError("the archive directory %s does not exist" % self.root, EXIT_IO)
        return None

    def read(self, key):
        with open(os.path.join(self.root, key), "rb") as f:
            return f.read()

    def read_checksum(self, key):
        """The sha256 recorded beside a stored file, or None when there is none."""
        try:
            with open(os.path.join(self.root, key + CHECKSUM_SUFFIX), "r") as f:
                text = f.read()
        except (IOError, OSError):
            return None
        m = re.match(r"^([0-9a-f]{64})\s", text)
        return m.group(1) if m else None

    def _write_temp(self, directory, final_name, data):
        fd, tmp = tempfile.mkstemp(prefix="." + final_name + TEMP_MARKER, dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def put(self, key, data, checksum):
        """Store ``data`` under ``key`` with its checksum file: never a partial file under either
        name, never in place of a stored file. Returns False, storing nothing, when ``key``
        exists (another writer got there first; the caller compares the contents)."""
        path = os.path.join(self.root, key)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
            fsync_dir(os.path.dirname(directory))
        base = os.path.basename(path)
        self._remove_stale_temps(directory, base)
        line = ("%s  %s\n" % (checksum, base)).encode()
        data_tmp = self._write_temp(directory, base, data)
        sum_tmp = None
        try:
            sum_tmp = self._write_temp(directory, base + CHECKSUM_SUFFIX, line)
            if os.path.lexists(path):
                return False
            # The checksum goes first: a checksum without its file is ignored (the file is
            # not archived) and replaced by the next push; a file never lacks its checksum.
            os.rename(sum_tmp, path + CHECKSUM_SUFFIX)
            sum_tmp = None
            # link() fails when the name exists: unlike rename(), it can never replace a
            # file another writer published since the check above.
            try:
                os.link(data_tmp, path)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                self._restore_checksum(key, line)
                return False
        finally:
            for leftover in (data_tmp, sum_tmp):  # the published file is a link of data_tmp
                if leftover:
                    _unlink_quietly(leftover)
        fsync_dir(directory)
        return True

    def _restore_checksum(self, key, ours):
        """Lost a race: if the checksum file is the one this writer put in place (over that of
        the file that won), write the winner's back. Any other content is not ours to touch."""
        path = os.path.join(self.root, key)
        try:
            with open(path + CHECKSUM_SUFFIX, "rb") as f:
                if f.read() != ours:
                    return
            with open(path, "rb") as f:
                digest = sha256_bytes(f.read())
        except (IOError, OSError):
            return
        if not ours.startswith(digest.encode() + b" "):
            self.put_checksum(key, digest)

    @staticmethod
    def _remove_stale_temps(directory, base, age=STALE_TEMP_SECONDS):
        """Temp files of this name left by a crashed or killed push (PostgreSQL runs one
        archive_command at a time, so an old one is nobody's)."""
        now = time.time()
        for prefix in ("." + base + TEMP_MARKER, "." + base + CHECKSUM_SUFFIX + TEMP_MARKER):
            for path in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*")):
                try:
                    if now - os.path.getmtime(path) > age:
                        os.unlink(path)
                except OSError:
                    pass

    def put_checksum(self, key, checksum):
        path = os.path.join(self.root, key)
        directory = os.path.dirname(path)
        base = os.path.basename(path)
        tmp = self._write_temp(directory, base + CHECKSUM_SUFFIX, ("%s  %s\n" % (checksum, base)).encode())
        os.rename(tmp, path + CHECKSUM_SUFFIX)
        fsync_dir(directory)

    def names(self):
        """Every archived WAL file as StoredFile, sorted by name."""
        out = []
        if not os.path.isdir(self.root):
            return out
        for sub in sorted(os.listdir(self.root)):
            directory = os.path.join(self.root, sub)
            if not os.path.isdir(directory) or sub.startswith("."):
                continue
            for fname in sorted(os.listdir(directory)):
                if fname.startswith(".") or fname.endswith(CHECKSUM_SUFFIX):
                    continue
                for method in ("zstd", "gzip", "lz4", "none"):
                    ext = EXTENSIONS[method]
                    if fname.endswith(ext) and WAL_NAME_RE.match(fname[: len(fname) - len(ext)] if ext else fname):
                        out.append(
                            StoredFile(
                                fname[: len(fname) - len(ext)] if ext else fname, os.path.join(sub, fname), method
                            )
                        )
                        break
        out.sort(key=lambda s: s.name)
        return out

    def size(self, key):
        return os.path.getsize(os.path.join(self.root, key))

    def delete(self, key):
        path = os.path.join(self.root, key)
        _unlink_quietly(path)
        _unlink_quietly(path + CHECKSUM_SUFFIX)

    def sync(self, keys):
        for directory in sorted(set(os.path.dirname(os.path.join(self.root, k)) for k in keys)):
            if os.path.isdir(directory):
                fsync_dir(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# -- compression ----------------------------------------------------------------------------
def _tool(method):
    path = shutil.which(method)
    if not path:
        raise WalError(
            "compression %s needs the %s program; install the %s package" % (method, method, method), EXIT_IO
        )
    return path


def _run_filter(argv, data, what):
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise WalError(
            "%s: %s exited with %d: %s"
            % (what, os.path.basename(argv[0]), proc.returncode, proc.stderr.decode("utf-8", "replace").strip()),
            EXIT_CORRUPT if "-d" in argv else EXIT_IO,
        )
    return proc.stdout


def compress(data, method, level=None):
    if method == "none":
        return data
    level = DEFAULT_LEVELS[method] if level is None else level
    if method == "gzip":
        return gzip.compress(data, compresslevel=level, mtime=0)
    if method == "zstd":
        return _run_filter([_tool("zstd"), "-q", "-c", "-%d" % level, "--check"], data, "zstd")
    return _run_filter([_tool("lz4"), "-q", "-c", "-%d" % level], data, "lz4")


def decompress(data, method, what):
    """The original bytes. Data that does not decompress is WalError(EXIT_CORRUPT), decided by
    the decompressor's exit status (or gzip's exception), never by the wording of its message;
    a missing decompressor is WalError(EXIT_IO)."""
    if method == "none":
        return data
    if method == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, ValueError) as exc:
            raise WalError("%s is corrupt: its gzip data does not decompress (%s)" % (what, exc), EXIT_CORRUPT) from exc
    argv = [_tool(method), "-d", "-q", "-c"]
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise WalError(
            "%s is corrupt: its %s data does not decompress (%s -d exited with %d: %s)"
            % (what, method, method, proc.returncode, proc.stderr.decode("utf-8", "replace").strip()),
            EXIT_CORRUPT,
        )
    return proc.stdout


# -- push and fetch -------------------------------------------------------------------------
def push(store, path, name=None, method="none", level=None):
    """Archive the file at ``path`` as ``name``. Returns a message; raises WalError."""
    name = check_name(name or os.path.basename(path))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except (IOError, OSError) as exc:
        raise WalError("cannot read %s: %s" % (path, exc.strerror or exc), EXIT_IO) from exc
    existing = store.find(name)
    if existing is None:
        stored = compress(raw, method, level)
        key = os.path.join(store.subdir(name), name + EXTENSIONS[method])
        try:
            if store.put(key, stored, sha256_bytes(stored)):
                return "archived %s as %s (%d bytes, %s)" % (name, store.describe(key), len(stored), method)
        except (IOError, OSError) as exc:
            code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_IO
            raise WalError(
                "cannot archive %s to %s: %s; nothing was written under its name"
                % (name, store.describe(key), exc.strerror or exc),
                code,
            ) from exc
        # Another writer published this name since find(): compare with what it stored.
        existing = store.find(name)
        if existing is None:
            raise WalError("%s appeared in the archive and went again while being archived; retry" % name, EXIT_IO)
    return _compare_with_archived(store, name, existing, raw)


def _compare_with_archived(store, name, existing, raw):
    """Pushing a name the archive holds: identical content is success, different is refused."""
    what = store.describe(existing.key)
    try:
        stored = store.read(existing.key)
        old = decompress(stored, existing.compression, what)
    except WalError:
        old = None
    if old is not None and sha256_bytes(old) == sha256_bytes(raw):
        digest = sha256_bytes(stored)
        if store.read_checksum(existing.key) != digest:
            store.put_checksum(existing.key, digest)
        return "%s is already archived with identical content (%s)" % (name, what)
    raise WalError(
        "refusing to overwrite %s: the archive already holds %s with different content "
        "(archived sha256 %s, this one %s); nothing was changed"
        % (what, name, sha256_bytes(old) if old is not None else "unreadable", sha256_bytes(raw)),
        EXIT_CONFLICT,
    )


def fetch(store, name, dest):
    """Restore ``name`` to ``dest``. Returns False when the archive does not hold it."""
    name = check_name(name)
    found = store.find(name)
    if found is None:
        return False
    what = store.describe(found.key)
    stored = store.read(found.key)
    expected = store.read_checksum(found.key)
    if expected is None:
        raise WalError("%s: %s has no checksum file; it cannot be trusted" % (name, what), EXIT_CORRUPT)
    actual = sha256_bytes(stored)
    if actual != expected:
        raise WalError(
            "%s is corrupt: the sha256 of %s is %s, its checksum file says %s" % (name, what, actual, expected),
            EXIT_CORRUPT,
        )
    raw = decompress(stored, found.compression, "%s (%s)" % (name, what))
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + TEMP_MARKER, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, dest)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return True


def cleanup_plan(store, keep_from):
    """Archived files a cleanup up to WAL name ``keep_from`` would delete (like pg_archivecleanup).

    Segments, partial segments and backup history files whose position is before that of
    ``keep_from`` go; timeline history files always stay.
    """
    check_name(keep_from)
    limit = position_key(keep_from)
    return [s for s in store.names() if not s.name.endswith(".history") and position_key(s.name) < limit]


# -- recovery -------------------------------------------------------------------------------
def _bin_dir(requested, major):
    if requested:
        return requested
    if major:
        candidate = "/usr/lib/postgresql/%s/bin" % major
        if os.path.isdir(candidate):
            return candidate
    found = sorted(glob.glob(DEBIAN_BIN_GLOB), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    if found:
        return found[-1]
    postgres = shutil.which("postgres")
    if postgres:
        return os.path.dirname(postgres)
    raise WalError("no PostgreSQL server binaries found; pass --bin-dir", EXIT_USAGE)


def _parse_time(text):
    """An ISO 8601 or PostgreSQL timestamp with a time zone as an aware datetime."""
    t = text.strip().replace(" ", "T", 1)
    t = re.sub(r"([+-]\d\d)$", r"\1:00", t)
    t = t[:-1] + "+00:00" if t.endswith("Z") else t
    moment = datetime.datetime.fromisoformat(t)
    if moment.tzinfo is None:
        raise ValueError("%r has no time zone (add +00 or Z)" % text)
    return moment


def list_base_backups(base_dir):
    """Verified base backups (manifest dicts with ``path`` added), newest first."""
    out = []
    for manifest_path in glob.glob(os.path.join(base_dir, "*.manifest.json")):
        try:
            with open(manifest_path, "rb") as f:
                m = json.loads(f.read().decode("utf-8"))
        except (IOError, OSError, ValueError):
            continue
        if not isinstance(m, dict) or m.get("kind") != "basebackup" or not m.get("verified"):
            continue
        path = os.path.join(base_dir, m.get("file") or "")
        if not os.path.isdir(path):
            continue
        m["path"] = path
        m["manifest"] = manifest_path
        out.append(m)
    out.sort(key=lambda m: (m.get("finished") or "", m.get("end_lsn_num") or 0), reverse=True)
    return out


def choose_backup(backups, target_time=None, target_lsn=None):
    """The newest base backup that ends before the target (all targets: the newest)."""
    if not backups:
        raise WalError("there is no verified base backup to recover from", EXIT_RECOVERY)
    for m in backups:
        if target_time is not None and _parse_time(m["finished"]) >= target_time:
            continue
        if target_lsn is not None and int(m.get("end_lsn_num") or 0) > target_lsn:
            continue
        return m
    what = "time %s" % target_time.isoformat() if target_time is not None else "LSN %s" % format_lsn(target_lsn)
    raise WalError(
        "no base backup ends before the recovery target %s (the oldest, %s, ended %s)"
        % (what, backups[-1]["path"], backups[-1].get("finished")),
        EXIT_RECOVERY,
    )


def verify_backup_files(m):
    for fname, meta in sorted((m.get("files") or {}).items()):
        path = os.path.join(m["path"], fname)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1024 * 1024), b""):
                    digest.update(chunk)
        except (IOError, OSError) as exc:
            raise WalError("cannot read %s: %s" % (path, exc.strerror or exc), EXIT_RECOVERY) from exc
        if digest.hexdigest() != meta.get("sha256"):
            raise WalError(
                "refusing to recover from %s: the sha256 of %s differs from its manifest" % (m["path"], fname),
                EXIT_RECOVERY,
            )


def extract_tar(path, dest):
    """Extract a base backup's tar (plain, .gz, .zst or .lz4) into ``dest``.

    By the rules of the shared safe extraction (module_utils/_safe_tar.py, the same as for
    release tarballs): a member that could reach outside ``dest`` (absolute or ``..`` names,
    a repeated name, an escaping or absolute symlink such as a tablespace's, a hard link
    to anything but an earlier file, a device) refuses the whole backup. Owners come from
    the archive when running as root.
    """
    proc = archive = None
    try:
        if not os.path.isdir(dest):
            os.makedirs(dest, 0o700)
        if path.endswith(".zst") or path.endswith(".lz4"):
            method = "zstd" if path.endswith(".zst") else "lz4"
            proc = subprocess.Popen([_tool(method), "-d", "-q", "-c", path], stdout=subprocess.PIPE)
            archive = tarfile.open(fileobj=proc.stdout, mode="r|")
        else:
            archive = tarfile.open(path, mode="r|gz" if path.endswith(".gz") else "r|")
        _safe_tar.extract(archive, dest, path, owner=_safe_tar.OWNER_FROM_ARCHIVE, implicit_dir_mode=0o700)
        if proc is not None:
            while proc.stdout.read(1024 * 1024):  # the end of the tar: zero blocks, padding
                pass
    except _safe_tar.ExtractError as exc:
        raise WalError(str(exc), EXIT_RECOVERY) from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise WalError("cannot extract %s into %s: %s" % (path, dest, exc), EXIT_RECOVERY) from exc
    finally:
        if archive is not None:
            archive.close()
        if proc is not None:
            proc.stdout.close()
            proc.wait()
    if proc is not None and proc.returncode != 0:
        raise WalError("decompressing %s failed (exit %d)" % (path, proc.returncode), EXIT_RECOVERY)


def _controldata_state(bindir, data_dir):
    proc = subprocess.run(
        [os.path.join(bindir, "pg_controldata"), "-D", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, LC_ALL="C"),
        check=False,
    )
    m = re.search(r"^Database cluster state:\s+(.*)$", proc.stdout.decode("utf-8", "replace"), re.M)
    return m.group(1).strip() if m else None


def _ready(bindir, socket_dir, port):
    proc = subprocess.run(
        [os.path.join(bindir, "pg_isready"), "-q", "-h", socket_dir, "-p", str(port), "-d", "postgres"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return proc.returncode == 0


def _read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except (IOError, OSError):
        return ""


def recovery_report(text):
    """What the server's log says about the recovery it did."""
    report = {}
    patterns = dict(
        stop=r"LOG:\s+(recovery stopping [^\n]*)",
        redo_done_lsn=r"LOG:\s+redo done at ([0-9A-F]+/[0-9A-F]+)",
        last_transaction_time=r"last completed transaction was at log time ([^\n]+)",
        timeline=r"selected new timeline ID: (\d+)",
        consistent_at=r"consistent recovery state reached at ([0-9A-F]+/[0-9A-F]+)",
    )
    for key, pattern in patterns.items():
        found = re.findall(pattern, text)
        if found:
            report[key] = found[-1].strip()
    if "timeline" in report:
        report["timeline"] = int(report["timeline"])
    report["segments_restored"] = len(set(re.findall(r'restored log file "([0-9A-F]{24})" from archive', text)))
    # "cannot restore" is how run() reports every fetch failure (its exit status, above
    # 125, is what makes PostgreSQL abort; this only names the file for the report).
    report["fetch_errors"] = re.findall(
        r"%s: ([^\n]*(?:cannot restore|corrupt|damaged|cannot be trusted)[^\n]*)" % PROG, text
    )
    return report


def _tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


# -- scratch clusters: the only data directories stop --remove deletes -----------------------
DEBIAN_CONF_GLOB = "/etc/postgresql/*/*/postgresql.conf"
SCRATCH_SIBLINGS = (("socket_dir", ".run"), ("log_file", ".recover.log"))


def _write_marker(data_dir, marker):
    fd, tmp = tempfile.mkstemp(prefix="." + SCRATCH_MARKER + TEMP_MARKER, dir=data_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(marker, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(data_dir, SCRATCH_MARKER))
    except BaseException:
        _unlink_quietly(tmp)
        raise


def mark_scratch(data_dir, created, **info):
    """Mark ``data_dir`` as a scratch cluster of ``recover``: the only kind ``stop --remove``
    deletes. The marker names this very directory (real path, device, inode) and a random
    id; ``created`` says whether recover made the directory (if not, only its contents go).
    ``info``: socket_dir, log_file, bin_dir, pid (of the server recover started)."""
    real = os.path.realpath(data_dir)
    st = os.stat(real)
    marker = dict(
        tool=PROG,
        kind="scratch",
        id=secrets.token_hex(16),
        data_dir=real,
        dev=st.st_dev,
        ino=st.st_ino,
        created_dir=bool(created),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        pid=None,
    )
    marker.update(info)
    _write_marker(real, marker)
    return marker


def read_scratch_marker(data_dir):
    """The marker ``mark_scratch`` wrote in ``data_dir``, or None. A marker copied into another
    directory, or a marked directory moved or restored elsewhere, does not count."""
    real = os.path.realpath(data_dir)
    path = os.path.join(real, SCRATCH_MARKER)
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, "r") as f:
            marker = json.load(f)
        st = os.stat(real)
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("tool") != PROG or marker.get("kind") != "scratch":
        return None
    if (marker.get("data_dir"), marker.get("dev"), marker.get("ino")) != (real, st.st_dev, st.st_ino):
        return None
    if not re.match(r"^[0-9a-f]{32}$", str(marker.get("id"))):
        return None
    return marker


def _configured_data_dirs():
    """data_directory of every cluster configured in Debian's layout."""
    out = []
    for conf in sorted(glob.glob(DEBIAN_CONF_GLOB)):
        try:
            with open(conf, "r", errors="replace") as f:
                found = re.findall(r"^\s*data_directory\s*=\s*'([^']+)'", f.read(), re.M)
        except (IOError, OSError):
            continue
        if found:
            out.append((found[-1], "configured in %s" % conf))
    return out


def _process_cwd(pid):
    try:
        return os.path.realpath(os.readlink("/proc/%d/cwd" % pid))
    except (OSError, ValueError):
        return None


def _running_data_dirs():
    """{data directory: postmaster pid} of the servers running here that this user can see:
    a postmaster works in its data directory, whose postmaster.pid starts with its pid."""
    out = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        cwd = _process_cwd(pid)
        if not cwd:
            continue
        try:
            with open(os.path.join(cwd, "postmaster.pid"), "r", errors="replace") as f:
                first = f.readline().strip()
        except (IOError, OSError):
            continue
        if first == str(pid):
            out[cwd] = pid
    return out


def _overlaps(path, other):
    return (
        path == other
        or path.startswith(other.rstrip(os.sep) + os.sep)
        or other.startswith(path.rstrip(os.sep) + os.sep)
    )


def refuse_live(data_dir, protect=(), detect=True, own_pid=None):
    """WalError(EXIT_REFUSED) when ``data_dir`` is, is inside or contains the data directory of
    a live cluster: one in ``protect``, or (``detect``) one configured in /etc/postgresql or
    one whose server runs (other than the server ``own_pid`` recover started in it)."""
    real = os.path.realpath(data_dir)
    named = [(p, "named by --protect") for p in protect or () if p]
    if detect:
        named += _configured_data_dirs()
    for other, why in named:
        if _overlaps(real, os.path.realpath(other)):
            raise WalError(
                "refusing %s: it is, is inside or contains the live data directory %s (%s)" % (data_dir, other, why),
                EXIT_REFUSED,
            )
    if detect:
        for other, pid in sorted(_running_data_dirs().items()):
            if other == real and pid == own_pid:
                continue
            if _overlaps(real, other):
                raise WalError(
                    "refusing %s: it is, is inside or contains %s, the data directory of a running cluster "
                    "(postmaster pid %d)" % (data_dir, other, pid),
                    EXIT_REFUSED,
                )


def _postmaster_pid(data_dir):
    """The pid a postmaster.pid in ``data_dir`` names: None without one, -1 if unreadable."""
    path = os.path.join(data_dir, "postmaster.pid")
    if not os.path.lexists(path):
        return None
    try:
        with open(path, "r", errors="replace") as f:
            return int(f.readline().strip())
    except (IOError, OSError, ValueError):
        return -1


def _remove_tree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _fetch_failed(report):
    return WalError(
        "recovery stopped before promoting: an archived file could not be restored (%s); the server was stopped"
        % report["fetch_errors"][0],
        EXIT_RECOVERY,
    )


def recover(
    archive,
    data_dir,
    port,
    tool,
    base_dir=None,
    backup=None,
    socket_dir=None,
    config_file=None,
    target_time=None,
    target_lsn=None,
    target_name=None,
    target_exclusive=False,
    bin_dir=None,
    log_file=None,
    timeout=DEFAULT_RECOVERY_TIMEOUT,
    stop_after=False,
    protect=(),
):
    """Restore a verified base backup into the new ``data_dir`` and replay the archive up to
    the target (one of ``target_time``, ``target_lsn``, ``target_name``; none: the end of the
    archive), then promote. Returns the result dict; raises WalError.

    ``base_dir``: the newest fitting backup there, or ``backup``: that one. Without
    ``config_file`` the cluster is a scratch cluster (socket only, marked for ``stop``);
    with it, the replacement of a live cluster. ``tool`` is the argv of the bosun-wal command
    the server runs as its restore_command (``fetch``).
    """
    if not base_dir and not backup:
        raise WalError("give --base-dir (the newest fitting backup) or --backup", EXIT_USAGE)
    t0 = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    targets = [x for x in (target_time, target_lsn, target_name) if x]
    if len(targets) > 1:
        raise WalError("give one recovery target: --target-time, --target-lsn or --target-name", EXIT_USAGE)
    try:
        moment = _parse_time(target_time) if target_time else None
        lsn = parse_lsn(target_lsn) if target_lsn else None
    except ValueError as exc:
        raise WalError("bad recovery target: %s" % exc, EXIT_USAGE) from exc
    # A scratch cluster must stay clear of every live data directory (named or found); a
    # replacement goes where the live one was, on purpose (checked against --protect only).
    scratch = not config_file
    refuse_live(data_dir, protect, detect=scratch)
    store = DirectoryStore(archive)
    if not os.path.isdir(store.root):
        raise WalError("the archive directory %s does not exist" % store.root, EXIT_RECOVERY)
    if backup:
        path = os.path.abspath(backup.rstrip("/"))
        candidates = [m for m in list_base_backups(os.path.dirname(path)) if m["path"] == path]
        if not candidates:
            raise WalError("%s is not a verified base backup (no manifest saying so beside it)" % path, EXIT_RECOVERY)
        chosen = candidates[0]
    else:
        chosen = choose_backup(list_base_backups(base_dir), moment, lsn)
    verify_backup_files(chosen)
    data_dir = os.path.abspath(data_dir)
    if os.path.exists(data_dir) and os.listdir(data_dir):
        raise WalError("the data directory %s exists and is not empty; recovery needs a new one" % data_dir, EXIT_USAGE)
    major = str(chosen.get("server_version_num", ""))[:-4] or None
    bindir = _bin_dir(bin_dir, major)
    created_dir = not os.path.exists(data_dir)
    os.makedirs(data_dir, 0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    socket_dir = os.path.abspath(socket_dir or data_dir.rstrip("/") + ".run")
    log_path = log_file or data_dir.rstrip("/") + ".recover.log"
    marker = None
    if scratch:  # before anything else is written, so that stop --remove can clean up any failure
        marker = mark_scratch(data_dir, created_dir, socket_dir=socket_dir, log_file=log_path, bin_dir=bindir)
    for fname in sorted(chosen.get("files") or {}):
        if fname.startswith("base.tar"):
            extract_tar(os.path.join(chosen["path"], fname), data_dir)
    for fname in sorted(chosen.get("files") or {}):
        if fname.startswith("pg_wal.tar"):
            extract_tar(os.path.join(chosen["path"], fname), os.path.join(data_dir, "pg_wal"))
    for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        _unlink_quietly(os.path.join(data_dir, leftover))
    with open(os.path.join(data_dir, "recovery.signal"), "w") as f:
        f.write("")
    extracted = time.monotonic()

    restore = "%s fetch --archive %s %%f %%p" % (" ".join(shlex.quote(a) for a in tool), shlex.quote(store.root))
    settings = dict(
        restore_command=restore,
        recovery_target_action="promote",
        recovery_target_timeline="latest",
        hot_standby="off",
        logging_collector="off",
        lc_messages="C",
        port=str(port),
        unix_socket_directories=socket_dir,
    )
    if moment is not None:
        settings["recovery_target_time"] = target_time
    elif lsn is not None:
        settings["recovery_target_lsn"] = format_lsn(lsn)
    elif target_name:
        settings["recovery_target_name"] = target_name
    if target_exclusive:
        settings["recovery_target_inclusive"] = "off"
    if config_file:
        settings["config_file"] = os.path.abspath(config_file)
    else:
        # A scratch cluster: socket only, in a private directory, no archiving into the
        # production archive, no TLS files of the original host needed.
        os.makedirs(socket_dir, 0o700, exist_ok=True)
        hba = os.path.join(socket_dir, "pg_hba.conf")
        with open(hba, "w") as f:
            f.write("local all all trust\n")
        conf = os.path.join(data_dir, "postgresql.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write("# written by bosun-wal recover for a scratch cluster\n")
        settings.update(
            listen_addresses="",
            hba_file=hba,
            ident_file=os.path.join(socket_dir, "pg_ident.conf"),
            archive_mode="off",
            ssl="off",
            external_pid_file="",
            cluster_name="bosun-pitr",
        )
        with open(settings["ident_file"], "w") as f:
            f.write("")
    argv = [os.path.join(bindir, "postgres"), "-D", data_dir]
    for key in sorted(settings):
        argv += ["-c", "%s=%s" % (key, settings[key])]
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    if marker is not None:  # the server stop may stop: this one, no other
        marker["pid"] = proc.pid
        _write_marker(os.path.realpath(data_dir), marker)
    deadline = time.monotonic() + timeout
    promoted = False
    while True:
        text = _read(log_path)
        report = recovery_report(text)
        if report["fetch_errors"]:
            # The fetch's exit status makes PostgreSQL abort by itself: let it write why.
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _stop_pid(proc)
            raise _fetch_failed(report)
        if proc.poll() is not None:
            raise WalError(
                "the recovering server exited with %s before recovery ended; its log (%s) ends:\n%s"
                % (proc.returncode, log_path, _tail(text)),
                EXIT_RECOVERY,
            )
        # The extracted pg_control says "in production" (that of the running primary) until
        # the startup process rewrites it, so the server's own words decide; hot_standby is
        # off, so nothing connects before the promotion either.
        if not promoted and READY_RE.search(text):
            promoted = _controldata_state(bindir, data_dir) == "in production"
        if promoted and _ready(bindir, socket_dir, port):
            break
        if time.monotonic() > deadline:
            _stop_pid(proc)
            raise WalError("recovery did not end within %d s; the server was stopped" % timeout, EXIT_RECOVERY)
        time.sleep(0.2)
    finished = time.monotonic()
    text = _read(log_path)
    report = recovery_report(text)
    if report["fetch_errors"]:  # PostgreSQL aborts on a failed fetch; never report such a run as done
        _stop_pid(proc)
        raise _fetch_failed(report)
    report["log_tail"] = _tail(text, 25).splitlines()
    result = dict(
        ok=True,
        backup=chosen["path"],
        backup_finished=chosen.get("finished"),
        data_dir=data_dir,
        socket_dir=socket_dir,
        port=port,
        pid=proc.pid,
        log_file=log_path,
        target=dict(
            time=target_time,
            lsn=target_lsn,
            name=target_name,
            end_of_archive=not targets,
            inclusive=not target_exclusive,
        ),
        started=started.isoformat(),
        extract_seconds=round(extracted - t0, 3),
        replay_seconds=round(finished - extracted, 3),
        recovery_seconds=round(finished - t0, 3),
    )
    result.update(report)
    if marker is not None:
        result["scratch_id"] = marker["id"]
    if stop_after:
        _stop_cluster(bindir, data_dir)
        result["running"] = False
    else:
        result["running"] = True
    return result


def _stop_pid(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop_cluster(bindir, data_dir):
    proc = subprocess.run(
        [os.path.join(bindir, "pg_ctl"), "-D", data_dir, "-m", "fast", "-w", "-t", "120", "stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0 and os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        raise WalError("cannot stop the cluster in %s: %s" % (data_dir, proc.stdout.decode("utf-8", "replace").strip()))


def stop(data_dir, bin_dir=None, remove=False, expect_id=None, protect=()):
    """Stop (and with --remove delete) a scratch cluster recover created, and nothing else:
    the directory must carry recover's marker, must not be, be inside or contain a live
    cluster's data directory, and a server running in it must be the one recover started."""
    data_dir = os.path.abspath(data_dir)
    real = os.path.realpath(data_dir)
    marker = read_scratch_marker(real)
    # First, even for a directory not there yet: a playbook's first call refuses a wrong path.
    refuse_live(real, protect, own_pid=marker.get("pid") if marker else None)
    if not os.path.lexists(data_dir):
        return dict(ok=True, data_dir=data_dir, removed=[], running=False)
    if marker is None:
        raise WalError(
            "refusing %s: it was not created by bosun-wal recover (no valid %s in it naming this directory); "
            "stop or remove it yourself if it really is a scratch cluster" % (data_dir, SCRATCH_MARKER),
            EXIT_REFUSED,
        )
    if expect_id and marker["id"] != expect_id:
        raise WalError(
            "refusing %s: it is the scratch cluster %s, not %s" % (data_dir, marker["id"], expect_id),
            EXIT_REFUSED,
        )
    pid = _postmaster_pid(real)
    if pid is not None and pid != marker.get("pid"):
        raise WalError(
            "refusing %s: its postmaster.pid names pid %s, a server bosun-wal recover did not start "
            "(it started %s); stop that server yourself" % (data_dir, pid, marker.get("pid")),
            EXIT_REFUSED,
        )
    # After a reboot the pid may belong to another process: only a process working in this
    # directory is its server (pg_ctl would signal whatever has that pid).
    if pid is not None and _process_cwd(pid) == real:
        _stop_cluster(_bin_dir(bin_dir or marker.get("bin_dir"), None), real)
    removed = []
    if remove:
        for key, suffix in SCRATCH_SIBLINGS:  # only recover's own socket directory and log
            path = marker.get(key)
            if path and os.path.lexists(path) and os.path.realpath(path) == real.rstrip(os.sep) + suffix:
                _remove_tree(path)
                removed.append(path)
        for name in sorted(os.listdir(real)):  # the marker goes last: a retry still finds it
            if name != SCRATCH_MARKER:
                _remove_tree(os.path.join(real, name))
        os.unlink(os.path.join(real, SCRATCH_MARKER))
        if marker.get("created_dir"):
            os.rmdir(real)
        removed.insert(0, data_dir)
    return dict(ok=True, data_dir=data_dir, removed=removed, running=False, scratch_id=marker["id"])


# -- the commands of bosun-wal and their exit codes ------------------------------------------
# roles/postgresql/files/bosun_wal_cli.py parses the command line; what each command does,
# what it prints and which code it exits with are decided here.
COMMANDS = ("push", "fetch", "list", "recover", "stop")


def archive_push(archive, path, name=None, method="none", level=None):
    """``push``, as archive_command: ``push`` into the archive directory, which must exist (an
    archive volume that is not mounted is not filled in its mount point). Returns the message."""
    store = DirectoryStore(archive)
    if not os.path.isdir(store.root):
        raise WalError("the archive directory %s does not exist (or is not mounted)" % store.root, EXIT_IO)
    return push(store, path, name, method, level)


def archive_fetch(archive, name, dest):
    """``fetch``, as restore_command. Returns False when the archive does not hold ``name``."""
    return fetch(DirectoryStore(archive), name, dest)


def archive_list(archive):
    """``list``: every archived file with its key, compression and size."""
    store = DirectoryStore(archive)
    files = [dict(name=s.name, key=s.key, compression=s.compression, size=store.size(s.key)) for s in store.names()]
    return dict(ok=True, archive=store.root, files=files)


def _drop_privileges(user):
    if not user or os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam(user)
    except KeyError as exc:
        raise WalError("no such user %s (--run-as)" % user, EXIT_USAGE) from exc
    os.setgid(pw.pw_gid)
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ["HOME"] = pw.pw_dir


def _write_result(path, result):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + TEMP_MARKER, dir=directory)
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o640)
    os.rename(tmp, path)


def usage_failed(command, message):
    """The exit code of a command line that does not parse (``command``: the subcommand it
    names, or None). A restore_command that cannot work is not "end of archive": fatal."""
    if command == "fetch":
        log("cannot restore: %s (exit %d: the recovery stops)" % (message, EXIT_FETCH_FATAL))
        return EXIT_FETCH_FATAL
    log(message)
    return EXIT_USAGE


def run(command, action, run_as=None, result_file=None, name=None):
    """Run one command and return its exit code: 0-125, but EXIT_FETCH_FATAL for a failed fetch.

    ``action`` makes the library call (``archive_push``, ``archive_fetch``, ``archive_list``,
    ``recover`` or ``stop``); it runs after dropping to the user ``run_as`` when started as
    root. push and fetch write only to stderr (``name``: the WAL file fetch restores, for its
    message); the others print their result, or the failure, as JSON on stdout and, with
    ``result_file``, into that file.
    """
    result = None
    try:
        _drop_privileges(run_as)
        outcome = action()
        if command == "push":
            log(outcome)
            return EXIT_OK
        if command == "fetch":
            return EXIT_OK if outcome else EXIT_MISSING
        result = outcome
    except WalError as exc:
        code, msg = exc.code, exc.msg
    except (IOError, OSError) as exc:
        msg = "%s: %s" % (getattr(exc, "filename", None) or command, exc.strerror or exc)
        code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_IO
    except Exception as exc:  # noqa: BLE001 - an archive_command must never die by a traceback's exit code
        code, msg = EXIT_IO, "unexpected %s: %s" % (type(exc).__name__, exc)
        if command != "fetch":
            log(msg)
            return EXIT_IO
    else:
        code, msg = EXIT_OK, None
    if command == "fetch" and code not in (EXIT_OK, EXIT_MISSING):
        # restore_command: only "not in the archive" (1) may end a recovery. Any other failure
        # (a corrupt or undecompressable file, no decompressor, no archive) exits above 125,
        # which PostgreSQL treats as fatal: the recovery aborts instead of promoting here.
        log("cannot restore %s: %s (exit %d: the recovery stops)" % (name, msg, EXIT_FETCH_FATAL))
        return EXIT_FETCH_FATAL
    if msg is not None:
        log(msg)
        result = dict(ok=False, msg=msg, command=command)
    if command in ("push", "fetch"):
        return code  # archive_command and restore_command: stderr only
    if result is not None:
        if result_file:
            _write_result(result_file, result)
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return code
