"""The example app's search (examples/app) against real PostgreSQL, Redis and Elasticsearch.

The app runs as it is deployed: a release tarball made by ``build.py``, a virtualenv made
from the wheels inside it, gunicorn on a free loopback port, settings in its environment.
Rows go into a database of their own (migrated with ``python -m bosun_example.migrate``),
cached results into a Redis database of their own, documents into an index of their own
(``SEARCH_INDEX``) as a file-realm user holding only the index privileges the README lists,
whose password (a quote, a dollar and spaces) is given in ``SEARCH_PASSWORD_FILE``. Each
effect is checked with an independent probe: psql, redis-py, the index's own statistics.
The cache is flushed with ``bosun.platform.redis_flush`` and the patterns of the example
inventory's cache group ``business``. The tests share the database and the index (seeded once by the fixture
``seeded``); everything created is removed at the end.
"""

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import yaml

from tests.support.collection import ROOT
from tests.support.servers import free_port

EXAMPLE = Path(ROOT) / "examples" / "app"
REDIS_DB = 9
WRONG_PASSWORD = "wrong 'pw' $x " + secrets.token_hex(4)
APP_USER = "bosun_example"
APP_ROLE = "bosun_example_search"
APP_PASSWORD = "app pa'ss$ " + secrets.token_hex(4)
# What examples/app/README.md says the app and its reindex command need, on the index only.
APP_PRIVILEGES = ["read", "write", "create_index", "view_index_metadata", "maintenance"]
CONTROLLED = ("DATABASE_URL", "REDIS_URL", "APP_RELEASE") + tuple(
    name for name in os.environ if name.startswith("SEARCH_")
)


# --- the release, the database, the index ---------------------------------------------------
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The example app built by build.py, unpacked, with its virtualenv from the bundled wheels."""
    base = tmp_path_factory.mktemp("example-release")
    subprocess.run(
        [sys.executable, str(EXAMPLE / "build.py"), "--version", "0.0.0-search", "--out", str(base / "dist")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    root = base / "release"
    root.mkdir()
    with tarfile.open(base / "dist" / "bosun-example-app-0.0.0-search.tar.gz") as tar:
        tar.extractall(root, filter="data")
    subprocess.run([sys.executable, "-m", "venv", str(root / ".venv")], check=True, timeout=300)
    subprocess.run(
        [str(root / ".venv/bin/pip"), "install", "-q", "--no-index", "--find-links", str(root / "wheels")]
        + ["--requirement", str(root / "requirements.txt")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return root


@pytest.fixture(scope="module")
def database(postgres, release):
    """A database of its own owned by the app user, migrated; its DATABASE_URL."""
    name = "example_search_%s" % secrets.token_hex(4)
    postgres.psql("CREATE DATABASE %s OWNER %s" % (name, postgres.app_user))
    url = "postgresql://%s:%s@%s:%d/%s?sslmode=require" % (
        postgres.app_user,
        quote(postgres.app_password, safe=""),
        postgres.host,
        postgres.port,
        name,
    )
    proc = run_python(release, "migrate", {"DATABASE_URL": url})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "migrate: applied 0001_items"
    yield {"url": url, "name": name}
    postgres.psql("DROP DATABASE %s WITH (FORCE)" % name)


@pytest.fixture(scope="module")
def cache(redis_server):
    """A client of the Redis database the app caches in; that database is emptied at the end."""
    client = redis_server.client(db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="module")
def index(elasticsearch):
    """The name of the app's index; it is deleted at the end."""
    name = "bosun-example-search-%s" % secrets.token_hex(4)
    yield name
    elasticsearch.request("DELETE", "/" + name, check=False)


