"""A throwaway Elasticsearch node for integration tests.

The distribution is Elastic's integration-test zip from Maven Central, fetched once with
Maven into the local Maven repository (~/.m2, the download cache, keyed by version) and
unpacked once into a cache directory outside the checkout (a clone may sit in a folder
only root can read, and the service user must never read the checkout). Each server then
copies that tree into a fresh temporary directory owned by an unprivileged user (the node
refuses to run as root) and runs it on Debian's OpenJDK 17, the way production has it:

- one node (``discovery.type: single-node``) on 127.0.0.1, a free HTTP and transport port;
- TLS on HTTP with a certificate from the suite's TestCA;
- the ``elastic`` user's bootstrap password in the keystore, a file-realm user
  ``bosun_monitor`` (cluster privilege ``monitor`` only); both passwords are given to the
  tools on standard input, never in argv;
- 256 MB heap; started with ``bin/elasticsearch -d -p PIDFILE`` (it returns once the node
  is up) and stopped with SIGTERM on exit.

    with TestCA() as ca, ElasticsearchServer(ca) as es:
        es.request("GET", "/_cluster/health")
"""

import base64
import glob
import hashlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

from tests.support.servers import ServerError, _chown_tree, _demote, _service_user, free_port

ES_VERSION = os.environ.get("BOSUN_ES_VERSION", "8.19.21")
ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:%s:zip"

# Passwords with the characters that break naive quoting: quote, dollar, space.
ES_PASSWORD = "es pa'ss$ " + secrets.token_hex(4)
ES_MONITOR_USER = "bosun_monitor"
ES_MONITOR_PASSWORD = "mon 'pw' $x " + secrets.token_hex(4)

ROLES_YML = """\
bosun_monitor:
  cluster: [monitor]
"""


def m2_repository():
    """The local Maven repository (Maven's default unless BOSUN_M2_REPO says otherwise)."""
    return os.environ.get("BOSUN_M2_REPO") or os.path.expanduser("~/.m2/repository")


def distribution_zip(version=ES_VERSION):
    """Path of the integration-test zip, fetched with Maven when the local repository lacks it."""
    path = os.path.join(
        m2_repository(),
        "org/elasticsearch/distribution/integ-test-zip/elasticsearch",
        version,
        "elasticsearch-%s.zip" % version,
    )
    if not os.path.exists(path):
        if not shutil.which("mvn"):
            raise ServerError(
                "Elasticsearch %s is not in %s and mvn is not installed (apt-get install maven)"
                % (version, m2_repository())
            )
        argv = ["mvn", "-q", "-B", "dependency:get", "-Dartifact=" + ARTIFACT % version, "-Dtransitive=false"]
        if os.environ.get("BOSUN_M2_REPO"):
            argv.append("-Dmaven.repo.local=" + m2_repository())
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0 or not os.path.exists(path):
            raise ServerError(
                "mvn could not fetch Elasticsearch %s: %s" % (version, (proc.stdout + proc.stderr)[-2000:])
            )
    sha1_file = path + ".sha1"
    if os.path.exists(sha1_file):
        with open(sha1_file, encoding="ascii") as f:
            expected = f.read().split()[0].strip().lower()
        digest = hashlib.sha1()  # noqa: S324 - Maven's own checksum of the artifact
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise ServerError("%s does not match its Maven checksum: delete it to fetch it again" % path)
    return path


def cache_root():
    """Where unpacked distributions are kept: outside the checkout, readable by the service user."""
    if os.environ.get("BOSUN_ES_CACHE_DIR"):
        return os.environ["BOSUN_ES_CACHE_DIR"]
    if os.getuid() == 0:
        return "/var/cache/bosun-elasticsearch"
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bosun-elasticsearch")


