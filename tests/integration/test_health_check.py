"""bosun.platform.health_check and playbooks/health.yml against real PostgreSQL, Redis and nginx.

Each outcome is checked against an independent probe where one exists (psql, redis-py, df,
the certificate files). Timing assertions are only generous upper bounds that prove a
timeout works.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from tests.support.collection import ROOT, collections_path
from tests.support.nginx import make_cert
from tests.support.servers import PostgresServer, free_port


def health(run_module, checks, check_mode=False, **options):
    args = dict(checks=checks, fail_on="never")
    args.update(options)
    return run_module("health_check", args, check_mode=check_mode)


def by_name(result):
    return dict((c["name"], c) for c in result["checks"])


def metrics(check):
    return dict((m["name"], m) for m in check["metrics"])


def df_used_pct(path):
    out = subprocess.run(["df", "-P", path], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[1].split()[4].rstrip("%"))


def pg_checks(postgres, **over):
    opts = dict(
        login_host=postgres.host,
        login_port=postgres.port,
        login_user="app",
        login_password=postgres.app_password,
        dbname="app",
    )
    opts.update(over)
    return opts


# --- healthy ------------------------------------------------------------------------------
def test_healthy_platform_is_ok_in_one_task(postgres, redis_server, nginx, run_module, tmp_path):
    checks = [
        {
            "name": "app",
            "type": "http",
            "http": {"url": nginx.url("/health"), "json_path": "checks.db", "json_equals": "ok"},
        },
        {"name": "app tls", "type": "http", "http": {"url": nginx.url("/health", "https"), "ca_cert": nginx.ca_cert}},
        {"name": "pg port", "type": "tcp", "tcp": {"port": postgres.port}},
        {
            "name": "cert",
            "type": "tls_cert",
            "tls_cert": {
                "host": "127.0.0.1",
                "port": nginx.https_port,
                "server_name": "localhost",
                "ca_cert": nginx.ca_cert,
            },
        },
        {
            "name": "db app",
            "type": "postgres",
            "postgres": pg_checks(postgres, ssl_mode="verify-full", login_host="localhost", ca_cert=postgres.ca_cert),
        },
        {
            "name": "db socket",
            "type": "postgres",
            "postgres": {
                "login_unix_socket": postgres.socket_dir,
                "login_port": postgres.port,
                "login_password": postgres.password,
            },
        },
        {"name": "cache", "type": "redis", "redis": redis_server.conn_args()},
        {
            "name": "cache acl tls",
            "type": "redis",
            "redis": {
                "login_port": redis_server.tls_port,
                "login_user": redis_server.acl_user,
                "login_password": redis_server.acl_password,
                "tls": True,
                "ca_cert": redis_server.ca_cert,
            },
        },
        {"name": "disk", "type": "disk", "disk": {"path": str(tmp_path)}, "warn": 99.5, "crit": 100},
        {"name": "memory", "type": "memory", "warn": 99.5, "crit": 100},
        {"name": "nginx", "type": "nginx_config", "nginx_config": {"config": nginx.conf, "prefix": nginx.dir}},
        {
            "name": "cmd",
            "type": "command",
            "command": {"argv": ["redis-cli", "--version"], "stdout_regex": "^redis-cli "},
        },
    ]
    result = health(run_module, checks, fail_on="crit")
    assert result["rc"] == 0 and result["changed"] is False, result["msg"]
    got = by_name(result)
    assert {n: c["status"] for n, c in got.items()} == dict.fromkeys(got, "ok"), [
        c["message"] for c in result["checks"]
    ]
    assert result["status"] == "ok" and result["summary"]["total"] == len(checks) == result["summary"]["ok"]

    max_conn = postgres.psql("SHOW max_connections")
    assert "/%s connections" % max_conn in metrics(got["db app"])["connections"]["text"]
    assert got["db app"]["unit"] == "%" and 0 < got["db app"]["value"] <= 100
    assert "WAL archiving off" in got["db app"]["message"]  # the test server does not archive
    assert got["app"]["unit"] == "ms" and got["app"]["message"].endswith('checks.db = "ok"')
    assert got["cert"]["value"] == 88 and got["cert"]["unit"] == "days"  # 90-day certificate issued yesterday
    role = redis_server.client().info("replication")["role"]
    assert ("role %s" % role) in got["cache"]["message"]
    assert abs(got["disk"]["value"] - df_used_pct(str(tmp_path))) <= 1
    assert got["nginx"]["message"] == "nginx -t: configuration is valid"


# --- failures ----------------------------------------------------------------------------
def test_wrong_passwords_name_the_user_never_the_password(postgres, redis_server, run_module):
    wrong = "wr0ng 'pa$$' word"
    checks = [
        {"name": "db", "type": "postgres", "postgres": pg_checks(postgres, login_password=wrong)},
        {"name": "cache", "type": "redis", "redis": redis_server.conn_args(login_password=wrong)},
        {
            "name": "cache acl",
            "type": "redis",
            "redis": redis_server.conn_args(login_user=redis_server.acl_user, login_password=wrong),
        },
        {"name": "ok", "type": "memory", "warn": 99.5, "crit": 100},
    ]
    result = health(run_module, checks, fail_on="crit")
    assert result["failed"] is True and result["rc"] != 0
    got = by_name(result)
    assert got["db"]["status"] == got["cache"]["status"] == got["cache acl"]["status"] == "crit"
    assert got["ok"]["status"] == "ok"  # the report is still complete
    assert got["db"]["message"] == "PostgreSQL %s:%s/app: authentication failed for user app" % (
        postgres.host,
        postgres.port,
    )
    assert "authentication failed for user default" in got["cache"]["message"]
    assert "authentication failed for user bosun_ops" in got["cache acl"]["message"]
    assert result["msg"].startswith("3 of 4 checks failed (fail_on=crit): db crit: PostgreSQL")
    everything = json.dumps(result) + result["_stderr"]
    for secret in (wrong, postgres.app_password, redis_server.password):
        assert secret not in everything
    assert "Traceback" not in everything


def test_refused_ports_are_crit_with_the_cause(run_module):
    port = free_port()
    checks = [
        {"name": "tcp", "type": "tcp", "tcp": {"port": port}},
        {"name": "http", "type": "http", "http": {"url": "http://127.0.0.1:%d/health" % port}},
        {"name": "tls", "type": "tls_cert", "tls_cert": {"host": "127.0.0.1", "port": port}},
        {"name": "pg", "type": "postgres", "postgres": {"login_host": "127.0.0.1", "login_port": port}},
        {"name": "redis", "type": "redis", "redis": {"login_port": port}},
    ]
    result = health(run_module, checks)
    for check in result["checks"]:
        assert check["status"] == "crit", check
        assert "connection refused" in check["message"], check
    assert result["rc"] == 0  # fail_on=never: the report, not a failure


def test_a_service_that_never_answers_times_out_on_time(silent_server, nginx, run_module):
    port = silent_server.port
    checks = [
        {"name": "http", "type": "http", "timeout": 1, "http": {"url": "http://127.0.0.1:%d/" % port}},
        {"name": "behind nginx", "type": "http", "timeout": 1, "http": {"url": nginx.url("/hang")}},
        {"name": "pg", "type": "postgres", "timeout": 1, "postgres": {"login_host": "127.0.0.1", "login_port": port}},
        {"name": "redis", "type": "redis", "timeout": 1, "redis": {"login_port": port}},
        {"name": "tls", "type": "tls_cert", "timeout": 1, "tls_cert": {"host": "127.0.0.1", "port": port}},
        {"name": "tcp", "type": "tcp", "timeout": 1, "tcp": {"port": port}},
    ]
    start = time.monotonic()
    result = health(run_module, checks)
    wall = time.monotonic() - start
    got = by_name(result)
    for name in ("http", "behind nginx", "pg", "redis", "tls"):
        assert got[name]["status"] == "crit", got[name]
        assert "timed out" in got[name]["message"], got[name]
    assert got["tcp"]["status"] == "ok"  # the port does accept connections
    assert result["duration_ms"] < 5000 and wall < 5  # generous: the checks' timeout is 1 s


def test_expired_and_self_signed_certificates(nginx, run_module):
    def tls(port, **over):
        opts = dict(host="127.0.0.1", port=port, server_name="localhost", ca_cert=nginx.ca_cert)
        opts.update(over)
        return opts

    checks = [
        {"name": "expired", "type": "tls_cert", "tls_cert": tls(nginx.expired_port)},
        {"name": "self-signed", "type": "tls_cert", "tls_cert": tls(nginx.self_signed_port)},
        {
            "name": "self-signed unverified",
            "type": "tls_cert",
            "tls_cert": tls(nginx.self_signed_port, validate_certs=False),
        },
        {"name": "wrong name", "type": "tls_cert", "tls_cert": tls(nginx.https_port, server_name="shop.example.org")},
        {
            "name": "https self-signed",
            "type": "http",
            "http": {"url": "https://127.0.0.1:%d/health" % nginx.self_signed_port},
        },
        {
            "name": "https unverified",
            "type": "http",
            "http": {"url": "https://127.0.0.1:%d/health" % nginx.self_signed_port, "validate_certs": False},
        },
        {"name": "file", "type": "tls_cert", "tls_cert": {"path": nginx.expired_cert}, "warn": 30, "crit": 1},
    ]
    got = by_name(health(run_module, checks))
    assert got["expired"]["status"] == "crit" and got["expired"]["value"] == -2
    assert "certificate expired on" in got["expired"]["message"]
    assert got["self-signed"]["status"] == "crit"
    assert "certificate not trusted: self-signed certificate" in got["self-signed"]["message"]
    assert got["self-signed unverified"]["status"] == "ok" and got["self-signed unverified"]["value"] == 363
    assert got["wrong name"]["status"] == "crit" and "not trusted" in got["wrong name"]["message"]
    assert got["https self-signed"]["status"] == "crit"
    assert "TLS certificate verify failed" in got["https self-signed"]["message"]
    assert got["https unverified"]["status"] == "ok"
    assert got["file"]["status"] == "crit" and got["file"]["value"] == -2


def test_full_disk_by_threshold(run_module, tmp_path):
    used = df_used_pct(str(tmp_path))
    checks = [
        {"name": "over crit", "type": "disk", "disk": {"path": str(tmp_path)}, "warn": 0, "crit": max(used - 2, 0)},
        {"name": "in warn", "type": "disk", "disk": {"path": str(tmp_path)}, "warn": max(used - 2, 0), "crit": 100},
    ]
    got = by_name(health(run_module, checks))
    assert abs(got["over crit"]["value"] - used) <= 1
    assert got["over crit"]["status"] == ("crit" if used >= 3 else "warn")
    assert got["in warn"]["status"] == "warn"


def test_nearly_full_small_filesystem(run_module):
    mount = tempfile.mkdtemp(prefix="bosun-tmpfs-")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount], capture_output=True, check=False)
    if proc.returncode != 0:
        os.rmdir(mount)
        pytest.skip("cannot mount a tmpfs here (%s); test_full_disk_by_threshold covers thresholds" % proc.stderr)
    try:
        with open(os.path.join(mount, "fill"), "wb") as f:
            f.write(b"\0" * (900 * 1024))
        result = health(run_module, [{"name": "small", "type": "disk", "disk": {"path": mount}}], fail_on="crit")
        assert result["failed"] is True
        (check,) = result["checks"]
        assert check["status"] == "crit" and check["value"] >= 85  # default crit threshold
        assert abs(check["value"] - df_used_pct(mount)) <= 1
    finally:
        subprocess.run(["umount", mount], check=False)
        os.rmdir(mount)


def test_http_expectations(nginx, run_module):
    checks = [
        {
            "name": "degraded",
            "type": "http",
            "http": {"url": nginx.url("/degraded"), "json_path": "status", "json_equals": "healthy"},
        },
        {
            "name": "degraded allowed",
            "type": "http",
            "http": {"url": nginx.url("/degraded"), "json_path": "status", "json_in": ["healthy", "degraded"]},
        },
        {"name": "down", "type": "http", "http": {"url": nginx.url("/down")}},
        {"name": "down expected", "type": "http", "http": {"url": nginx.url("/down"), "status_codes": [503]}},
        {"name": "text", "type": "http", "http": {"url": nginx.url("/text"), "body_regex": "systems go$"}},
        {"name": "text mismatch", "type": "http", "http": {"url": nginx.url("/text"), "body_regex": "^error"}},
        {"name": "redirect", "type": "http", "http": {"url": nginx.url("/redirect"), "follow_redirects": False}},
        {
            "name": "redirect followed",
            "type": "http",
            "http": {"url": nginx.url("/redirect"), "json_path": "status", "json_equals": "healthy"},
        },
        {"name": "slow", "type": "http", "http": {"url": nginx.url("/health")}, "warn": 0, "crit": 60000},
        {"name": "not json", "type": "http", "http": {"url": nginx.url("/text"), "json_path": "status"}},
    ]
    got = by_name(health(run_module, checks))
    status = {n: c["status"] for n, c in got.items()}
    assert status == {
        "degraded": "crit",
        "degraded allowed": "ok",
        "down": "crit",
        "down expected": "ok",
        "text": "ok",
        "text mismatch": "crit",
        "redirect": "crit",
        "redirect followed": "ok",
        "slow": "warn",
        "not json": "crit",
    }
    assert got["degraded"]["message"].endswith('status is "degraded", expected "healthy"')
    assert "HTTP 503" in got["down"]["message"] and "expected 200" in got["down"]["message"]
    assert got["down"]["value"] is not None  # latency is measured even when the status is wrong
    assert "HTTP 302" in got["redirect"]["message"]
    assert "the body is not JSON" in got["not json"]["message"]


@pytest.fixture(scope="module")
def two_origins():
    from tests.support.nginx import RedirectNginx

    with RedirectNginx() as server:
        yield server


CREDENTIALS = ("authorization", "proxy_authorization", "cookie", "x_api_key", "x_custom")


def test_redirects_carry_credentials_only_within_the_origin(two_origins, run_module):
    web = two_origins
    token = "tok" + os.urandom(8).hex()
    headers = {
        "Authorization": "Bearer " + token,
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Cookie": "session=" + token,
        "X-Api-Key": "key-" + token,
        "X-Custom": "custom-" + token,
        "Accept": "text/plain",
    }
    basic_url = "http://ops:pw-%s@127.0.0.1:%d" % (token, web.port)
    declared = {"X-Custom": "declared-" + token}
    checks = [
        {"name": "same", "type": "http", "http": {"url": web.url("/same/a"), "headers": headers}},
        {"name": "port", "type": "http", "http": {"url": web.url("/port/b"), "headers": headers}},
        {"name": "host", "type": "http", "http": {"url": web.url("/host/c"), "headers": headers}},
        {"name": "url same", "type": "http", "http": {"url": basic_url + "/same/d"}},
        {"name": "url port", "type": "http", "http": {"url": basic_url + "/port/e"}},
        {"name": "url host", "type": "http", "http": {"url": basic_url + "/host/f"}},
        {"name": "declared same", "type": "http", "http": {"url": web.url("/same/g"), "secret_headers": declared}},
        {"name": "declared port", "type": "http", "http": {"url": web.url("/port/h"), "secret_headers": declared}},
    ]
    result = health(run_module, checks, fail_on="crit")
    assert result["rc"] == 0 and result["status"] == "ok", result["msg"]
    assert token not in json.dumps(result)

    arrived = dict((uri, web.received("/echo/" + uri)) for uri in "abcdefgh")
    assert all(len(got) == 1 for got in arrived.values()), arrived
    same, port, host, url_same, url_port, url_host, declared_same, declared_port = (
        arrived[uri][0] for uri in "abcdefgh"
    )
    assert (same["port"], port["port"], host["host"]) == (web.port, web.other_port, "localhost")
    # same origin: everything the task gave arrives where it was meant to
    assert same["authorization"] == headers["Authorization"] and same["cookie"] == headers["Cookie"]
    assert same["x_api_key"] == headers["X-Api-Key"] and same["x_custom"] == headers["X-Custom"]
    assert same["proxy_authorization"] == headers["Proxy-Authorization"]
    assert url_same["authorization"].startswith("Basic ")
    # another port or another host name: no credential and no custom header, the harmless ones stay
    for got in (port, host):
        assert dict((name, got[name]) for name in CREDENTIALS) == dict.fromkeys(CREDENTIALS, ""), got
        assert got["accept"] == "text/plain" and got["user_agent"] == "bosun.platform.health_check"
    for got in (url_port, url_host):
        assert got["authorization"] == "", got
    assert (declared_same["x_custom"], declared_port["x_custom"]) == (declared["X-Custom"], "")


@pytest.fixture(scope="module")
def archiving_postgres(test_ca):
    """A PostgreSQL whose WAL archiving starts out failing (archive_command = /bin/false)."""
    with PostgresServer(test_ca, settings={"archive_mode": "on", "archive_command": "'/bin/false'"}) as server:
        yield server


def _wait(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_postgres_wal_archiving_failing_then_healthy(archiving_postgres, run_module):
    pg = archiving_postgres
    check = [
        {
            "name": "db",
            "type": "postgres",
            "postgres": {"login_host": pg.host, "login_port": pg.port, "login_password": pg.password},
        }
    ]
    pg.psql("CREATE TABLE IF NOT EXISTS t (i int); INSERT INTO t VALUES (1)")
    pg.psql("SELECT pg_switch_wal()")
    assert _wait(lambda: int(pg.psql("SELECT failed_count FROM pg_stat_archiver")) > 0)
    result = health(run_module, check)
    (db,) = result["checks"]
    assert db["status"] == "crit"
    assert metrics(db)["archive_failing"]["status"] == "crit"
    assert "WAL archiving failing" in db["message"]

    pg.psql("ALTER SYSTEM SET archive_command = '/bin/true'")
    pg.psql("SELECT pg_reload_conf()")
    assert _wait(
        lambda: (
            pg.psql("SELECT last_archived_time > coalesce(last_failed_time, '-infinity') FROM pg_stat_archiver") == "t"
        )
    )
    (db,) = health(run_module, check)["checks"]
    assert db["status"] == "ok", db["message"]
    assert metrics(db)["archive_age"]["status"] == "ok"
    assert metrics(db)["archive_age"]["text"].startswith("last WAL archived ")
    assert "archive_failing" not in metrics(db)


def test_postgres_oldest_transaction_and_connections(postgres, run_module):
    import psycopg2

    holder = psycopg2.connect(
        host=postgres.host, port=postgres.port, user="postgres", password=postgres.password, dbname="postgres"
    )
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT txid_current()")  # a transaction stays open
        check = {
            "name": "db",
            "type": "postgres",
            "thresholds": {"oldest_transaction": {"warn": 0, "crit": 3600}},
            "postgres": {"login_host": postgres.host, "login_port": postgres.port, "login_password": postgres.password},
        }
        (db,) = health(run_module, [check])["checks"]
        seen = int(postgres.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
    finally:
        holder.close()
    assert db["status"] == "warn"
    assert metrics(db)["oldest_transaction"]["status"] == "warn"
    used = int(metrics(db)["connections"]["text"].split()[1].split("/")[0])
    assert used >= 2 and used >= seen  # the holder and the check itself (psql's probe ran after it left)


def test_redis_hit_rate_and_memory_against_info(redis_server, run_module):
    client = redis_server.client()
    client.config_resetstat()
    client.set("hc:present", "1")
    # 100 lookups, the fewest the hit rate is judged on: 25 hits, 75 misses
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.get("hc:present" if i % 4 == 0 else "hc:miss%d" % i)
    pipe.execute()
    old = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", str(64 * 1024 * 1024))
    try:
        (cache,) = health(run_module, [{"name": "cache", "type": "redis", "redis": redis_server.conn_args()}])["checks"]
        stats = client.info("stats")
        used = client.info("memory")["used_memory"]
    finally:
        client.config_set("maxmemory", old)
        client.config_resetstat()
    assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (25, 75)
    assert metrics(cache)["hit_rate"]["value"] == 25.0 and metrics(cache)["hit_rate"]["status"] == "warn"
    assert cache["status"] == "warn"
    assert abs(cache["value"] - 100.0 * used / (64 * 1024 * 1024)) < 1
    assert cache["message"].startswith("memory ") and "of 64 MiB" in cache["message"]


def test_broken_nginx_config_is_crit_with_nginx_words(nginx, run_module, tmp_path):
    broken = tmp_path / "nginx.conf"
    broken.write_text("events {}\nhttp { server { listen 127.0.0.1:%d; bogus_directive on; } }\n" % free_port())
    (check,) = health(
        run_module,
        [{"name": "nginx", "type": "nginx_config", "nginx_config": {"config": str(broken), "prefix": str(tmp_path)}}],
    )["checks"]
    assert check["status"] == "crit"
    assert 'unknown directive "bogus_directive"' in check["message"]


def test_check_mode_runs_the_same_checks(nginx, run_module):
    checks = [
        {"name": "app", "type": "http", "http": {"url": nginx.url("/health")}},
        {"name": "down", "type": "http", "http": {"url": nginx.url("/down")}},
    ]
    normal = health(run_module, checks)
    checked = health(run_module, checks, check_mode=True)
    for result in (normal, checked):
        assert result["changed"] is False
        assert [c["status"] for c in result["checks"]] == ["ok", "crit"]


# --- playbooks -----------------------------------------------------------------------------
def ansible_playbook(args, inventory_dir, timeout=120):
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=str(inventory_dir / "tmp"),
    )
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return subprocess.run(
        [binary, "-i", str(inventory_dir / "inventory.yml"), *args],
        env=env,
        cwd=str(inventory_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_inventory(directory, group_vars, unreachable=None):
    inventory = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": dict((g, {"hosts": {"localhost": None}}) for g in ("lb", "app", "db", "cache")),
        }
    }
    if unreachable:  # a host whose SSH port refuses connections
        inventory["all"]["children"]["cache"]["hosts"][unreachable] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": free_port(),
            "ansible_connection": "ssh",
            "ansible_ssh_common_args": "-o ConnectTimeout=5 -o BatchMode=yes",
        }
    (directory / "group_vars").mkdir(exist_ok=True)
    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))


@pytest.fixture
def platform_vars(postgres, redis_server, nginx, public_site, tmp_path):
    return {
        "bosun_health_nginx": {"nginx_config": {"config": nginx.conf, "prefix": nginx.dir}},
        # the site under its public name on 127.0.0.1 (only the test's ports differ from the
        # defaults), its certificate verified for that name against bosun_tls_ca_cert
        "bosun_health_server_name": PUBLIC_NAME,
        "bosun_tls_ca_cert": public_site.ca_pem,
        "bosun_health_lb_http": {"http": {"url": "http://%s:%d/" % (PUBLIC_NAME, public_site.port)}},
        "bosun_health_tls": {"tls_cert": {"port": public_site.https_port}},
        "bosun_health_app": {"http": {"url": nginx.url("/health"), "json_path": "status", "json_equals": "healthy"}},
        "bosun_health_postgres": {"postgres": pg_checks(postgres)},
        # the session's Redis is shared: other tests' lookups decide its hit rate
        "bosun_health_redis": {"redis": redis_server.conn_args(), "thresholds": {"hit_rate": {"warn": 0}}},
        "bosun_health_disk_paths": [str(tmp_path)],
        "bosun_health_disk": {"warn": 99.5, "crit": 100},
        # a shared CI machine: only the report's logic is under test here, not this host's load
        "bosun_health_memory": {"warn": 99.5, "crit": 100},
        "bosun_health_load": {"warn": 100000, "crit": 100000},
        "bosun_health_report_json": str(tmp_path / "report.json"),
        "bosun_health_report_text": str(tmp_path / "report.txt"),
        "bosun_health_metrics_file": str(tmp_path / "health.prom"),
    }


PLAYBOOK = os.path.join(ROOT, "playbooks", "health.yml")


def test_health_playbook_healthy_report(platform_vars, tmp_path):
    write_inventory(tmp_path, platform_vars)
    proc = ansible_playbook([PLAYBOOK], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = (tmp_path / "report.txt").read_text().splitlines()
    assert text[0].startswith("Infrastructure Status Report  20") and text[0].endswith(" UTC")
    assert text[1].startswith("Load balancer:  \u2705 nginx config valid  \u2705 / ")
    assert text[1].endswith("\u2705 TLS cert 88 days")
    assert text[2].startswith("Application:    \u2705 /health ") and text[2].endswith(" ms")
    assert text[3].startswith("Database:       \u2705 PostgreSQL ") and "connections" in text[3]
    assert text[4].startswith("Cache:          \u2705 Redis memory ")
    assert text[5] == "Overall:        \u2705 ok: 9 checks (9 ok) on 1 host"
    assert text[6] == "Recommendations: none, every check is ok."
    for line in text:
        assert json.dumps(line)[1:-1] in proc.stdout or line in proc.stdout  # the same report is printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "ok" and report["failed"] is False
    assert report["summary"]["total"] == 9
    assert sorted(c["name"] for c in report["hosts"]["localhost"]["checks"]) == sorted(
        [
            "nginx config",
            "lb http",
            "TLS cert",
            "app health",
            "PostgreSQL",
            "Redis",
            "disk %s" % tmp_path,
            "memory",
            "load",
        ]
    )
    assert "bosun_health_status 0\n" in (tmp_path / "health.prom").read_text()


def test_health_playbook_fails_on_crit_and_hides_passwords(platform_vars, postgres, redis_server, tmp_path):
    wrong = "n0t 'the' $password"
    platform_vars["bosun_health_redis"]["redis"]["login_password"] = wrong
    platform_vars["bosun_health_app"] = {"http": {"url": "http://127.0.0.1:%d/health" % free_port()}}
    write_inventory(tmp_path, platform_vars, unreachable="ghost")
    proc = ansible_playbook([PLAYBOOK, "-vvv"], tmp_path)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    for secret in (wrong, postgres.app_password, redis_server.password):
        assert secret not in output
        assert secret not in (tmp_path / "report.json").read_text()
    text = (tmp_path / "report.txt").read_text()
    assert "Application:    \U0001f534 app health: GET http://127.0.0.1:" in text
    assert (
        "Cache:          \U0001f534 localhost Redis %s:%d db 0: authentication failed for user default"
        % (redis_server.host, redis_server.port)
        in text
    )
    assert "  \U0001f534 ghost unreachable: " in text
    assert ". ghost: check that the host is up and reachable over SSH" in text
    assert "Overall:        \U0001f534 crit: 9 checks (7 ok, 2 crit) on 2 hosts (1 without a result)" in text
    assert "Recommendations:\n  1. " in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "crit" and report["failed"] is True
    assert sorted(str(f["check"]) for f in report["failing"]) == ["None", "Redis", "app health"]
    assert report["hosts"]["ghost"]["error"].startswith("unreachable: ")
    assert "health report crit (fail_on=crit): localhost" in proc.stdout


def test_module_defaults_of_the_postgres_action_group(postgres, tmp_path):
    playbook = tmp_path / "defaults.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Connection options from the action group",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {
                        "group/bosun.platform.postgres": {
                            "login_host": postgres.host,
                            "login_port": postgres.port,
                            "login_user": "app",
                            "login_password": postgres.app_password,
                        }
                    },
                    "tasks": [
                        {
                            "name": "Check",
                            "bosun.platform.health_check": {
                                "checks": [{"name": "db", "type": "postgres", "postgres": {"dbname": "app"}}]
                            },
                            "register": "r",
                        },
                        {
                            "name": "Show",
                            "ansible.builtin.debug": {"msg": "{{ r.checks[0].status }} {{ r.checks[0].message }}"},
                        },
                    ],
                }
            ]
        )
    )
    write_inventory(tmp_path, {})
    proc = ansible_playbook([str(playbook)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '"msg": "ok ' in proc.stdout and "/40 connections" in proc.stdout
    assert postgres.app_password not in proc.stdout


# --- the site's public name on a local address (curl --resolve) ---------------------------
PUBLIC_NAME = "shop.bosun.test"


@pytest.fixture(scope="module")
def public_site(test_ca):
    """nginx as the nginx role sets a site up: http redirects to https://$host, the https
    server has a certificate for the public name only. Both on free loopback ports."""
    from tests.support.nginx import HEALTH_JSON, _NginxProcess

    class PublicSite(_NginxProcess):
        def _pick_ports(self):
            self.port, self.https_port = free_port(), free_port()

        def _ports(self):
            return [self.port, self.https_port]

        def _write_conf(self):
            conf = """