@pytest.fixture(scope="module")
def search_user(elasticsearch, index):
    """A file-realm user with only the index privileges the README lists; removed at the end.

    roles.yml and the users file are reloaded by the node within seconds of a change."""
    roles = os.path.join(elasticsearch.conf, "roles.yml")
    with open(roles, encoding="utf-8") as f:
        original = f.read()
    role = {APP_ROLE: {"indices": [{"names": [index], "privileges": APP_PRIVILEGES}]}}
    with open(roles, "a", encoding="utf-8") as f:
        f.write(yaml.safe_dump(role))
    password = APP_PASSWORD
    elasticsearch._tool("elasticsearch-users", "useradd", APP_USER, "-r", APP_ROLE, input_text=(password + "\n") * 2)
    try:
        deadline = time.monotonic() + 60
        while True:
            status, me = elasticsearch.request(
                "GET", "/_security/_authenticate", user=APP_USER, password=password, check=False
            )
            if status == 200 and me.get("roles") == [APP_ROLE]:
                break
            assert time.monotonic() < deadline, "the node did not load the user: %s %s" % (status, me)
            time.sleep(1)
        yield APP_USER, password
    finally:
        elasticsearch._tool("elasticsearch-users", "userdel", APP_USER)
        with open(roles, "w", encoding="utf-8") as f:
            f.write(original)


