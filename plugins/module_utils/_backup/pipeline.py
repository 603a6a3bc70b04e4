# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Programs connected by pipes without a shell, every exit code checked.

``pg_dump | zstd`` in a shell reports zstd's status only: a pg_dump killed half-way leaves
a well-formed, truncated compressed file and exit code 0. Here each stage's status is
collected and any failure (other than a reader that was told to stop early) fails the run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import signal
import subprocess
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

CHUNK = 1024 * 1024
PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python < 3.10 lacks the name


def _widen(pipe):
    """Ask for a 1 MiB pipe buffer (Linux): fewer context switches between the stages."""
    if fcntl is None:
        return
    try:
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (IOError, OSError):
        pass


def tail(text, lines=8):
    """The last non-empty lines of a program's stderr, on one line."""
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " / ".join(kept[-lines:])


def signal_name(num):
    try:
        return signal.Signals(num).name
    except ValueError:
        return "signal %d" % num


class TailHasher(threading.Thread):
    """sha256 of a file another process is appending to, computed while it is written.

    Reads what has been written so far, waits briefly at the end of the file, and after
    ``finish()`` (the writer has exited) reads the rest. Only for files written strictly
    in sequence (a compressor's stdout), never for one a program seeks back into.
    """

    def __init__(self, path, poll=0.02):
        super(TailHasher, self).__init__(name="tail-hasher")
        self.daemon = True
        self.path = path
        self.poll = poll
        self.digest = hashlib.sha256()
        self.size = 0
        self.error = None
        self._done = threading.Event()

    def run(self):
        try:
            with open(self.path, "rb") as f:
                while True:
                    chunk = f.read(CHUNK)
                    if chunk:
                        self.digest.update(chunk)
                        self.size += len(chunk)
                    elif self._done.is_set():
                        break
                    else:
                        time.sleep(self.poll)
        except (IOError, OSError) as exc:
            self.error = exc

    def finish(self):
        """Read to the end (call when the writer has exited); returns (hexdigest, size)."""
        self._done.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest(), self.size


class Stage:
    """One program of a pipeline.

    ``cut_short_ok``: the program may die of SIGPIPE when a later stage stops reading on
    purpose (``zstd -dc | pg_restore --list`` reads only the table of contents).
    ``pass_fds``: file descriptors the program inherits (e.g. a pipe it reads as /dev/fd/N).
    """

    def __init__(self, argv, env=None, name=None, cut_short_ok=False, pass_fds=()):
        self.argv = [str(a) for a in argv]
        self.env = env
        self.name = name or os.path.basename(self.argv[0])
        self.cut_short_ok = cut_short_ok
        self.pass_fds = tuple(pass_fds)


class PipelineResult:
    def __init__(self, stages, returncodes, stderrs, stdout):
        self.stages = stages
        self.returncodes = returncodes
        self.stderrs = stderrs
        self.stdout = stdout

    def failures(self):
        """One message per stage that failed, in pipeline order (empty when all is well)."""
        out = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            rc = self.returncodes[i]
            if rc == 0:
                continue
            if i < last and stage.cut_short_ok and rc == -signal.SIGPIPE and self.returncodes[last] == 0:
                continue
            if rc < 0:
                msg = "%s was killed by %s" % (stage.name, signal_name(-rc))
            else:
                msg = "%s failed (rc=%d)" % (stage.name, rc)
            detail = tail(self.stderrs[i])
            out.append("%s: %s" % (msg, detail) if detail else msg)
        return out

    @property
    def ok(self):
        return not self.failures()


def run_pipeline(stages, sink=None, runner=None, stdin=None, stdout=None):
    """Run ``stages`` connected by pipes and wait for all of them.

    The last stage's stdout goes to the open file ``stdout`` when given, else to
    ``sink(chunk)`` when given (which may raise, e.g. on a full disk: every process is then
    killed and the error re-raised), else it is returned in ``PipelineResult.stdout``.
    ``runner`` records the redacted command line and redacts stderr. Nothing here goes
    through a shell.
    """
    if runner is not None:
        runner.record(*[s.argv for s in stages])
    procs = []
    errfiles = []
    collected = []
    try:
        prev = stdin if stdin is not None else subprocess.DEVNULL
        for i, stage in enumerate(stages):
            err = tempfile.TemporaryFile()
            errfiles.append(err)
            last = i == len(stages) - 1
            target = stdout if (last and stdout is not None) else subprocess.PIPE
            proc = subprocess.Popen(
                stage.argv, stdin=prev, stdout=target, stderr=err, env=stage.env, pass_fds=stage.pass_fds
            )
            if procs:
                # Only the next stage holds the read end now: a reader that exits makes
                # the writer see EPIPE/SIGPIPE instead of blocking for ever.
                procs[-1].stdout.close()
            if proc.stdout is not None:
                _widen(proc.stdout)
            procs.append(proc)
            prev = proc.stdout
        out = procs[-1].stdout
        while out is not None:
            chunk = out.read(CHUNK)
            if not chunk:
                out.close()
                break
            if sink is not None:
                sink(chunk)
            else:
                collected.append(chunk)
        returncodes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
            if p.stdout and not p.stdout.closed:
                p.stdout.close()
        for f in errfiles:
            f.close()
        raise
    stderrs = []
    for f in errfiles:
        f.seek(0)
        text = f.read().decode("utf-8", "replace")
        f.close()
        stderrs.append(runner.redact(text) if runner is not None else text)
    captured = b"".join(collected) if sink is None and stdout is None else None
    return PipelineResult(stages, returncodes, stderrs, captured)
