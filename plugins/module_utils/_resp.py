# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small RESP2 connection for bulk key work, built from the shared redis options.

redis-py without hiredis parses every reply element in Python, which makes a pipelined
SCAN + UNLINK loop client-bound (benchmarks/redis_flush.py: 3.65 s for 1 M keys where the
server's own work is 1.95 s). This connection reads SCAN replies in place and hands the key list straight back to the
server as an UNLINK command: the bulk strings of a SCAN reply are byte for byte the
arguments of a command, so no key is decoded or re-encoded.

It takes the same options as ``_redis.connect()`` (through ``_redis.client_kwargs()``, so
TLS, ACL user, database and timeouts mean the same thing) and needs only the standard
library.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import ssl

from ansible_collections.bosun.platform.plugins.module_utils._io import redact
from ansible_collections.bosun.platform.plugins.module_utils._redis import (
    RedisError,
    client_kwargs,
    describe,
    secrets_of,
)

CRLF = b"\r\n"
RECV_SIZE = 256 * 1024


class ReplyError(RedisError):
    """The server answered a command with an error reply (``-ERR ...``)."""

    def __init__(self, message):
        super(ReplyError, self).__init__(message)
        self.message = message
        self.code = message.split(" ", 1)[0] if message else ""


class ConnectionLost(RedisError):
    """The connection broke or timed out; the message says how."""


def _to_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        raise TypeError("a bool is not a Redis argument")
    if isinstance(value, int):
        return str(value).encode("ascii")
    return str(value).encode("utf-8")


def encode_command(*args):
    """RESP encoding of one command (a multi-bulk array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _to_bytes(arg)
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(CRLF)
    return b"".join(parts)


def ssl_context(kw):
    """The TLS context for ``client_kwargs()``: the same meaning of the options as redis-py's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verify = kw.get("ssl_cert_reqs") != ssl.CERT_NONE
    context.check_hostname = bool(kw.get("ssl_check_hostname")) and verify
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    try:
        if verify and kw.get("ssl_ca_certs"):
            step = "ca_cert %s" % kw["ssl_ca_certs"]
            context.load_verify_locations(cafile=kw["ssl_ca_certs"])
        elif verify:
            step = "the system's CA certificates"
            context.load_default_certs()
        if kw.get("ssl_certfile"):
            step = "client_cert %s" % kw["ssl_certfile"]
            if kw.get("ssl_keyfile"):
                step += " with client_key %s" % kw["ssl_keyfile"]
            context.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
    except (OSError, ValueError) as exc:
        raise ValueError("%s: %s" % (step, _os_reason(exc))) from None
    return context


class RespConnection:
    """One connection, blocking, with an input buffer that SCAN replies are read from in place."""

    def __init__(self, sock, where):
        self.sock = sock
        self.where = where
        self._buf = bytearray()
        self._pos = 0

    # connection ---------------------------------------------------------------------
    @classmethod
    def open(cls, params, client_name=None):
        """Connect, authenticate and select the database; raise RedisError, secret-free."""
        kw = client_kwargs(params)
        where = describe(params)
        as_user = " as %s" % params["login_user"] if params.get("login_user") else ""
        secrets = secrets_of(params)
        context = None
        if kw.get("ssl") and not kw.get("unix_socket_path"):
            try:
                context = ssl_context(kw)
            except (OSError, ValueError) as exc:
                raise RedisError(
                    "cannot set up TLS for Redis at %s: %s" % (where, redact(_os_reason(exc), secrets))
                ) from None
        sock = None
        try:
            if kw.get("unix_socket_path"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(kw.get("socket_connect_timeout"))
                sock.connect(kw["unix_socket_path"])
            else:
                sock = socket.create_connection((kw["host"], kw["port"]), timeout=kw.get("socket_connect_timeout"))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if context is not None:
                    sock = context.wrap_socket(sock, server_hostname=kw["host"])
            sock.settimeout(kw.get("socket_timeout"))
        except (OSError, ValueError) as exc:
            if sock is not None:
                sock.close()
            raise RedisError(
                "cannot connect to Redis at %s%s: %s" % (where, as_user, redact(_os_reason(exc), secrets))
            ) from None
        conn = cls(sock, where)
        try:
            if kw.get("username") or kw.get("password"):
                auth = ["AUTH"]
                if kw.get("username"):
                    auth.append(kw["username"])
                auth.append(kw.get("password") or "")
                try:
                    conn.command(*auth)
                except ReplyError as exc:
                    raise RedisError(
                        "cannot authenticate to Redis at %s%s: %s" % (where, as_user, redact(exc.message, secrets))
                    ) from None
            if kw.get("db"):
                try:
                    conn.command("SELECT", kw["db"])
                except ReplyError as exc:
                    raise RedisError(
                        "cannot select database %s on Redis at %s%s: %s"
                        % (kw["db"], where, as_user, redact(exc.message, secrets))
                    ) from None
            if client_name:
                try:
                    conn.command("CLIENT", "SETNAME", client_name)
                except ReplyError:
                    pass  # a maintenance user need not be allowed CLIENT; the name is a courtesy
        except ConnectionLost as exc:
            conn.close()
            raise RedisError(
                "cannot connect to Redis at %s%s: %s" % (where, as_user, redact(str(exc), secrets))
            ) from None
        except RedisError:
            conn.close()
            raise
        return conn

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # raw I/O -----------------------------------------------------------------------
    def send(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise ConnectionLost("no progress sending to the server within the socket timeout") from None
        except OSError as exc:
            raise ConnectionLost(_os_reason(exc)) from None

    def _fill(self):
        """Append what the socket has to the buffer; offsets into the buffer stay valid."""
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            raise ConnectionLost("no reply within the socket timeout") from None
        except OSError as exc:
            raise ConnectionLost(_os_reason(exc)) from None
        if not chunk:
            raise ConnectionLost("the server closed the connection")
        self._buf.extend(chunk)

    def _compact(self):
        """Drop consumed input; only between replies, so that no offset is held."""
        if self._pos == len(self._buf):
            if self._pos:
                self._buf = bytearray()
                self._pos = 0
        elif self._pos > RECV_SIZE:
            del self._buf[: self._pos]
            self._pos = 0

    def _line(self):
        while True:
            end = self._buf.find(CRLF, self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 2
                return line
            self._fill()

    def _take(self, size):
        while len(self._buf) - self._pos < size + 2:
            self._fill()
        data = bytes(self._buf[self._pos : self._pos + size])
        self._pos += size + 2
        return data

    # replies -----------------------------------------------------------------------
    def read_reply(self):
        """One reply, parsed: bytes, int, None or list; an error reply raises ReplyError."""
        self._compact()
        return self._reply()

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._take(size)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _i in range(size)]
        raise ConnectionLost("unexpected reply from the server: %r" % line[:40])

    def command(self, *args):
        self.send(encode_command(*args))
        return self.read_reply()

    def read_scan_head(self):
        """Read the start of a SCAN reply: ``(cursor, number of keys that follow)``.

        The caller must then call read_scan_keys() before reading anything else.
        """
        self._compact()
        line = self._line()
        if line[:1] == b"-":
            raise ReplyError(line[1:].decode("utf-8", "replace"))
        if line != b"*2":
            raise ConnectionLost("unexpected SCAN reply from the server: %r" % line[:40])
        header = self._line()
        cursor = self._take(int(header[1:]))
        header = self._line()
        if header[:1] != b"*":
            raise ConnectionLost("unexpected SCAN reply from the server: %r" % header[:40])
        return cursor, int(header[1:])

    def read_scan_keys(self, count, keys=None):
        """Read the ``count`` keys of a SCAN reply in place and return them as RESP.

        The result is the bulk strings exactly as the server sent them, ready to follow a
        command name. With ``keys`` (a list), the key names are appended to it as bytes.
        """
        buf = self._buf
        start = pos = self._pos
        known = len(buf)
        done = 0
        while done < count:
            eol = buf.find(CRLF, pos)
            if eol < 0:
                self._fill()
                known = len(buf)
                continue
            end = eol + 4 + int(buf[pos + 1 : eol])
            if end > known:
                self._fill()
                known = len(buf)
                continue
            if keys is not None:
                keys.append(bytes(buf[eol + 2 : end - 2]))
            pos = end
            done += 1
        self._pos = pos
        return buf[start:pos]


def _os_reason(exc):
    """An OSError's reason without the noise (``[Errno 111] Connection refused``)."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    if getattr(exc, "strerror", None):
        where = ": %s" % exc.filename if getattr(exc, "filename", None) else ""
        return "%s (errno %s)%s" % (exc.strerror, exc.errno, where)
    return str(exc) or exc.__class__.__name__