@pytest.fixture(scope="module")
def env(tmp_path_factory, database, redis_server, elasticsearch, index, search_user):
    """The app's settings, as the app role would write them to shared/.env."""
    user, password = search_user
    password_file = tmp_path_factory.mktemp("example-secrets") / "search-password"
    password_file.write_text(password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    return {
        "DATABASE_URL": database["url"],
        "REDIS_URL": "redis://:%s@%s:%d/%d"
        % (quote(redis_server.password, safe=""), redis_server.host, redis_server.port, REDIS_DB),
        "SEARCH_URL": elasticsearch.url,
        "SEARCH_USER": user,
        "SEARCH_PASSWORD_FILE": str(password_file),
        "SEARCH_CA_FILE": elasticsearch.ca_cert,
        "SEARCH_INDEX": index,
    }


@pytest.fixture(scope="module")
def seeded(release, env, postgres, database):
    """Three rows written straight into the table, then reindexed twice: the two last lines."""
    insert_rows(postgres, database, "red apple", "green apple", "blue whale")
    return reindex(release, env), reindex(release, env)


@pytest.fixture(scope="module")
def app(release, env, seeded, tmp_path_factory):
    """The app with search configured, served by gunicorn."""
    with App(release, env, tmp_path_factory.mktemp("example-app")) as server:
        yield server


@pytest.fixture
def other_app(release, env, tmp_path):
    """Start the app with other settings: other_app(SEARCH_URL=None, ...) (None removes one)."""
    with contextlib.ExitStack() as stack:

        def start(**changes):
            settings = dict(env)
            for key, value in changes.items():
                if value is None:
                    settings.pop(key, None)
                else:
                    settings[key] = value
            return stack.enter_context(App(release, settings, tmp_path / ("app-%s" % secrets.token_hex(4))))

        yield start


# --- helpers --------------------------------------------------------------------------------
def child_env(settings):
    environ = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    environ.update(settings)
    return environ


def run_python(release, module, settings):
    """``.venv/bin/python -m bosun_example.<module>`` in the release, as an operator runs it."""
    return subprocess.run(
        [str(release / ".venv/bin/python"), "-m", "bosun_example." + module],
        cwd=release,
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class App:
    """gunicorn serving bosun_example.app:application from the release on a free port."""

    def __init__(self, release, settings, workdir):
        self.release = release
        self.settings = settings
        self.workdir = Path(workdir)
        self.proc = None
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "error.log"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(self.release / ".venv/bin/gunicorn"), "--bind", "127.0.0.1:%d" % self.port, "--workers", "1"]
            + ["--error-logfile", str(self.log), "--no-control-socket", "bosun_example.app:application"],
            cwd=self.release,
            env=child_env(self.settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "gunicorn exited: %s" % self.log_text()
            with contextlib.suppress(OSError):
                if self.request("GET", "/version")[0] == 200:
                    return self
            time.sleep(0.2)
        self.__exit__()
        raise AssertionError("the app did not answer within 60 s: %s" % self.log_text())

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def request(self, method, path, body=None):
        """(status, raw body text) of one request."""
        data = json.dumps(body).encode() if body is not None else None
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http to the app on loopback
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8")

    def json(self, method, path, body=None):
        status, text = self.request(method, path, body)
        return status, json.loads(text)

    def search(self, query):
        return self.json("GET", "/search?" + urlencode({"q": query}))

    def add(self, name):
        status, body = self.json("POST", "/items", {"name": name})
        assert status == 201, body
        return body


def insert_rows(postgres, database, *names):
    values = ", ".join("('%s')" % name.replace("'", "''") for name in names)
    postgres.psql("INSERT INTO items (name) VALUES %s" % values, db=database["name"])  # noqa: S608 - quotes doubled


def stored_name(postgres, database, item_id):
    """The item's name as PostgreSQL has it ("" when there is no such row)."""
    return postgres.psql("SELECT name FROM items WHERE id = %d" % int(item_id), db=database["name"])  # noqa: S608


def search_count(elasticsearch, index):
    """How many searches the index has served (its own statistics: the independent probe)."""
    _status, stats = elasticsearch.request("GET", "/%s/_stats/search" % index)
    return stats["_all"]["primaries"]["search"]["query_total"]


def names(body):
    return sorted(item["name"] for item in body["items"])


def reindex(release, env):
    proc = run_python(release, "reindex", env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def business_patterns():
    with open(os.path.join(ROOT, "inventories", "example", "group_vars", "cache.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["bosun_cache_groups"]["business"]


# --- tests ----------------------------------------------------------------------------------
def test_reindex_builds_the_index_from_the_table(seeded, elasticsearch, index):
    first, second = seeded
    assert first == "reindex: %s: created, 3 indexed, 0 removed" % index
    _status, mapping = elasticsearch.request("GET", "/%s/_mapping" % index)
    mappings = mapping[index]["mappings"]
    assert mappings["dynamic"] == "strict"
    assert mappings["properties"]["name"] == {"type": "text"}
    assert mappings["properties"]["id"] == {"type": "long"}
    # a second run changes nothing
    assert second == "reindex: %s: existed, 3 indexed, 0 removed" % index
    assert elasticsearch.request("GET", "/%s/_count" % index)[1]["count"] == 3


def test_search_is_cached_and_a_flush_reaches_elasticsearch(app, index, elasticsearch, cache, redis_server, run_module):
    before = search_count(elasticsearch, index)
    status, body = app.search("apple")
    assert status == 200, body
    assert names(body) == ["green apple", "red apple"]
    assert body["total"] == 2 and body["cached"] is False and body["query"] == "apple"
    assert search_count(elasticsearch, index) == before + 1

    # the second search is served by Redis: the index sees no query
    status, again = app.search("  apple ")
    assert status == 200 and again["cached"] is True
    assert names(again) == names(body)
    assert search_count(elasticsearch, index) == before + 1
    keys = [key.decode() for key in cache.scan_iter("search:*")]
    results = [key for key in keys if not key.endswith(":generation")]
    assert results and all(key.startswith("search:%s:" % index) for key in keys)
    assert all(0 < cache.ttl(key) <= 30 for key in results)

    # the example inventory's cache group "business" covers them: after the flush the
    # next search goes to Elasticsearch again
    flushed = run_module("redis_flush", redis_server.conn_args(login_db=REDIS_DB, patterns=business_patterns()))
    assert flushed["rc"] == 0 and flushed["deleted"] >= len(keys), flushed
    assert not list(cache.scan_iter("search:*"))
    status, fresh = app.search("apple")
    assert status == 200 and fresh["cached"] is False
    assert search_count(elasticsearch, index) == before + 2


def test_a_new_item_is_searchable_at_once(app, postgres, database, elasticsearch, index):
    status, body = app.search("zebra")
    assert status == 200 and body["total"] == 0  # an empty result, now cached
    created = app.add("zebra crossing")
    assert created["search"] == {"indexed": True}
    # the write put the cached result out of use, and the document is visible already
    status, body = app.search("zebra")
    assert status == 200 and body["cached"] is False
    assert [(item["id"], item["name"]) for item in body["items"]] == [(created["id"], "zebra crossing")]
    assert elasticsearch.request("GET", "/%s/_doc/%d" % (index, created["id"]))[1]["found"] is True
    assert stored_name(postgres, database, created["id"]) == "zebra crossing"


def test_reindex_removes_the_documents_of_deleted_rows(app, release, env, postgres, database, index):
    assert app.search("whale")[1]["total"] == 1
    postgres.psql("DELETE FROM items WHERE name = 'blue whale'", db=database["name"])
    rows = int(postgres.psql("SELECT count(*) FROM items", db=database["name"]))
    assert reindex(release, env) == "reindex: %s: existed, %d indexed, 1 removed" % (index, rows)
    status, body = app.search("whale")  # reindex put the cached result out of use
    assert status == 200 and body["total"] == 0 and body["cached"] is False


def test_health_reports_search(app):
    status, body = app.json("GET", "/health")
    assert status == 200 and body["status"] == "healthy", body
    assert body["checks"]["search"]["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok" and body["checks"]["redis"]["status"] == "ok"


def test_search_needs_a_query(app):
    assert app.json("GET", "/search") == (400, {"error": "q is required: /search?q=words"})
    assert app.search("   ")[0] == 400
    assert app.search("x" * 201)[0] == 400


def test_search_not_configured(other_app):
    plain = other_app(SEARCH_URL=None, SEARCH_USER=None, SEARCH_PASSWORD_FILE=None, SEARCH_CA_FILE=None)
    assert plain.search("apple") == (503, {"error": "search is not configured: SEARCH_URL is not set"})
    status, health = plain.json("GET", "/health")
    assert status == 200 and health["status"] == "healthy"
    assert sorted(health["checks"]) == ["database", "redis"]
    created = plain.add("plain item")
    assert "search" not in created


def test_wrong_password_is_a_clear_error_without_the_password(other_app, release, env, elasticsearch):
    wrong = other_app(SEARCH_PASSWORD_FILE=None, SEARCH_PASSWORD=WRONG_PASSWORD)
    # a query no other test caches: a cached result would be served without asking Elasticsearch
    status, text = wrong.request("GET", "/search?q=unrefused")
    assert status == 503
    assert json.loads(text) == {
        "error": "search is unavailable: Elasticsearch refused the credentials (HTTP 401): "
        "check SEARCH_USER and SEARCH_PASSWORD"
    }
    status, health = wrong.request("GET", "/health")
    assert status == 200 and json.loads(health)["status"] == "healthy"
    assert json.loads(health)["checks"]["search"]["status"] == "degraded"
    assert "HTTP 401" in json.loads(health)["checks"]["search"]["error"]
    status, created = wrong.request("POST", "/items", {"name": "stored anyway"})
    assert status == 201 and json.loads(created)["search"]["indexed"] is False
    proc = run_python(release, "reindex", dict(env, SEARCH_PASSWORD=WRONG_PASSWORD, SEARCH_PASSWORD_FILE=""))
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr and proc.stdout == ""
    for output in (text, health, created, wrong.log_text(), proc.stderr):
        assert WRONG_PASSWORD not in output and quote(WRONG_PASSWORD) not in output
        assert elasticsearch.password not in output and APP_PASSWORD not in output


def test_item_is_stored_when_search_is_down(other_app, postgres, database):
    down = other_app(SEARCH_URL="https://127.0.0.1:%d" % free_port())
    created = down.add("stored while search is down")
    assert created["search"]["indexed"] is False
    assert created["search"]["error"].startswith("cannot reach Elasticsearch")
    assert stored_name(postgres, database, created["id"]) == "stored while search is down"
    assert "item %d stored but not indexed" % created["id"] in down.log_text()
    status, health = down.json("GET", "/health")
    assert status == 200 and health["status"] == "healthy"
    assert health["checks"]["search"]["status"] == "degraded"
    status, body = down.search("unreached")
    assert status == 503 and body["error"].startswith("search is unavailable: cannot reach Elasticsearch")
