"""Behaviour of a host converged with bosun.platform.redis.

Clients connect from the test machine to the container's private address, as the app
servers would over the private network.
"""

import os
import socket

import pytest
import redis

ADMIN = ("bosun-admin", "admin pass'with$quotes")
APP = ("app", "app-secret")
MONITOR = ("monitor", "monitor-secret")
MAINT = ("cache-maint", "maint-secret")
CERT = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "redis.crt")


def _address(host):
    return host.interface("eth0").addresses[0]


def _client(host, user, port=6379, **kwargs):
    name, password = user
    return redis.Redis(host=_address(host), port=port, username=name, password=password, socket_timeout=10, **kwargs)


def _raw(host, payload, port=6379):
    """Send a raw command without authenticating and return the reply line."""
    with socket.create_connection((_address(host), port), timeout=10) as sock:
        sock.sendall(payload)
        return sock.recv(4096).decode()


def _listeners(host, port):
    out = host.check_output("ss -ltnH 'sport = :%d'" % port)
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()}


def test_service_runs_and_is_enabled(host):
    service = host.service("redis-server")
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("port", [6379, 6380])
def test_listens_on_localhost_and_private_address_only(host, port):
    addresses = _listeners(host, port)
    assert _address(host) in addresses
    assert "127.0.0.1" in addresses
    assert addresses <= {"127.0.0.1", "::1", _address(host)}, addresses


def test_unauthenticated_command_is_refused(host):
    assert _raw(host, b"PING\r\n").startswith("-NOAUTH")
    assert _raw(host, b"GET some:key\r\n").startswith("-NOAUTH")


def test_default_user_is_disabled(host):
    assert _raw(host, b"AUTH default \r\n").startswith("-WRONGPASS")


def test_wrong_password_is_refused(host):
    with pytest.raises(redis.exceptions.AuthenticationError):
        _client(host, ("app", "not-the-password")).ping()


def test_app_user_works_but_not_dangerous_commands(host):
    app = _client(host, APP)
    assert app.set("session:1", "x") is True
    assert app.get("session:1") == b"x"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.config_get("maxmemory")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.keys("*")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.flushall()
    # DEBUG is also refused by the server itself (enable-debug-command no): ask the ACL
    admin = _client(host, ADMIN, decode_responses=True)
    for command in (["DEBUG", "SLEEP", "0"], ["CONFIG", "SET", "maxmemory", "0"], ["FLUSHALL"], ["KEYS", "*"]):
        verdict = admin.execute_command("ACL", "DRYRUN", "app", *command)
        assert "no permissions" in verdict, (command, verdict)
    assert admin.execute_command("ACL", "DRYRUN", "app", "GET", "x") == "OK"


def test_maintenance_user_scans_and_unlinks_its_keys_only(host):
    app = _client(host, APP)
    app.set("cache:menu:1", "a")
    app.set("session:2", "b")
    maint = _client(host, MAINT)
    assert maint.ping() is True
    assert b"cache:menu:1" in list(maint.scan_iter(match="cache:*", count=100))
    assert maint.unlink("cache:menu:1") == 1
    with pytest.raises(redis.exceptions.NoPermissionError):
        maint.set("cache:menu:2", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        maint.unlink("session:2")
    assert app.exists("session:2") == 1


def test_monitor_user_reads_but_cannot_write(host):
    _client(host, APP).set("session:3", "c")
    monitor = _client(host, MONITOR)
    assert monitor.get("session:3") == b"c"
    assert "redis_version" in monitor.info("server")
    with pytest.raises(redis.exceptions.NoPermissionError):
        monitor.set("session:3", "d")


def test_memory_and_persistence_settings(host):
    config = _client(host, ADMIN, decode_responses=True).config_get("*")
    assert config["maxmemory"] == str(64 * 1024 * 1024)
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["protected-mode"] == "yes"


def test_tls_port_answers_with_the_given_certificate(host):
    app = _client(host, APP, port=6380, ssl=True, ssl_ca_certs=CERT, ssl_check_hostname=False)
    assert app.ping() is True
    # the certificate names localhost, which the server verifies against
    local = host.run(
        "REDISCLI_AUTH=app-secret redis-cli --no-auth-warning --tls --cacert /etc/redis/tls/ca.crt "
        "--sni localhost -h 127.0.0.1 -p 6380 --user app PING"
    )
    assert local.stdout.strip() == "PONG", local.stderr


def test_acl_file_holds_no_password_in_clear(host):
    acl = host.file("/etc/redis/users.acl")
    assert acl.mode == 0o640
    content = acl.content_string
    for _user, password in (ADMIN, APP, MONITOR, MAINT):
        assert password not in content
    assert content.startswith("user default off")


def test_kernel_settings_written(host):
    conf = host.file("/etc/sysctl.d/61-bosun-redis.conf")
    assert conf.contains("vm.overcommit_memory = 1")
    assert host.file("/etc/tmpfiles.d/bosun-redis-thp.conf").contains("transparent_hugepage/enabled")
