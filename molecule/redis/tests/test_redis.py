"""Behaviour of a host converged with bosun.platform.redis.

Clients connect from the test machine to the container's private address, as the app
servers would over the private network.
"""

import json
import os
import socket
import subprocess

import pytest
import redis

ADMIN = ("bosun-admin", "admin pass'with$quotes")
APP = ("app", "app-secret")
MONITOR = ("monitor", "monitor-secret")
MAINT = ("cache-maint", "maint-secret")
FLUSH_ADMIN = ("cache-flush-admin", "flush-secret")
SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
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


def _ansible(argv):
    """Run an Ansible command with the json callback; return (rc, parsed output)."""
    proc = subprocess.run(
        argv,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def _flush(user, check=False, **args):
    """Run the real bosun.platform.redis_flush on the cache host as ``user``; its result.

    Through ``ansible`` with the json callback: testinfra's host.ansible() reads --tree
    output, which no longer says whether the module failed.
    """
    name, password = user
    args.update(login_user=name, login_password=password)
    argv = ["ansible", "--inventory", INVENTORY, "all", "-m", "bosun.platform.redis_flush", "-a", json.dumps(args)]
    _rc, out = _ansible(argv + (["--check"] if check else []))
    (result,) = out["plays"][0]["tasks"][0]["hosts"].values()
    return result


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


def test_maintenance_user_cannot_flush_a_database(host):
    """FLUSHDB/FLUSHALL ignore key patterns: the maintenance user must not have them."""
    app = _client(host, APP)
    app.set("session:flush", "keep")
    app.set("cache:flush", "x")
    maint = _client(host, MAINT)
    for command in (["FLUSHDB"], ["FLUSHDB", "ASYNC"], ["FLUSHALL"], ["FLUSHALL", "ASYNC"], ["SWAPDB", "0", "1"]):
        with pytest.raises(redis.exceptions.NoPermissionError):
            maint.execute_command(*command)
    for scope in ("db", "all"):
        result = _flush(MAINT, allow_delete_all=True, **{scope: True})
        assert result.get("failed") and "permission" in result["msg"] and "FLUSH" in result["msg"], result
        assert result["deleted"] == 0
    assert app.get("session:flush") == b"keep"
    assert app.get("cache:flush") == b"x"


def test_maintenance_user_cannot_touch_keys_outside_its_patterns(host):
    app = _client(host, APP)
    app.set("session:outside", "keep")
    maint = _client(host, MAINT)
    for command in (["GET", "session:outside"], ["UNLINK", "session:outside"], ["DEL", "session:outside"]):
        with pytest.raises(redis.exceptions.NoPermissionError):
            maint.execute_command(*command)
    # and it reads no value at all, not even its own keys'
    for command in (["GET", "cache:x"], ["DUMP", "cache:x"], ["KEYS", "*"], ["CONFIG", "GET", "*"]):
        with pytest.raises(redis.exceptions.NoPermissionError):
            maint.execute_command(*command)
    # every key asked for: the batch that holds a session key is refused whole
    result = _flush(MAINT, patterns=["*"], allow_delete_all=True)
    assert result.get("failed") and "permission" in result["msg"], result
    assert app.get("session:outside") == b"keep"


def test_redis_flush_as_the_maintenance_user_deletes_its_keys_only(host):
    app = _client(host, APP)
    app.mset({"cache:page:%d" % n: "p" for n in range(50)})
    app.set("session:inside", "keep")
    predicted = _flush(MAINT, check=True, patterns=["cache:page:*"])
    assert predicted["deleted"] == 50 and predicted["redis_version"], predicted
    assert app.exists("cache:page:0") == 1
    result = _flush(MAINT, patterns=["cache:page:*"], max_keys=100)
    assert not result.get("failed") and result["changed"] and result["deleted"] == 50, result
    assert app.exists(*["cache:page:%d" % n for n in range(50)]) == 0
    assert app.get("session:inside") == b"keep"


def test_whole_database_flush_needs_the_flush_admin_user(host):
    admin = _client(host, ADMIN, db=3)
    admin.mset({"scratch:%d" % n: "x" for n in range(5)})
    app = _client(host, APP)
    app.set("session:db0", "keep")
    flusher = _client(host, FLUSH_ADMIN)
    with pytest.raises(redis.exceptions.NoPermissionError):
        flusher.get("session:db0")
    with pytest.raises(redis.exceptions.NoPermissionError):
        flusher.set("session:db0", "x")
    result = _flush(FLUSH_ADMIN, whole_db=True, allow_delete_all=True, login_db=3)
    assert not result.get("failed") and result["deleted"] == 5, result
    assert admin.dbsize() == 0
    assert app.get("session:db0") == b"keep"


def test_maintenance_commands_that_ignore_key_patterns_are_refused(host):
    """The role refuses to give FLUSHDB (or any rule beyond plain commands) to the maintenance user."""
    before = host.check_output("sha256sum /etc/redis/users.acl")
    commands = ["scan", "unlink", "flushdb", "@all", "scan allkeys"]
    playbook = os.path.join(SCENARIO, "converge.yml")
    extra = json.dumps({"redis_maintenance_commands": commands})
    rc, out = _ansible(["ansible-playbook", "--inventory", INVENTORY, playbook, "--extra-vars", extra])
    assert rc != 0
    failed = [
        (task["task"]["name"], result.get("msg", ""))
        for play in out["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    assert len(failed) == 1 and "Refuse maintenance rights" in failed[0][0], failed
    refused = failed[0][1].split("refused:")[-1]
    for command in ("flushdb", "@all", "scan allkeys", "redis_flush_admin_password"):
        assert command in refused, failed
    assert host.check_output("sha256sum /etc/redis/users.acl") == before


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
    for _user, password in (ADMIN, APP, MONITOR, MAINT, FLUSH_ADMIN):
        assert password not in content
    assert content.startswith("user default off")


def test_kernel_settings_written(host):
    conf = host.file("/etc/sysctl.d/61-bosun-redis.conf")
    assert conf.contains("vm.overcommit_memory = 1")
    assert host.file("/etc/tmpfiles.d/bosun-redis-thp.conf").contains("transparent_hugepage/enabled")
