# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bosun-wal: the WAL archive of a PostgreSQL server, and point-in-time recovery from it.

Standard library only: the postgresql role copies this file to the db hosts and runs it
as ``archive_command`` and ``restore_command``::

    archive_command = 'bosun-wal push --archive /var/backups/postgresql/_pitr/wal %p %f'
    restore_command = 'bosun-wal fetch --archive /var/backups/postgresql/_pitr/wal %f %p'

Archive layout (``DirectoryStore``; another store, such as an S3-compatible bucket, only
has to offer the same few methods)::

    <archive>/<first 16 characters of the name>/<WAL file name>[.zst|.gz|.lz4]
    <archive>/<first 16 characters of the name>/<WAL file name>[...].sha256   sha256sum format
    <archive>/history/<timeline>.history[...]

Rules (those of PostgreSQL's archive_command, kept exactly):

* a file appears under its final name only complete and durable: compressed into a temp
  file beside it, fsynced, its checksum file written the same way, renamed, directory fsynced;
* pushing a file the archive already holds with the same content succeeds (exit 0), with
  different content fails (exit 3) and leaves the archived file alone;
* every exit code is between 0 and 125 (higher ones, and signals, stop PostgreSQL's archiver);
* messages go to stderr, which PostgreSQL writes to its log;
* fetching a file the archive does not hold exits 1 quietly (PostgreSQL probes for files
  that do not exist, such as the next timeline's history); a file whose checksum or
  compression check fails exits 4 with its name.

``recover`` restores a base backup (written by bosun.platform.postgresql_basebackup) into a
new data directory and replays the archive up to a target; ``stop`` stops such a cluster.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import errno
import glob
import gzip
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

PROG = "bosun-wal"
EXIT_OK = 0
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_CORRUPT = 4
EXIT_NO_SPACE = 5
EXIT_IO = 6
EXIT_RECOVERY = 7

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
        """Store ``data`` under ``key`` with its checksum file: never a partial file under either name."""
        path = os.path.join(self.root, key)
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
            fsync_dir(os.path.dirname(directory))
        base = os.path.basename(path)
        self._remove_stale_temps(directory, base)
        data_tmp = self._write_temp(directory, base, data)
        sum_tmp = None
        try:
            sum_tmp = self._write_temp(directory, base + CHECKSUM_SUFFIX, ("%s  %s\n" % (checksum, base)).encode())
            # The checksum goes first: a checksum without its file is ignored (the file is
            # not archived) and replaced by the next push; a file never lacks its checksum.
            os.rename(sum_tmp, path + CHECKSUM_SUFFIX)
            sum_tmp = None
            os.rename(data_tmp, path)
            data_tmp = None
        finally:
            for leftover in (data_tmp, sum_tmp):
                if leftover:
                    _unlink_quietly(leftover)
        fsync_dir(directory)

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
    if method == "none":
        return data
    if method == "gzip":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, ValueError) as exc:
            raise WalError("%s: gzip data is damaged: %s" % (what, exc), EXIT_CORRUPT) from exc
    return _run_filter([_tool(method), "-d", "-q", "-c"], data, what)


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
    if existing is not None:
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
    stored = compress(raw, method, level)
    key = os.path.join(store.subdir(name), name + EXTENSIONS[method])
    try:
        store.put(key, stored, sha256_bytes(stored))
    except (IOError, OSError) as exc:
        code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_IO
        raise WalError(
            "cannot archive %s to %s: %s; nothing was written under its name"
            % (name, store.describe(key), exc.strerror or exc),
            code,
        ) from exc
    return "archived %s as %s (%d bytes, %s)" % (name, store.describe(key), len(stored), method)


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


def _safe_members(archive, dest):
    root = os.path.realpath(dest)
    for member in archive:
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise WalError("refusing the unsafe name %r in a base backup" % name, EXIT_RECOVERY)
        if member.issym() or member.islnk():
            target = os.path.realpath(os.path.join(root, os.path.dirname(name), member.linkname))
            if member.islnk() or not target.startswith(root + os.sep):
                raise WalError("refusing the link %r in a base backup (tablespaces are not supported)" % name)
        if not (member.isfile() or member.isdir() or member.issym()):
            continue
        yield member


def extract_tar(path, dest):
    """Extract a base backup's tar (plain, .gz, .zst or .lz4) into ``dest``."""
    proc = None
    if path.endswith(".gz"):
        archive = tarfile.open(path, mode="r|gz")
    elif path.endswith(".zst") or path.endswith(".lz4"):
        method = "zstd" if path.endswith(".zst") else "lz4"
        proc = subprocess.Popen([_tool(method), "-d", "-q", "-c", path], stdout=subprocess.PIPE)
        archive = tarfile.open(fileobj=proc.stdout, mode="r|")
    else:
        archive = tarfile.open(path, mode="r|")
    try:
        for member in _safe_members(archive, dest):
            archive.extract(member, dest, set_attrs=True, numeric_owner=True)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise WalError("cannot extract %s into %s: %s" % (path, dest, exc), EXIT_RECOVERY) from exc
    finally:
        archive.close()
        if proc is not None:
            proc.stdout.close()
            if proc.wait() != 0:
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
    report["fetch_errors"] = re.findall(r"%s: ([^\n]*(?:corrupt|damaged|cannot be trusted)[^\n]*)" % PROG, text)
    return report


def _tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


def recover(args):
    t0 = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    targets = [x for x in (args.target_time, args.target_lsn, args.target_name) if x]
    if len(targets) > 1:
        raise WalError("give one recovery target: --target-time, --target-lsn or --target-name", EXIT_USAGE)
    try:
        target_time = _parse_time(args.target_time) if args.target_time else None
        target_lsn = parse_lsn(args.target_lsn) if args.target_lsn else None
    except ValueError as exc:
        raise WalError("bad recovery target: %s" % exc, EXIT_USAGE) from exc
    store = DirectoryStore(args.archive)
    if not os.path.isdir(store.root):
        raise WalError("the archive directory %s does not exist" % store.root, EXIT_RECOVERY)
    if args.backup:
        path = os.path.abspath(args.backup.rstrip("/"))
        candidates = [m for m in list_base_backups(os.path.dirname(path)) if m["path"] == path]
        if not candidates:
            raise WalError("%s is not a verified base backup (no manifest saying so beside it)" % path, EXIT_RECOVERY)
        backup = candidates[0]
    else:
        backup = choose_backup(list_base_backups(args.base_dir), target_time, target_lsn)
    verify_backup_files(backup)
    data_dir = os.path.abspath(args.data_dir)
    if os.path.exists(data_dir) and os.listdir(data_dir):
        raise WalError("the data directory %s exists and is not empty; recovery needs a new one" % data_dir, EXIT_USAGE)
    major = str(backup.get("server_version_num", ""))[:-4] or None
    bindir = _bin_dir(args.bin_dir, major)
    os.makedirs(data_dir, 0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for fname in sorted(backup.get("files") or {}):
        if fname.startswith("base.tar"):
            extract_tar(os.path.join(backup["path"], fname), data_dir)
    for fname in sorted(backup.get("files") or {}):
        if fname.startswith("pg_wal.tar"):
            extract_tar(os.path.join(backup["path"], fname), os.path.join(data_dir, "pg_wal"))
    for leftover in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        _unlink_quietly(os.path.join(data_dir, leftover))
    with open(os.path.join(data_dir, "recovery.signal"), "w") as f:
        f.write("")
    extracted = time.monotonic()

    socket_dir = os.path.abspath(args.socket_dir or data_dir.rstrip("/") + ".run")
    tool = os.path.abspath(__file__)
    restore = "%s %s fetch --archive %s %%f %%p" % (
        shlex.quote(sys.executable),
        shlex.quote(tool),
        shlex.quote(store.root),
    )
    settings = dict(
        restore_command=restore,
        recovery_target_action="promote",
        recovery_target_timeline="latest",
        hot_standby="off",
        logging_collector="off",
        lc_messages="C",
        port=str(args.port),
        unix_socket_directories=socket_dir,
    )
    if target_time is not None:
        settings["recovery_target_time"] = args.target_time
    elif target_lsn is not None:
        settings["recovery_target_lsn"] = format_lsn(target_lsn)
    elif args.target_name:
        settings["recovery_target_name"] = args.target_name
    if args.target_exclusive:
        settings["recovery_target_inclusive"] = "off"
    if args.config_file:
        settings["config_file"] = os.path.abspath(args.config_file)
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
    log_path = args.log_file or data_dir.rstrip("/") + ".recover.log"
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + args.timeout
    promoted = False
    while True:
        text = _read(log_path)
        report = recovery_report(text)
        if report["fetch_errors"]:
            _stop_pid(proc)
            raise WalError(
                "recovery read a damaged archived file: %s; the server was stopped" % report["fetch_errors"][0],
                EXIT_RECOVERY,
            )
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
        if promoted and _ready(bindir, socket_dir, args.port):
            break
        if time.monotonic() > deadline:
            _stop_pid(proc)
            raise WalError("recovery did not end within %d s; the server was stopped" % args.timeout, EXIT_RECOVERY)
        time.sleep(0.2)
    finished = time.monotonic()
    text = _read(log_path)
    report = recovery_report(text)
    report["log_tail"] = _tail(text, 25).splitlines()
    result = dict(
        ok=True,
        backup=backup["path"],
        backup_finished=backup.get("finished"),
        data_dir=data_dir,
        socket_dir=socket_dir,
        port=args.port,
        pid=proc.pid,
        log_file=log_path,
        target=dict(
            time=args.target_time,
            lsn=args.target_lsn,
            name=args.target_name,
            end_of_archive=not targets,
            inclusive=not args.target_exclusive,
        ),
        started=started.isoformat(),
        extract_seconds=round(extracted - t0, 3),
        replay_seconds=round(finished - extracted, 3),
        recovery_seconds=round(finished - t0, 3),
    )
    result.update(report)
    if args.stop_after:
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


def stop(args):
    data_dir = os.path.abspath(args.data_dir)
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        _stop_cluster(_bin_dir(args.bin_dir, None), data_dir)
    removed = []
    if args.remove:
        for path in (data_dir, data_dir.rstrip("/") + ".run", data_dir.rstrip("/") + ".recover.log"):
            if os.path.isdir(path):
                shutil.rmtree(path)
                removed.append(path)
            elif os.path.exists(path):
                os.unlink(path)
                removed.append(path)
    return dict(ok=True, data_dir=data_dir, removed=removed)


# -- command line -------------------------------------------------------------------------
class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise _UsageError(message)


def parser():
    p = _Parser(prog=PROG, description="WAL archive and point-in-time recovery for PostgreSQL (bosun.platform)")
    p.add_argument("--run-as", help="when started as root, drop to this user first (postgres)")
    sub = p.add_subparsers(dest="command")
    sub.required = True
    ps = sub.add_parser("push", help="archive a WAL file (archive_command: push --archive DIR %%p %%f)")
    ps.add_argument("--archive", required=True)
    ps.add_argument("--compress", choices=COMPRESSIONS, default="none")
    ps.add_argument("--level", type=int)
    ps.add_argument("path")
    ps.add_argument("name", nargs="?")
    pf = sub.add_parser("fetch", help="restore a WAL file (restore_command: fetch --archive DIR %%f %%p)")
    pf.add_argument("--archive", required=True)
    pf.add_argument("name")
    pf.add_argument("dest")
    pl = sub.add_parser("list", help="archived WAL files as JSON")
    pl.add_argument("--archive", required=True)
    pr = sub.add_parser("recover", help="restore a base backup and replay the archive to a target (JSON result)")
    pr.add_argument("--archive", required=True)
    pr.add_argument("--base-dir", help="directory of the base backups (the newest fitting one is used)")
    pr.add_argument("--backup", help="one base backup directory instead")
    pr.add_argument("--data-dir", required=True)
    pr.add_argument("--port", type=int, required=True)
    pr.add_argument("--socket-dir")
    pr.add_argument(
        "--config-file", help="the production configuration (replacing a cluster); without it a scratch cluster"
    )
    pr.add_argument("--target-time")
    pr.add_argument("--target-lsn")
    pr.add_argument("--target-name")
    pr.add_argument("--target-exclusive", action="store_true")
    pr.add_argument("--bin-dir")
    pr.add_argument("--log-file")
    pr.add_argument("--timeout", type=int, default=4 * 3600)
    pr.add_argument("--stop-after", action="store_true", help="stop the server once promoted")
    pr.add_argument("--result-file")
    pt = sub.add_parser("stop", help="stop a recovered cluster (and --remove its files)")
    pt.add_argument("--data-dir", required=True)
    pt.add_argument("--bin-dir")
    pt.add_argument("--remove", action="store_true")
    return p


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


def main(argv=None):
    """Run one command; returns the exit code (always 0-125)."""
    try:
        args = parser().parse_args(argv)
    except _UsageError as exc:
        log(str(exc))
        return EXIT_USAGE
    result = None
    try:
        _drop_privileges(args.run_as)
        if args.command == "push":
            store = DirectoryStore(args.archive)
            if not os.path.isdir(store.root):
                raise WalError("the archive directory %s does not exist (or is not mounted)" % store.root, EXIT_IO)
            log(push(store, args.path, args.name, args.compress, args.level))
            return EXIT_OK
        if args.command == "fetch":
            if fetch(DirectoryStore(args.archive), args.name, args.dest):
                return EXIT_OK
            return EXIT_MISSING
        if args.command == "list":
            store = DirectoryStore(args.archive)
            files = [
                dict(name=s.name, key=s.key, compression=s.compression, size=store.size(s.key)) for s in store.names()
            ]
            result = dict(ok=True, archive=store.root, files=files)
        elif args.command == "recover":
            if not args.base_dir and not args.backup:
                raise WalError("give --base-dir (the newest fitting backup) or --backup", EXIT_USAGE)
            result = recover(args)
        else:
            result = stop(args)
    except WalError as exc:
        log(exc.msg)
        result = dict(ok=False, msg=exc.msg, command=args.command)
        code = exc.code
    except (IOError, OSError) as exc:
        msg = "%s: %s" % (getattr(exc, "filename", None) or args.command, exc.strerror or exc)
        log(msg)
        result = dict(ok=False, msg=msg, command=args.command)
        code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_IO
    except Exception as exc:  # noqa: BLE001 - an archive_command must never die by a traceback's exit code
        log("unexpected %s: %s" % (type(exc).__name__, exc))
        return EXIT_IO
    else:
        code = EXIT_OK
    if args.command in ("push", "fetch"):
        return code  # archive_command and restore_command: stderr only
    if result is not None:
        if getattr(args, "result_file", None):
            _write_result(args.result_file, result)
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
