# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client programs (pg_dump, pg_restore ...), their versions, compression plans, the runner."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shlex
import shutil
import subprocess

from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import BackupError
from ansible_collections.bosun.platform.plugins.module_utils._io import redact
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, replace_deprecated_values
from ansible_collections.bosun.platform.plugins.module_utils._postgres import secrets_of

COMPRESSIONS = ["auto", "zstd", "lz4", "gzip", "none"]
FORMATS = ["custom", "directory"]
LEVELS = dict(zstd=(1, 19), lz4=(1, 12), gzip=(0, 9))
DEFAULT_LEVELS = dict(zstd=1, lz4=1, gzip=6)
# pg_dump learnt lz4 and zstd (--compress=METHOD:LEVEL) in PostgreSQL 16.
NATIVE_SINCE = dict(gzip=0, lz4=1600, zstd=1600)
STREAM_EXT = dict(zstd=".zst", lz4=".lz4")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _shell_join(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


def env_without_pg(env=None):
    """An environment for non-PostgreSQL programs (compressors): no PG* variable at all."""
    return dict((k, v) for k, v in (os.environ if env is None else env).items() if not k.startswith("PG"))


def scrub_process_environ():
    """Drop inherited PG* variables from this process's environment.

    module.run_command() can only add to os.environ; removing them here leaves the
    connection to the module's own options alone.
    """
    for key in [k for k in os.environ if k.startswith("PG") and k != "PGTZ"]:
        del os.environ[key]


class Runner:
    """Runs external programs by argv list and records their command lines, redacted.

    ``run_command`` is AnsibleModule.run_command inside a module; without it (unit tests,
    benchmarks) subprocess is used. Secrets are redacted from every output it returns.
    """

    def __init__(self, secrets=(), run_command=None):
        self.secrets = [s for s in secrets if s]
        self._run_command = run_command
        self.commands = []

    def redact(self, text):
        return redact(text, self.secrets)

    def record(self, *argvs):
        self.commands.append(self.redact(" | ".join(_shell_join(a) for a in argvs)))

    def run(self, argv, env=None):
        """(rc, stdout, stderr) of one program; stdout/stderr redacted."""
        self.record(argv)
        if self._run_command is not None:
            update = dict((k, v) for k, v in (env or {}).items() if k.startswith("PG"))
            rc, out, err = self._run_command(
                [str(a) for a in argv], environ_update=update, errors="surrogate_then_replace"
            )
        else:
            try:
                proc = subprocess.run(
                    [str(a) for a in argv],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                )
            except OSError as exc:
                return 127, "", self.redact(str(exc))
            rc = proc.returncode
            out = proc.stdout.decode("utf-8", "replace")
            err = proc.stderr.decode("utf-8", "replace")
        return rc, self.redact(out), self.redact(err)


def _newest_versioned(name, debian_glob):
    candidates = []
    for directory in glob.glob(debian_glob):
        path = os.path.join(directory, name)
        version = os.path.basename(os.path.dirname(directory))
        if os.path.isfile(path) and version.isdigit():
            candidates.append((int(version), path))
    return sorted(candidates)[-1][1] if candidates else None


def find_program(name, bin_dir=None, which=shutil.which, debian_glob=DEBIAN_BIN_GLOB):
    """Path of a client program: ``bin_dir``, else PATH, else the newest Debian versioned dir.

    Debian's /usr/bin/pg_dump is pg_wrapper, a Perl script that picks the newest installed
    client when the server is not a local cluster of its own; the newest versioned binary is
    called directly instead (same choice, without starting Perl for every call).
    """
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise BackupError("%s not found in bin_dir %s" % (name, bin_dir))
    found = which(name)
    if found and os.path.basename(os.path.realpath(found)) != "pg_wrapper":
        return found
    return _newest_versioned(name, debian_glob) or found


def require_program(name, bin_dir=None, why=""):
    path = find_program(name, bin_dir)
    if not path:
        raise BackupError(
            "%s not found on PATH%s; install the PostgreSQL client or set bin_dir"
            % (name, " (%s)" % why if why else "")
        )
    return path


def require_tool(name, why):
    path = shutil.which(name)
    if not path:
        raise BackupError("%s not found on PATH (%s); install the %s package" % (name, why, name))
    return path


def major_of_server(version_num):
    """Comparable major number: 1500 for 15.x, 906 for 9.6.x."""
    version_num = int(version_num)
    if version_num >= 100000:
        return (version_num // 10000) * 100
    return version_num // 100


def parse_client_version(text):
    """Comparable major number from ``pg_dump --version`` output, or None."""
    m = _VERSION_RE.search(text or "")
    if not m:
        return None
    first = int(m.group(1))
    if first >= 10:
        return first * 100
    return first * 100 + int(m.group(2) or 0)


def major_label(major):
    return str(major // 100) if major >= 1000 else "%d.%d" % (major // 100, major % 100)


def client_major(path, runner):
    rc, out, err = runner.run([path, "--version"])
    major = parse_client_version(out) if rc == 0 else None
    if major is None:
        raise BackupError("cannot tell the version of %s (rc=%s): %s" % (path, rc, (err or out).strip()))
    return major


def check_can_dump(program, client, server, where):
    """pg_dump/pg_dumpall can dump servers of their own major version or older only."""
    if client < server:
        raise BackupError(
            "%s is PostgreSQL %s but the server %s runs %s: a client cannot dump a newer server; "
            "install the PostgreSQL %s client and set bin_dir"
            % (program, major_label(client), where, major_label(server), major_label(server))
        )


def check_level(method, level):
    if method in LEVELS and level is not None:
        low, high = LEVELS[method]
        if not low <= level <= high:
            raise BackupError("compression_level %s is out of range for %s (%d-%d)" % (level, method, low, high))


def plan_compression(requested, fmt, client, *, level=None, threads=0, which=shutil.which):
    """How to compress: pg_dump's own --compress, or a stream through a compressor.

    Returns dict(method, level, via ("pg_dump" or "stream"), ext, tool, dump_args, stream_args).
    ``client`` is the comparable major number of pg_dump (see parse_client_version).
    """
    method = requested
    if requested == "auto":
        if client >= NATIVE_SINCE["zstd"] or (fmt == "custom" and which("zstd")):
            method = "zstd"
        else:
            method = "gzip"
    if method == "none":
        base = ".dump" if fmt == "custom" else ".dir"
        return dict(method="none", level=None, via="pg_dump", ext=base, tool=None, dump_args=["-Z0"], stream_args=[])
    check_level(method, level)
    if level is None:
        level = DEFAULT_LEVELS[method]
    ext = ".dump" if fmt == "custom" else ".dir"
    if client >= NATIVE_SINCE[method]:
        if client >= 1600:
            args = ["--compress=%s:%d" % (method, level)]
        else:
            args = ["-Z%d" % level]
        return dict(method=method, level=level, via="pg_dump", ext=ext, tool=None, dump_args=args, stream_args=[])
    if fmt != "custom":
        raise BackupError(
            "compression %s with the directory format needs pg_dump 16 or later (this one is %s); "
            "use format custom, or compression gzip or none" % (method, major_label(client))
        )
    tool = which(method)
    if not tool:
        raise BackupError(
            "compression %s needs the %s program (pg_dump %s cannot compress with it); install the %s package"
            % (method, method, major_label(client), method)
        )
    if method == "zstd":
        stream = [tool, "-%d" % level, "-T%d" % (threads or 0), "-q", "-c"]
    else:
        stream = [tool, "-%d" % level, "-q", "-c"]
    return dict(
        method=method,
        level=level,
        via="stream",
        ext=ext + STREAM_EXT[method],
        tool=tool,
        dump_args=["-Z0"],
        stream_args=stream,
    )


def decompress_argv(method, path, which=shutil.which):
    """argv that writes a streamed backup's uncompressed bytes to stdout."""
    tool = which(method)
    if not tool:
        raise BackupError(
            "%s not found on PATH: it is needed to read %s; install the %s package" % (method, path, method)
        )
    return [tool, "-d", "-c", "-q", path]


def integrity_argv(method, path, which=shutil.which):
    """argv that checks a streamed backup's own checksums end to end."""
    tool = which(method)
    if not tool:
        raise BackupError(
            "%s not found on PATH: it is needed to read %s; install the %s package" % (method, path, method)
        )
    return [tool, "-t", "-q", path]


def module_work(action, deprecated_values=None):
    """The work of the backup modules for _module.run_module: ``action(params, runner, check_mode=...)``.

    The environment is scrubbed of inherited PG* variables, every command goes through a
    Runner that redacts the password, and a BackupError fails the task with its (redacted)
    message, its warnings and the partial result. ``deprecated_values`` (option to
    ``{former value: value}``) replaces former spellings first, with a deprecation warning.
    """

    def work(module):
        replace_deprecated_values(module, deprecated_values or {})
        scrub_process_environ()
        runner = Runner(secrets_of(module.params), module.run_command)
        try:
            return action(module.params, runner, check_mode=module.check_mode)
        except BackupError as exc:
            raise ModuleFailure(runner.redact(exc.msg), **exc.result) from None

    return work
