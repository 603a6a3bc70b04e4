"""A throwaway nginx for the health_check tests and benchmark, plus a server that never answers.

    with TestCA() as ca, NginxServer(ca) as web, SilentServer() as silent:
        web.url("/health")          # http://127.0.0.1:<port>/health -> {"status": "healthy", ...}
        web.https_port              # certificate for localhost/127.0.0.1 signed by the test CA, 90 days
        web.expired_port            # signed by the test CA, expired two days ago
        web.self_signed_port        # self-signed, 365 days
        silent.port                 # accepts TCP connections and never sends a byte

nginx runs from the Debian binary in a temporary prefix on free loopback ports, in the
foreground, and is stopped (TERM, then KILL) when the block ends. Certificates are made
with the ``cryptography`` package of the test virtualenv.
"""

import datetime
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.support.servers import ServerError, free_port

HEALTH_JSON = '{"status": "healthy", "checks": {"db": "ok", "cache": "ok"}, "version": "1.4.2"}'
DEGRADED_JSON = '{"status": "degraded", "checks": {"db": "ok", "cache": "down"}}'
DOWN_JSON = '{"status": "down"}'


def _x509():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    return x509, hashes, serialization, ec, NameOID


def make_cert(directory, name, days_valid, *, not_before_days=-1, ca_cert=None, ca_key=None, dns_names=None):
    """Write <name>.crt/.key for localhost and 127.0.0.1 (or only for ``dns_names``); signed by
    the CA files, or self-signed.

    The certificate is valid from ``not_before_days`` to ``not_before_days + days_valid`` days
    from now (negative numbers are in the past), so an expired one is easy to make.
    """
    import ipaddress

    x509, hashes, serialization, ec, NameOID = _x509()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns_names or ["localhost"])[0])])
    if dns_names:
        alt_names = [x509.DNSName(n) for n in dns_names]
    else:
        alt_names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if ca_cert:
        with open(ca_cert, "rb") as f:
            issuer_cert = x509.load_pem_x509_certificate(f.read())
        with open(ca_key, "rb") as f:
            issuer_key = serialization.load_pem_private_key(f.read(), password=None)
        issuer = issuer_cert.subject
    else:
        issuer_key, issuer = key, subject
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now + datetime.timedelta(days=not_before_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days_valid))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path = os.path.join(directory, name + ".crt")
    key_path = os.path.join(directory, name + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def _locations(silent_port):
    return """
        default_type application/json;
        location = /health   { return 200 '%s'; }
        location = /degraded { return 200 '%s'; }
        location = /down     { return 503 '%s'; }
        location = /redirect { return 302 /health; }
        location = /text     { default_type text/plain; return 200 'all systems go'; }
        location = /hang     { proxy_pass http://127.0.0.1:%d; proxy_read_timeout 120s; }
        location /           { default_type text/plain; return 200 'ok'; }
""" % (HEALTH_JSON, DEGRADED_JSON, DOWN_JSON, silent_port)


class SilentServer:
    """A TCP listener that never accepts: the kernel completes the handshake, no byte follows."""

    host = "127.0.0.1"

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((self.host, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.sock.close()


class _NginxProcess:
    """One nginx in the foreground under a throwaway prefix: start (retrying on free ports
    that were taken meanwhile), wait until every port answers, stop, remove."""

    host = "127.0.0.1"

    def _ports(self):
        raise NotImplementedError

    def _pick_ports(self):
        raise NotImplementedError

    def _start(self):
        last = ""
        for _attempt in range(5):
            self._pick_ports()
            self._write_conf()
            self.proc = subprocess.Popen(
                ["nginx", "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log")]
                + ["-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready(20):
                return self
            last = self._stop_and_log()
        shutil.rmtree(self.dir, ignore_errors=True)
        raise ServerError("nginx did not start: %s" % last)

    def _wait_ready(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                for port in self._ports():
                    socket.create_connection((self.host, port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _stop_and_log(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc and self.proc.stderr else ""
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        try:
            with open(os.path.join(self.dir, "error.log"), encoding="utf-8", errors="replace") as f:
                err += f.read()[-2000:]
        except OSError:
            pass
        return err

    def __exit__(self, *exc):
        try:
            self._stop_and_log()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class NginxServer(_NginxProcess):
    """nginx on free loopback ports: plain HTTP, HTTPS (good, expired, self-signed certificates)."""

    def __init__(self, ca, silent_port=None):
        self.ca = ca
        self.silent_port = silent_port
        self.proc = None

    def url(self, path="/", scheme="http"):
        port = self.port if scheme == "http" else self.https_port
        return "%s://%s:%d%s" % (scheme, self.host, port, path)

    @property
    def ca_cert(self):
        return self.ca.ca_cert

    def _write_conf(self):
        servers = []
        loc = _locations(self.silent_port or 9)
        servers.append("    server { listen %s:%d; %s }" % (self.host, self.port, loc))
        for port, cert, key in (
            (self.https_port, self.cert, self.key),
            (self.expired_port, self.expired_cert, self.expired_key),
            (self.self_signed_port, self.self_signed_cert, self.self_signed_key),
        ):
            servers.append(
                "    server { listen %s:%d ssl; ssl_certificate %s; ssl_certificate_key %s; %s }"
                % (self.host, port, cert, key, loc)
            )
        conf = """
worker_processes 1;
error_log %(dir)s/error.log warn;
pid %(dir)s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
%(servers)s
}
""" % dict(dir=self.dir, servers="\n".join(servers))
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(conf)

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bosun-nginx-")
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, "tmp"))
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.cert, self.key = make_cert(self.dir, "good", 90, ca_cert=self.ca.ca_cert, ca_key=self.ca.ca_key)
        self.expired_cert, self.expired_key = make_cert(
            self.dir, "expired", 30, not_before_days=-32, ca_cert=self.ca.ca_cert, ca_key=self.ca.ca_key
        )
        self.self_signed_cert, self.self_signed_key = make_cert(self.dir, "selfsigned", 365)
        return self._start()

    def _pick_ports(self):
        self.port, self.https_port, self.expired_port, self.self_signed_port = (free_port() for _i in range(4))

    def _ports(self):
        return [self.port, self.https_port, self.expired_port, self.self_signed_port]


# --- An nginx load balancer with an upstream membership file (nginx_upstream tests) --------

UPSTREAM_HEADER = (
    "# Ansible managed\n"
    '# Members of upstream "%s". Written by bosun.platform.nginx and by its\n'
    "# `upstream` entry point (drain: tasks_from: upstream), which reads the state line below.\n"
)


def membership_file(name, servers, down=()):
    """The membership file as nginx_upstream writes it (the nginx role calls the module)."""
    import json

    state = {"name": name, "servers": servers, "down": sorted(down)}
    lines = [UPSTREAM_HEADER % name + "# bosun-upstream-state: " + json.dumps(state, sort_keys=True)]
    for server in servers:
        address = "[%s]" % server["address"] if ":" in server["address"] else server["address"]
        line = "server %s:%s" % (address, server["port"])
        if int(server.get("weight", 1)) != 1:
            line += " weight=%s" % server["weight"]
        line += " max_fails=%s fail_timeout=%s" % (server["max_fails"], server["fail_timeout"])
        if server.get("backup"):
            line += " backup"
        drained = server["name"] in down
        line += "%s;  # %s%s" % (" down" if drained else "", server["name"], " (drained)" if drained else "")
        lines.append(line)
    return "\n".join(lines) + "\n"


class NamedBackend:
    """An HTTP server on ``address``:free port answering its name; /slow?seconds=N answers after N s."""

    def __init__(self, name, address="127.0.0.1"):
        self.name = name
        self.address = address

    def __enter__(self):
        import http.server
        import threading
        import urllib.parse

        name = self.name

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.path.startswith("/slow"):
                    time.sleep(min(float(query.get("seconds", ["1"])[0]), 30))
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.address, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class UpstreamNginx(_NginxProcess):
    """nginx proxying a free loopback port to an upstream whose members live in
    ``<conf_dir>/bosun/upstream-<name>.conf`` (included relative to nginx.conf, like the role's
    layout), so ``nginx -t`` on a copy of ``conf_dir`` and ``nginx -s reload`` both work.
    """

    def __init__(self, servers, name="app"):
        self.servers = servers
        self.name = name
        self.proc = None

    @property
    def membership(self):
        return os.path.join(self.dir, "bosun", "upstream-%s.conf" % self.name)

    def url(self, path="/"):
        return "http://%s:%d%s" % (self.host, self.port, path)

    def _write_conf(self):
        conf = """
worker_processes 1;
worker_shutdown_timeout 30s;
error_log %(dir)s/error.log warn;
pid %(dir)s/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    upstream %(name)s {
        include bosun/upstream-%(name)s.conf;
    }
    server {
        listen %(host)s:%(port)d;
        location / { proxy_pass http://%(name)s; proxy_read_timeout 60s; }
    }
}
""" % dict(dir=self.dir, name=self.name, host=self.host, port=self.port)
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(conf)

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bosun-nginx-lb-")
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, "tmp"))
        os.mkdir(os.path.join(self.dir, "bosun"))
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.membership, "w", encoding="utf-8") as f:
            f.write(membership_file(self.name, self.servers))
        return self._start()

    def _pick_ports(self):
        self.port = free_port()

    def _ports(self):
        return [self.port]


# --- Two origins for the redirect tests: which request headers arrive where ----------------


class RedirectNginx(_NginxProcess):
    """nginx on two free loopback ports (``port`` and ``other_port``), each logging the
    credentials-bearing headers of every request it receives, so a test sees what a client
    sent after a redirect.

        web.url("/same/x")        # 302 to http://127.0.0.1:<port>/echo/x (same origin)
        web.url("/port/x")        # 302 to http://127.0.0.1:<other_port>/echo/x (other port)
        web.url("/host/x")        # 302 to http://localhost:<port>/echo/x (other host name)
        web.url("/echo/x")        # 200 "echo"
        web.received("/echo/x")   # [{"port": ..., "host": ..., "authorization": ..., ...}, ...]
    """

    HEADERS = ("authorization", "proxy_authorization", "cookie", "x_api_key", "x_custom", "accept", "user_agent")

    def __init__(self):
        self.proc = None

    def url(self, path="/"):
        return "http://%s:%d%s" % (self.host, self.port, path)

    def received(self, uri):
        """What the servers logged for requests to ``uri``, oldest first ('' for a missing header)."""
        import json

        try:
            with open(os.path.join(self.dir, "headers.log"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        return [entry for entry in (json.loads(line) for line in lines if line) if entry["uri"] == uri]

    def _write_conf(self):
        fields = ", ".join('"%s": "$http_%s"' % (name, name) for name in self.HEADERS)
        log_format = '\'{"port": $server_port, "host": "$host", "uri": "$request_uri", %s}\'' % fields
        locations = """
        default_type text/plain;
        location /echo/ { return 200 'echo'; }
        location ~ ^/same/(.*)$ { return 302 http://127.0.0.1:%(port)d/echo/$1; }
        location ~ ^/port/(.*)$ { return 302 http://127.0.0.1:%(other)d/echo/$1; }
        location ~ ^/host/(.*)$ { return 302 http://localhost:%(port)d/echo/$1; }
""" % dict(port=self.port, other=self.other_port)
        conf = """
worker_processes 1;
error_log %(dir)s/error.log warn;
pid %(dir)s/nginx.pid;
events { worker_connections 256; }
http {
    log_format headers escape=json %(log_format)s;
    access_log %(dir)s/headers.log headers;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    server { listen %(host)s:%(port)d; %(locations)s }
    server { listen %(host)s:%(other)d; %(locations)s }
}
""" % dict(
            dir=self.dir,
            log_format=log_format,
            host=self.host,
            port=self.port,
            other=self.other_port,
            locations=locations,
        )
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(conf)

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bosun-nginx-redirect-")
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, "tmp"))
        self.conf = os.path.join(self.dir, "nginx.conf")
        return self._start()

    def _pick_ports(self):
        self.port = free_port()
        self.other_port = free_port()
        for _attempt in range(20):  # two different ports, or the origins would be one
            if self.other_port != self.port:
                break
            self.other_port = free_port()

    def _ports(self):
        return [self.port, self.other_port]