worker_processes 1;
error_log %(dir)s/error.log warn;
pid %(dir)s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(dir)s/tmp/body;
    proxy_temp_path %(dir)s/tmp/proxy;
    fastcgi_temp_path %(dir)s/tmp/fastcgi;
    uwsgi_temp_path %(dir)s/tmp/uwsgi;
    scgi_temp_path %(dir)s/tmp/scgi;
    server {
        listen 127.0.0.1:%(port)d default_server;
        server_name %(name)s;
        location / { return 301 https://$host:%(https_port)d$request_uri; }
    }
    server {
        listen 127.0.0.1:%(https_port)d ssl default_server;
        server_name %(name)s;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        default_type application/json;
        location = /health { return 200 '%(health)s'; }
        location / { return 200 '{"host": "$host"}'; }
    }
}
""" % dict(self.__dict__, name=PUBLIC_NAME, health=HEALTH_JSON)
            with open(self.conf, "w", encoding="utf-8") as f:
                f.write(conf)

    server = PublicSite()
    server.proc = None
    server.dir = tempfile.mkdtemp(prefix="bosun-nginx-site-")
    os.chmod(server.dir, 0o755)
    os.mkdir(os.path.join(server.dir, "tmp"))
    server.conf = os.path.join(server.dir, "nginx.conf")
    # for the public name only (not 127.0.0.1), signed by the test CA
    server.cert, server.key = make_cert(
        server.dir, "site", 90, ca_cert=test_ca.ca_cert, ca_key=test_ca.ca_key, dns_names=[PUBLIC_NAME]
    )
    with open(test_ca.ca_cert, encoding="ascii") as f:
        server.ca_pem = f.read()
    server._start()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


def test_public_name_on_a_local_address_with_the_sites_ca(public_site, run_module):
    site = public_site
    name_url = "http://%s:%d/health" % (PUBLIC_NAME, site.port)
    local = dict(connect_address="127.0.0.1", ca_cert_data=site.ca_pem)
    tls = dict(host="127.0.0.1", port=site.https_port, server_name=PUBLIC_NAME)
    checks = [
        # http -> 301 https://shop.bosun.test:<port>/health, both reached on 127.0.0.1
        {
            "name": "redirected",
            "type": "http",
            "http": dict(local, url=name_url, json_path="status", json_equals="healthy"),
        },
        {
            "name": "host",
            "type": "http",
            "http": dict(
                local, url="https://%s:%d/" % (PUBLIC_NAME, site.https_port), json_path="host", json_equals=PUBLIC_NAME
            ),
        },
        {"name": "system store", "type": "http", "http": dict(url=name_url, connect_address="127.0.0.1")},
        {
            "name": "empty CA = system store",
            "type": "http",
            "http": dict(url=name_url, connect_address="127.0.0.1", ca_cert_data=""),
        },
        {
            "name": "by address",
            "type": "http",
            "http": dict(local, url="https://127.0.0.1:%d/health" % site.https_port),
        },
        {"name": "tls", "type": "tls_cert", "tls_cert": dict(tls, ca_cert_data=site.ca_pem)},
        {"name": "tls system store", "type": "tls_cert", "tls_cert": dict(tls)},
        {
            "name": "tls other name",
            "type": "tls_cert",
            "tls_cert": dict(tls, server_name="other.bosun.test", ca_cert_data=site.ca_pem),
        },
    ]
    result = health(run_module, checks)
    got = by_name(result)
    assert dict((n, c["status"]) for n, c in got.items()) == {
        "redirected": "ok",
        "host": "ok",
        "system store": "crit",
        "empty CA = system store": "crit",
        "by address": "crit",
        "tls": "ok",
        "tls system store": "crit",
        "tls other name": "crit",
    }, result
    assert "TLS certificate verify failed" in got["system store"]["message"]
    assert "127.0.0.1" in got["by address"]["message"] and "verify failed" in got["by address"]["message"]
    assert got["tls"]["value"] == 88
    assert "not trusted" in got["tls other name"]["message"]
    pem_body = "".join(site.ca_pem.strip().splitlines()[1:-1])
    assert pem_body[:40] not in json.dumps(result)


def test_connect_address_and_ca_data_are_checked(run_module):
    checks = [
        {
            "name": "bad pem",
            "type": "http",
            "http": {"url": "https://shop.bosun.test/", "ca_cert_data": "not a certificate"},
        },
        {
            "name": "both",
            "type": "tls_cert",
            "tls_cert": {"host": "127.0.0.1", "ca_cert": "/etc/ssl/certs/ca-certificates.crt", "ca_cert_data": "x"},
        },
    ]
    result = health(run_module, checks)
    assert result.get("failed") and "ca_cert_data" in result["msg"], result
    assert "not a certificate" not in result["msg"]


def _deploy_url_checks(**variables):
    """The smoke checks the deploy role's `finish` builds from the inventory's ``variables``:
    the role's defaults templated over them, then its filter, as finish.yml calls it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible_collections.bosun.platform.plugins.filter.deploy import deploy_url_checks

    with open(os.path.join(ROOT, "roles", "deploy", "defaults", "main.yml")) as f:
        defaults = yaml.safe_load(f)
    names = ("deploy_health_path", "deploy_smoke_urls", "deploy_server_name", "deploy_url_base")
    names += ("deploy_validate_certs", "deploy_tls_ca_cert")
    values = dict((k, trust_as_template(v)) for k, v in defaults.items() if k in names)
    values.update(variables)
    templar = Templar(loader=DataLoader(), variables=values)
    role = dict((name, templar.template(trust_as_template("{{ %s }}" % name))) for name in names)
    with open(os.path.join(ROOT, "roles", "deploy", "tasks", "finish.yml")) as f:
        assert "deploy_smoke_urls | bosun.platform.deploy_url_checks('smoke', deploy_url_base" in f.read()
    return deploy_url_checks(
        role["deploy_smoke_urls"],
        "smoke",
        role["deploy_url_base"],
        server_name=role["deploy_server_name"],
        validate_certs=role["deploy_validate_certs"],
        ca_cert_data=role["deploy_tls_ca_cert"],
        status_codes=[200],
    )


