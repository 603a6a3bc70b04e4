# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every check type shares: the probe it writes its measurements into, the
exception that ends a check with a verdict, causes of network errors in plain words,
and a bounded subprocess runner.

A check type is a module with ``TYPE``, ``OPTIONS`` (argument spec of its sub-dict),
``METRICS`` (ordered: name -> status.Threshold, the first is the check's primary value),
optionally ``REQUIRED`` (the sub-dict must be given), ``target(options)`` (a default name)
and ``validate(options)`` (a list of problems), and ``run(probe, options)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import signal
import socket
import ssl
import subprocess
import time

from ansible_collections.bosun.platform.plugins.module_utils._checks.status import CRIT, OK, classify


class CheckFailed(Exception):
    """Ends a check: ``status`` (crit unless said otherwise) because of ``message``."""

    def __init__(self, message, status=CRIT):
        super(CheckFailed, self).__init__(message)
        self.message = message
        self.status = status


class Probe:
    """Where a check records what it measured.

    ``timeout`` is the check's budget in seconds; ``deadline`` the monotonic time by which it
    must be done. ``thresholds`` maps each metric to its effective status.Threshold.
    """

    def __init__(self, name, timeout, thresholds, clock=time.monotonic):
        self.name = name
        self.timeout = float(timeout)
        self.thresholds = thresholds
        self.clock = clock
        self.started = clock()
        self.deadline = self.started + self.timeout
        self.metrics = []
        self.message = None

    def remaining(self, floor=0.05):
        """Seconds left of the budget (at least ``floor`` so a last step can report)."""
        return max(floor, self.deadline - self.clock())

    def metric(self, name, value, text, *, status=None, headline=True, unit=None):
        """Record a measurement; classify it against its threshold unless ``status`` is given."""
        threshold = self.thresholds.get(name)
        if status is None:
            status = classify(value, threshold)
        if unit is None:
            unit = threshold.unit if threshold is not None else ""
        entry = dict(name=name, value=value, unit=unit, status=status, text=text, headline=headline)
        self.metrics.append(entry)
        return entry

    def fail(self, message, status=CRIT):
        raise CheckFailed(message, status)


def rounded(value, digits=1):
    """Round for display and results; ints stay ints."""
    if value is None or isinstance(value, int):
        return value
    value = round(float(value), digits)
    return int(value) if value == int(value) and digits == 0 else value


def fmt_num(value, digits=1):
    """'45', '45.5' (no trailing .0)."""
    if value is None:
        return "n/a"
    value = round(float(value), digits)
    return ("%d" % value) if value == int(value) else ("%.*f" % (digits, value))


def fmt_bytes(value):
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return "%s %s" % (fmt_num(value), unit)
        value /= 1024.0
    return "%s B" % value  # pragma: no cover


def fmt_duration(seconds):
    """'40 s', '12 min', '3.5 h', '2 d'."""
    seconds = float(seconds)
    if seconds < 120:
        return "%s s" % fmt_num(seconds, 0)
    if seconds < 7200:
        return "%s min" % fmt_num(seconds / 60.0, 0)
    if seconds < 172800:
        return "%s h" % fmt_num(seconds / 3600.0)
    return "%s d" % fmt_num(seconds / 86400.0)


def cause(exc, timeout=None):
    """A network or TLS error in plain words: refused, timed out, DNS, TLS ..."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate verify failed: %s" % (exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return "TLS error: %s" % (exc.reason or exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out after %s s" % fmt_num(timeout) if timeout else "timed out"
    if isinstance(exc, socket.gaierror):
        return "DNS lookup failed (%s)" % (exc.strerror or exc)
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to host"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return "%s: %s" % (type(exc).__name__, exc)


def classify_text(text, timeout=None):
    """The cause named in a client library's error text (psycopg2, redis-py)."""
    low = (text or "").lower()
    for needle, what in (
        ("password authentication failed", "authentication failed"),
        ("wrongpass", "authentication failed"),
        ("invalid username-password", "authentication failed"),
        ("invalid password", "authentication failed"),
        ("authentication required", "authentication required"),
        ("noauth", "authentication required"),
        ("connection refused", "connection refused"),
        ("timeout expired", "timed out"),
        ("timed out", "timed out"),
        ("timeout", "timed out"),
        ("could not translate host name", "DNS lookup failed"),
        ("name or service not known", "DNS lookup failed"),
        ("temporary failure in name resolution", "DNS lookup failed"),
        ("certificate verify failed", "TLS certificate verify failed"),
        ("ssl", "TLS error"),
        ("no such file or directory", "socket not found"),
        ("does not exist", "does not exist"),
    ):
        if needle in low:
            if what == "timed out" and timeout:
                return "timed out after %s s" % fmt_num(timeout)
            return what
    return "error"


def run_argv(argv, timeout, env=None):
    """Run ``argv`` (a list, never a shell string) with a hard timeout.

    Returns (rc, stdout, stderr). The process gets its own session so that on timeout the
    whole group is killed. Raises CheckFailed for a missing program or a timeout.

    Not AnsibleModule.run_command: that has no timeout and changes the working directory
    of the whole process, and checks run concurrently in threads.
    """
    run_env = dict(os.environ if env is None else env)
    run_env.update(LC_ALL="C", LANG="C")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=run_env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise CheckFailed("command not found: %s" % argv[0]) from None
        raise CheckFailed("cannot run %s: %s" % (argv[0], cause(exc))) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise CheckFailed("%s timed out after %s s" % (os.path.basename(argv[0]), fmt_num(timeout))) from None
    return (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def ca_problems(prefix, options):
    """Problems with the CA options of a TLS-speaking check (``prefix``: http, tls_cert).

    ``ca_cert`` (a file) and ``ca_cert_data`` (PEM text) are exclusive; PEM text must hold a
    certificate. The PEM itself is never quoted back.
    """
    if options.get("ca_cert") and options.get("ca_cert_data"):
        return ["%s.ca_cert and %s.ca_cert_data are mutually exclusive" % (prefix, prefix)]
    if options.get("ca_cert_data"):
        try:
            verifying_context(None, options["ca_cert_data"])
        except (ssl.SSLError, ValueError, TypeError) as exc:
            return ["%s.ca_cert_data holds no usable PEM CA certificate (%s)" % (prefix, type(exc).__name__)]
    return []


def verifying_context(ca_cert=None, ca_cert_data=None):
    """An SSLContext that verifies the chain and the host name: against the CA file
    ``ca_cert`` or the PEM text ``ca_cert_data`` when one is given (and only that CA),
    else against the system's trust store."""
    if ca_cert_data:
        return ssl.create_default_context(cadata=ca_cert_data)
    return ssl.create_default_context(cafile=ca_cert or None)


def last_line(text, limit=200):
    """The last non-empty line of ``text``, shortened."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


__all__ = ["OK", "CRIT", "CheckFailed", "Probe", "cause", "classify_text", "run_argv"]