def _unzip(archive, dest):
    """Unpack ``archive`` into ``dest`` keeping the file modes (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = os.path.realpath(os.path.join(dest, info.filename))
            if not target.startswith(os.path.realpath(dest) + os.sep):
                raise ServerError("%s holds a path outside the archive: %s" % (archive, info.filename))
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def unpacked_home(version=ES_VERSION):
    """The unpacked distribution (cache_root()/<version>/elasticsearch-<version>), made once."""
    home = os.path.join(cache_root(), version, "elasticsearch-%s" % version)
    if os.path.exists(os.path.join(home, "bin", "elasticsearch")):
        return home
    archive = distribution_zip(version)
    parent = os.path.dirname(home)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    for path in (cache_root(), parent):
        os.chmod(path, 0o755)
    work = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        _unzip(archive, work)
        os.chmod(work, 0o755)
        try:
            os.rename(os.path.join(work, "elasticsearch-%s" % version), home)
        except OSError:
            if not os.path.exists(os.path.join(home, "bin", "elasticsearch")):
                raise  # not a concurrent unpack that won the race
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return home


def java_home():
    """A Java 17 for Elasticsearch 8 (the zip has no JDK): ES_JAVA_HOME, else Debian's OpenJDK 17."""
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    found = sorted(glob.glob("/usr/lib/jvm/java-17-openjdk-*/bin/java"))
    if found:
        return os.path.dirname(os.path.dirname(found[0]))
    raise ServerError("no Java 17 found: apt-get install openjdk-17-jre-headless (or set ES_JAVA_HOME)")