def test_deploy_smoke_checks_the_public_name_with_the_sites_ca(public_site, run_module):
    site = public_site
    production = dict(bosun_deploy_server_name=PUBLIC_NAME, bosun_deploy_validate_certs=True)
    (default,) = _deploy_url_checks(**production)
    assert default["http"]["url"] == "https://%s/health" % PUBLIC_NAME
    # the test's nginx listens on a free port instead of 443: only the port differs
    base = "https://%s:%d" % (PUBLIC_NAME, site.https_port)
    (smoke,) = _deploy_url_checks(bosun_deploy_url_base=base, bosun_tls_ca_cert=site.ca_pem, **production)
    (untrusted,) = _deploy_url_checks(bosun_deploy_url_base=base, **production)
    untrusted["name"] = "untrusted"
    got = by_name(health(run_module, [smoke, untrusted]))
    assert got["smoke /health"]["status"] == "ok", got
    assert got["untrusted"]["status"] == "crit" and "verify failed" in got["untrusted"]["message"]


def test_redis_full_under_allkeys_lru_is_ok_and_judged_by_evictions(test_ca, run_module):
    """A cache filled past maxmemory under allkeys-lru (the redis role's default) evicts and
    stays ok while it is read far more often than it evicts; evicting ever more keys makes it
    warn; the same fullness under noeviction is crit. A Redis of its own: evictions would eat
    the shared server's keys."""
    from tests.support.servers import RedisServer

    value = b"x" * 4096

    def fill(client, first, batches):
        for batch in range(first, first + batches):
            pipe = client.pipeline(transaction=False)
            for i in range(32):
                pipe.set("cache:%d:%d" % (batch, i), value)
            pipe.execute()

    with RedisServer(test_ca, ["maxmemory-policy allkeys-lru"]) as server:
        client = server.client()
        client.config_set("maxmemory", str(client.info("memory")["used_memory"] + 2 * 1024 * 1024))
        fill(client, 0, 40)  # about 5 MB into 2 MB of room: evictions start half-way
        for _round in range(200):  # reads of recent keys (hits) and of evicted ones (misses)
            client.mget(["cache:39:%d" % i for i in range(32)] + ["cache:0:%d" % i for i in range(4)])
        stats = client.info()
        check = {"name": "cache", "type": "redis", "redis": server.conn_args()}
        (lru,) = health(run_module, [check])["checks"]
        fill(client, 40, 100)  # pushes out about 3200 more keys, nobody reads them
        (churning,) = health(run_module, [check])["checks"]
        churned = client.info("stats")
        client.config_set("maxmemory-policy", "noeviction")
        (full,) = health(run_module, [check])["checks"]
    assert stats["evicted_keys"] > 0 and stats["used_memory"] > 0.85 * stats["maxmemory"]
    lookups = stats["keyspace_hits"] + stats["keyspace_misses"]
    assert lru["status"] == "ok", (lru["message"], lru["metrics"])
    assert metrics(lru)["memory"]["status"] == "ok" and lru["value"] > 85
    # (a few more keys may go while the check's own commands run over maxmemory)
    assert abs(metrics(lru)["evictions"]["value"] - 100.0 * stats["evicted_keys"] / lookups) < 1
    assert "allkeys-lru" in lru["message"]
    ratio = 100.0 * churned["evicted_keys"] / lookups
    assert 20 <= ratio <= 100, ratio
    assert churning["status"] == "warn" and metrics(churning)["evictions"]["status"] == "warn"
    assert full["status"] == "crit" and metrics(full)["memory"]["status"] == "crit"
    assert "evictions" not in metrics(full)
