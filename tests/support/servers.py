"""Throwaway PostgreSQL and Redis servers for integration tests and benchmarks.

Each server runs from the distribution's binaries in a temporary directory, on a free
loopback port, as an unprivileged user, with authentication and TLS switched on the way
production has them. Nothing here reads or writes a fixed port or a system data directory.

    with TestCA() as ca, PostgresServer(ca) as pg, RedisServer(ca) as rds:
        pg.psql("SELECT 1")
        rds.cli("PING")
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# Passwords with the characters that break naive quoting: quote, dollar, space, backslash.
PG_PASSWORD = "pg pa'ss$word\\x " + secrets.token_hex(4)
PG_APP_PASSWORD = "app 'pw' $HOME " + secrets.token_hex(4)
REDIS_PASSWORD = "redis pa'ss$ " + secrets.token_hex(4)
REDIS_ACL_USER = "bosun_ops"
REDIS_ACL_PASSWORD = "acl 'pw' $x " + secrets.token_hex(4)


class ServerError(RuntimeError):
    """A test server could not be started."""


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_user(name):
    """The unprivileged account a server runs as: ``name`` when we are root, else us."""
    if os.getuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return pwd.getpwnam("nobody")


def _demote(user):
    if user is None:
        return None

    def preexec():
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)

    return preexec


def _chown_tree(path, user):
    if user is None:
        return
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)


def _run(argv, user=None, env=None, timeout=120, input_text=None):
    proc = subprocess.run(
        argv,
        preexec_fn=_demote(user),
        env=env,
        timeout=timeout,
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError("%s failed (rc=%s): %s" % (argv[0], proc.returncode, proc.stderr.strip()))
    return proc


class TestCA:
    """A throwaway certificate authority and one server certificate for localhost."""

    __test__ = False  # not a test class

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bosun-ca-")
        os.chmod(self.dir, 0o755)
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "server.key")
        self.cert = os.path.join(self.dir, "server.crt")
        csr = os.path.join(self.dir, "server.csr")
        ext = os.path.join(self.dir, "server.ext")
        with open(ext, "w", encoding="utf-8") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
        _run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bosun test CA",
                "-keyout",
                self.ca_key,
                "-out",
                self.ca_cert,
            ]
        )
        _run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                self.key,
                "-out",
                csr,
            ]
        )
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                self.ca_cert,
                "-CAkey",
                self.ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                self.cert,
            ]
        )
        return self

    def copy_for(self, directory, user):
        """Copy the server key pair into ``directory``, readable only by ``user``."""
        key = os.path.join(directory, "server.key")
        cert = os.path.join(directory, "server.crt")
        shutil.copy(self.key, key)
        shutil.copy(self.cert, cert)
        os.chmod(key, 0o600)
        if user is not None:
            os.chown(key, user.pw_uid, user.pw_gid)
            os.chown(cert, user.pw_uid, user.pw_gid)
        return cert, key

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bindir():
    """The newest installed PostgreSQL server's bin directory (Debian layout)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    if not candidates:
        found = shutil.which("initdb")
        if not found:
            raise ServerError("no PostgreSQL server binaries found (install the postgresql package)")
        return os.path.dirname(found)
    return os.path.dirname(candidates[-1])


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory.

    Superuser ``postgres`` and an ordinary login role ``app`` (owner of database ``app``),
    both with scram-sha-256 passwords; TLS on with the test CA's certificate; the unix
    socket in the data directory's parent.
    """

    user = "postgres"
    app_user = "app"
    app_db = "app"

    def __init__(self, ca, settings=None, replication=False):
        self.ca = ca
        self.settings = dict(settings or {})
        # replication=True also lets the superuser open replication connections
        # (pg_basebackup) over the socket and loopback, with its password.
        self.replication = replication
        self.password = PG_PASSWORD
        self.app_password = PG_APP_PASSWORD
        self.host = "127.0.0.1"
        self.bindir = postgres_bindir()
        self.version = int(self.bindir.split("/")[-2]) if self.bindir.startswith("/usr/lib/postgresql/") else None
        self._os_user = _service_user("postgres")

    # connection details -------------------------------------------------------------
    @property
    def ca_cert(self):
        return self.ca.ca_cert

    def env(self, password=None, **extra):
        """Environment for libpq clients: the password never goes into argv."""
        env = dict(os.environ)
        env.update(
            PGPASSWORD=self.password if password is None else password,
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGCONNECT_TIMEOUT="10",
        )
        env.update(extra)
        return env

    def conn_args(self, **over):
        """Module connection options (bosun.platform postgres family)."""
        args = dict(login_host=self.host, login_port=self.port, login_user=self.user, login_password=self.password)
        args.update(over)
        return args

    def psql(self, sql, db="postgres", user=None, password=None, check=True):
        """Run SQL through psql (ON_ERROR_STOP) and return its unaligned output."""
        env = self.env(password=password)
        if user:
            env["PGUSER"] = user
        proc = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ServerError("psql failed: %s" % proc.stderr.strip())
        return proc.stdout.strip() if check else proc

    # lifecycle -----------------------------------------------------------------------
    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="bosun-pg-")
        os.chmod(self.base, 0o755)
        self.datadir = os.path.join(self.base, "data")
        self.socket_dir = os.path.join(self.base, "run")
        os.mkdir(self.socket_dir)
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w", encoding="utf-8") as f:
            f.write(self.password + "\n")
        _chown_tree(self.base, self._os_user)
        try:
            _run(
                [
                    os.path.join(self.bindir, "initdb"),
                    "-D",
                    self.datadir,
                    "-U",
                    self.user,
                    "--pwfile",
                    pwfile,
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                user=self._os_user,
            )
        finally:
            os.unlink(pwfile)
        cert, key = self.ca.copy_for(self.base, self._os_user)
        for _attempt in range(5):
            self.port = free_port()
            conf = {
                "port": self.port,
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": "'%s'" % self.socket_dir,
                "ssl": "on",
                "ssl_cert_file": "'%s'" % cert,
                "ssl_key_file": "'%s'" % key,
                "password_encryption": "'scram-sha-256'",
                "shared_preload_libraries": "'pg_stat_statements'",
                "fsync": "off",
                "max_connections": 40,
                "logging_collector": "off",
            }
            conf.update(self.settings)
            with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a", encoding="utf-8") as f:
                for name, value in conf.items():
                    f.write("%s = %s\n" % (name, value))
            with open(os.path.join(self.datadir, "pg_hba.conf"), "w", encoding="utf-8") as f:
                f.write(
                    "local all all scram-sha-256\n"
                    "hostssl all all 127.0.0.1/32 scram-sha-256\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n"
                )
                if self.replication:
                    f.write(
                        "local replication %s scram-sha-256\n"
                        "hostssl replication %s 127.0.0.1/32 scram-sha-256\n"
                        "host replication %s 127.0.0.1/32 scram-sha-256\n" % (self.user, self.user, self.user)
                    )
            try:
                _run(
                    [
                        os.path.join(self.bindir, "pg_ctl"),
                        "-D",
                        self.datadir,
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        os.path.join(self.base, "server.log"),
                        "start",
                    ],
                    user=self._os_user,
                )
                break
            except ServerError:
                if "could not bind" not in self.log_tail():
                    raise ServerError("PostgreSQL did not start: %s" % self.log_tail()) from None
        else:
            raise ServerError("PostgreSQL found no free port: %s" % self.log_tail())
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (self.app_user, self.app_password.replace("'", "''")))
        self.psql("CREATE DATABASE %s OWNER %s" % (self.app_db, self.app_user))
        return self

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.base, "server.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        subprocess.run(
            [os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "stop"],
            preexec_fn=_demote(self._os_user),
            capture_output=True,
            timeout=60,
            check=False,
        )

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A Redis server in a temporary directory.

    The default user needs ``password``; an ACL user ``bosun_ops`` has its own password.
    Plain TCP on ``port`` and TLS on ``tls_port``, both on 127.0.0.1; a unix socket too.
    """

    def __init__(self, ca, extra_config=None):
        self.ca = ca
        self.extra_config = list(extra_config or [])
        self.password = REDIS_PASSWORD
        self.acl_user = REDIS_ACL_USER
        self.acl_password = REDIS_ACL_PASSWORD
        self.host = "127.0.0.1"
        self._os_user = _service_user("redis")
        self.proc = None

    @property
    def ca_cert(self):
        return self.ca.ca_cert

    def conn_args(self, **over):
        """Module connection options (bosun.platform redis family)."""
        args = dict(login_host=self.host, login_port=self.port, login_password=self.password)
        args.update(over)
        return args

    def client(self, **over):
        """A redis-py client as the default user."""
        import redis  # imported late: only the tests that use Redis need the package

        kwargs = dict(host=self.host, port=self.port, password=self.password, socket_timeout=30, decode_responses=False)
        kwargs.update(over)
        return redis.Redis(**kwargs)

    def cli(self, *args):
        """Run redis-cli with the password in the environment, not in argv."""
        env = dict(os.environ, REDISCLI_AUTH=self.password)
        proc = subprocess.run(
            ["redis-cli", "-h", self.host, "-p", str(self.port), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return proc.stdout.strip()

    def _acl_line(self):
        # ACL file syntax: passwords are given as hashes, so no quoting is involved.
        import hashlib

        digest = hashlib.sha256(self.acl_password.encode()).hexdigest()
        return "user %s on #%s ~* &* +@all\n" % (self.acl_user, digest)

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="bosun-redis-")
        os.chmod(self.base, 0o755)
        cert, key = self.ca.copy_for(self.base, self._os_user)
        acl_file = os.path.join(self.base, "users.acl")
        default_digest = __import__("hashlib").sha256(self.password.encode()).hexdigest()
        with open(acl_file, "w", encoding="utf-8") as f:
            f.write("user default on #%s ~* &* +@all\n" % default_digest)
            f.write(self._acl_line())
        self.socket = os.path.join(self.base, "redis.sock")
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            self.tls_port = free_port()
            conf_path = os.path.join(self.base, "redis.conf")
            with open(conf_path, "w", encoding="utf-8") as f:
                f.write(
                    "\n".join(
                        [
                            "bind 127.0.0.1",
                            "port %d" % self.port,
                            "tls-port %d" % self.tls_port,
                            "tls-cert-file %s" % cert,
                            "tls-key-file %s" % key,
                            "tls-ca-cert-file %s" % self.ca.ca_cert,
                            "tls-auth-clients optional",
                            "unixsocket %s" % self.socket,
                            "unixsocketperm 777",
                            "dir %s" % self.base,
                            "aclfile %s" % acl_file,
                            "save ''",
                            "appendonly no",
                            "daemonize no",
                            "logfile %s" % os.path.join(self.base, "redis.log"),
                            *self.extra_config,
                        ]
                    )
                    + "\n"
                )
            _chown_tree(self.base, self._os_user)
            self.proc = subprocess.Popen(
                ["redis-server", conf_path],
                preexec_fn=_demote(self._os_user),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready(30):
                return self
            last_error = self._log_tail()
            self._kill()
        raise ServerError("Redis did not start: %s" % last_error)

    def _wait_ready(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    cmd = self.password.encode()
                    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(cmd), cmd))
                    reply = b""
                    while b"PONG" not in reply and len(reply) < 200:
                        chunk = sock.recv(100)
                        if not chunk:
                            break
                        reply += chunk
                    if b"PONG" in reply:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def _log_tail(self):
        try:
            with open(os.path.join(self.base, "redis.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __exit__(self, *exc):
        try:
            self._kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