class ElasticsearchServer:
    """One Elasticsearch node in a temporary directory (see the module docstring).

    ``start_seconds``: how long ``bin/elasticsearch -d`` took to return with the node up.
    """

    host = "127.0.0.1"
    user = "elastic"
    monitor_user = ES_MONITOR_USER

    def __init__(self, ca, settings=None, heap="256m", version=ES_VERSION):
        self.ca = ca
        self.settings = dict(settings or {})
        self.heap = heap
        self.version = version
        self.password = ES_PASSWORD
        self.monitor_password = ES_MONITOR_PASSWORD
        self._os_user = _service_user("elasticsearch")
        self.base = None
        self.port = None
        self.start_seconds = None
        self._context = None

    # connection details -------------------------------------------------------------
    @property
    def ca_cert(self):
        return self.ca.ca_cert

    @property
    def url(self):
        return "https://%s:%d" % (self.host, self.port)

    def conn_args(self, **over):
        """Options of a health_check ``elasticsearch`` sub-dict, as the monitoring user."""
        args = dict(
            url="https://localhost:%d" % self.port,
            login_user=self.monitor_user,
            login_password=self.monitor_password,
            ca_cert=self.ca_cert,
        )
        args.update(over)
        return args

    def request(self, method, path, body=None, user=None, password=None, check=True, timeout=60):
        """One HTTPS request (verified against the test CA) as ``user`` (default the superuser
        ``elastic`` with the bootstrap password); returns (status, parsed JSON or text)."""
        if user is None:
            user, password = self.user, self.password
        token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        data = None
        headers = {"Authorization": "Basic " + token}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)  # noqa: S310 - https to the test node
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.ca_cert)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self._context)
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        if check and status >= 300:
            raise ServerError("%s %s: HTTP %s %s" % (method, path, status, payload))
        return status, payload

    def health(self, **params):
        query = "&".join("%s=%s" % item for item in sorted(params.items()))
        return self.request("GET", "/_cluster/health" + ("?" + query if query else ""))[1]

    # lifecycle -----------------------------------------------------------------------
    def _env(self):
        env = dict(os.environ)
        for name in ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "ES_JAVA_OPTS"):
            env.pop(name, None)
        env.update(
            ES_JAVA_HOME=java_home(),
            ES_PATH_CONF=self.conf,
            ES_TMPDIR=self.tmp,
            ES_JAVA_OPTS="-Xms%s -Xmx%s" % (self.heap, self.heap),
            HOME=self.base,
            LC_ALL="C.UTF-8",
        )
        return env

    def _tool(self, name, *args, input_text=None, timeout=180):
        """Run bin/<name> as the service user; secrets only ever on standard input."""
        proc = subprocess.run(
            [os.path.join(self.home, "bin", name), *args],
            preexec_fn=_demote(self._os_user),
            env=self._env(),
            input=input_text if input_text is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
        )
        if proc.returncode != 0:
            raise ServerError(
                "%s %s failed (rc=%s): %s"
                % (name, args[0] if args else "", proc.returncode, (proc.stdout + proc.stderr).strip()[-2000:])
            )
        return proc

    def _write_config(self, cert, key):
        config = {
            "cluster.name": "bosun-test",
            "node.name": "es-test",
            "path.data": self.data,
            "path.logs": self.logs,
            "path.repo": [self.repo],
            "network.host": self.host,
            "http.port": self.port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            "xpack.security.enabled": True,
            "xpack.security.http.ssl.enabled": True,
            "xpack.security.http.ssl.certificate": cert,
            "xpack.security.http.ssl.key": key,
            "xpack.security.transport.ssl.enabled": False,
            "action.destructive_requires_name": True,
        }
        config.update(self.settings)
        # JSON is YAML: no quoting of paths or values by hand
        with open(os.path.join(self.conf, "elasticsearch.yml"), "w", encoding="utf-8") as f:
            for name, value in config.items():
                f.write("%s: %s\n" % (name, json.dumps(value)))

    def _start(self):
        """bin/elasticsearch -d -p PIDFILE: returns once the node is up (or has failed)."""
        start = time.monotonic()
        proc = subprocess.run(
            [os.path.join(self.home, "bin", "elasticsearch"), "-d", "-p", self.pidfile],
            preexec_fn=_demote(self._os_user),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=self.base,
        )
        self.start_seconds = round(time.monotonic() - start, 1)
        return proc

    def __enter__(self):
        self.base = tempfile.mkdtemp(prefix="bosun-es-")
        os.chmod(self.base, 0o755)
        try:
            self._prepare()
            last_error = ""
            for _attempt in range(3):
                self.port, self.transport_port = free_port(), free_port()
                cert, key = self.ca.copy_for(self.conf, self._os_user)
                self._write_config(cert, key)
                _chown_tree(self.base, self._os_user)
                proc = self._start()
                if proc.returncode == 0 and self._wait_ready(120):
                    return self
                last_error = "rc=%s %s %s" % (proc.returncode, proc.stderr.strip()[-1500:], self.log_tail())
                self.stop()
                if "BindException" not in last_error and "Address already in use" not in last_error:
                    break
            raise ServerError("Elasticsearch did not start: %s" % last_error)
        except BaseException:
            self.__exit__()
            raise

    def _prepare(self):
        self.home = os.path.join(self.base, "home")
        shutil.copytree(unpacked_home(self.version), self.home, symlinks=True)
        self.conf = os.path.join(self.base, "config")
        shutil.copytree(os.path.join(self.home, "config"), self.conf)
        self.data = os.path.join(self.base, "data")
        self.logs = os.path.join(self.base, "logs")
        self.repo = os.path.join(self.base, "snapshots")
        self.tmp = os.path.join(self.base, "tmp")
        for path in (self.data, self.logs, self.repo, self.tmp):
            os.mkdir(path, 0o750)
        self.pidfile = os.path.join(self.base, "elasticsearch.pid")
        with open(os.path.join(self.conf, "roles.yml"), "w", encoding="utf-8") as f:
            f.write(ROLES_YML)
        _chown_tree(self.base, self._os_user)
        # -f creates the keystore too (one JVM start less than create + add)
        self._tool("elasticsearch-keystore", "add", "-f", "--stdin", "bootstrap.password", input_text=self.password)
        # no -p: the tool asks for the password twice and reads both answers from stdin
        pw = self.monitor_password
        self._tool(
            "elasticsearch-users", "useradd", self.monitor_user, "-r", "bosun_monitor", input_text=pw + "\n" + pw + "\n"
        )

    def _wait_ready(self, seconds):
        """Until the node answers as the superuser with a yellow or green cluster."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.pid():
                return False
            try:
                status, payload = self.request(
                    "GET", "/_cluster/health?wait_for_status=yellow&timeout=5s", check=False, timeout=10
                )
                if status == 200 and payload.get("status") in ("green", "yellow"):
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        return False

    def pid(self):
        """The node's process id while it runs, else None."""
        try:
            with open(self.pidfile, encoding="ascii") as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def log_tail(self, lines=30):
        try:
            with open(os.path.join(self.logs, "bosun-test.log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, TypeError):
            return ""

    def stop(self, timeout=60):
        """SIGTERM, and SIGKILL if the node has not exited within ``timeout`` seconds."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not os.path.exists("/proc/%d" % pid) or _is_zombie(pid):
                return
            time.sleep(0.2)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            if self.base:
                shutil.rmtree(self.base, ignore_errors=True)


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
