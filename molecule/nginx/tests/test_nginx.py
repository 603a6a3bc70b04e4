"""Behaviour of a load balancer converged with bosun.platform.nginx.

Requests go from the test machine to the container over the scenario's network, through
nginx, to the two stand-in app servers (app1, app2), which answer with their name and the
headers they received.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
SERVER_NAME = "lb.bosun.test"
SITE = "/etc/nginx/conf.d/bosun-site.conf"
MEMBERSHIP = "/etc/nginx/bosun/upstream-app.conf"
MEMBERSHIP_TASK = "Write the upstream's members (whole configuration tested before it goes live)"
# The membership file as the role's template wrote it before bosun.platform.nginx_upstream
# became its one writer (rendered by Ansible for this scenario's two members): a load
# balancer converged by those releases holds these bytes and must see no change.
EARLIER_MEMBERSHIP = (
    "# Ansible managed\n"
    '# Members of upstream "app". Written by bosun.platform.nginx and by its\n'
    "# `upstream` entry point (drain: tasks_from: upstream), which reads the state line below.\n"
    '# bosun-upstream-state: {"down": [], "name": "app", "servers": [{"address": "127.0.0.2", "backup": false, '
    '"fail_timeout": "10s", "max_fails": 3, "name": "app1", "port": 8000, "weight": 1}, {"address": "127.0.0.3", '
    '"backup": false, "fail_timeout": "10s", "max_fails": 3, "name": "app2", "port": 8000, "weight": 1}]}\n'
    "server 127.0.0.2:8000 max_fails=3 fail_timeout=10s;  # app1\n"
    "server 127.0.0.3:8000 max_fails=3 fail_timeout=10s;  # app2\n"
)


def _address(host):
    return host.interface("eth0").addresses[0]


def _context(version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the lab's certificate is self-signed
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def _https(host, path="/", headers=None, conn=None, timeout=15):
    own = conn is None
    if own:
        conn = http.client.HTTPSConnection(_address(host), 443, context=_context(), timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": SERVER_NAME, **(headers or {})})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        if own:
            conn.close()


def _served_by(host, count):
    """Which stand-in answered each of `count` requests (new connection each time)."""
    return [json.loads(_https(host, "/who")[1])["server"] for _request in range(count)]


def _playbook(name, extra_vars, options=()):
    """Run a playbook of this scenario against its inventory; return (rc, parsed json output)."""
    proc = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            INVENTORY,
            os.path.join(SCENARIO, name),
            "--extra-vars",
            json.dumps(extra_vars),
            *options,
        ],
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = {"raw": proc.stdout, "stderr": proc.stderr}
    return proc.returncode, out


def _task_results(out, task_name):
    for play in out.get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ")[-1] == task_name:
                yield from task["hosts"].values()


def _failures(out):
    return [
        result.get("msg", "")
        for play in out.get("plays", [])
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]


WAIT_TASK = "Wait until this load balancer holds no connection to the drained members"


def _drain(hosts, state, **extra):
    """Run the drain entry point as the deploy does; return its nginx_upstream_result."""
    rc, out = _playbook("drain.yml", {"drain_hosts": hosts, "drain_state": state, **extra})
    assert rc == 0, _failures(out) or out
    result = next(_task_results(out, "Show the result"))["nginx_upstream_result"]
    waits = [wait for wait in _task_results(out, WAIT_TASK) if "delta" in wait]
    result["_waited"] = _seconds(waits[0]["delta"]) if waits else None
    return result


def _seconds(delta):
    hours, minutes, seconds = delta.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_http_redirects_to_https(host):
    conn = http.client.HTTPConnection(_address(host), 80, timeout=10)
    conn.request("GET", "/some/path?x=1", headers={"Host": SERVER_NAME})
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://%s/some/path?x=1" % SERVER_NAME


def test_https_answers_with_security_headers_and_the_app(host):
    resp, body = _https(host, "/hello")
    assert resp.status == 200
    assert json.loads(body)["server"] in ("app1", "app2")
    assert resp.getheader("Strict-Transport-Security") == "max-age=63072000"
    assert resp.getheader("X-Frame-Options") == "DENY"
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.getheader("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert "default-src 'self'" in resp.getheader("Content-Security-Policy")
    assert resp.getheader("Server") == "nginx"  # no version


def test_security_headers_on_errors_too(host):
    conn = http.client.HTTPSConnection(_address(host), 443, context=_context(), timeout=10)
    conn.request("GET", "/", headers={"Host": SERVER_NAME, "Content-Length": "bad"})
    resp = conn.getresponse()
    assert resp.status == 400
    assert resp.getheader("Strict-Transport-Security") == "max-age=63072000"


def test_forwarded_headers_reach_the_app(host):
    gateway = host.check_output("ip -4 route show default").split()[2]
    resp, body = _https(host, "/echo", headers={"X-Forwarded-For": "203.0.113.9"})
    seen = json.loads(body)["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.9, %s" % gateway
    assert seen["x-real-ip"] == gateway
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == SERVER_NAME
    assert seen["x-forwarded-port"] == "443"
    assert seen["host"] == SERVER_NAME
    assert len(seen["x-request-id"]) == 32
    # Plain requests reuse upstream keepalive connections: no Connection: close/upgrade.
    assert "connection" not in seen
    assert "upgrade" not in seen


def test_websocket_upgrade_passes_through(host):
    key = base64.b64encode(os.urandom(16)).decode()
    expected = base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode(), usedforsecurity=False).digest()
    ).decode()
    request = (
        "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (SERVER_NAME, key)
    )
    with (
        socket.create_connection((_address(host), 443), timeout=10) as raw,
        _context().wrap_socket(raw) as tls,
    ):
        tls.sendall(request.encode())
        data = b""
        deadline = time.monotonic() + 10
        while b"hello from" not in data and time.monotonic() < deadline:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _blank, frame = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), lines
    headers = {k.lower(): v.strip() for k, _colon, v in (line.partition(":") for line in lines[1:])}
    assert headers["upgrade"].lower() == "websocket"
    assert headers["sec-websocket-accept"] == expected
    assert frame[2:].decode() in ("hello from app1", "hello from app2")


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_tls_modern_versions_accepted(host, version):
    with (
        socket.create_connection((_address(host), 443), timeout=10) as raw,
        _context(getattr(ssl.TLSVersion, version)).wrap_socket(raw) as tls,
    ):
        assert tls.version() == version.replace("_", ".")


def test_tls_1_1_refused_by_the_server(host):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = _context(ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client offers TLS 1.1 for real
    with pytest.raises(ssl.SSLError) as err, socket.create_connection((_address(host), 443), timeout=10) as raw:
        ctx.wrap_socket(raw).close()
    # The server's alert, not a client-side refusal.
    assert "ALERT_PROTOCOL_VERSION" in str(err.value)


def test_stub_status_on_loopback_only(host):
    status = host.check_output("curl -sf http://127.0.0.1:8080/stub_status")
    assert status.startswith("Active connections:")
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening
    with pytest.raises(OSError):
        socket.create_connection((_address(host), 8080), timeout=3).close()


def test_nginx_exporter_publishes_stub_status_on_the_private_address(host):
    """bosun.platform.exporters (nginx): reads the loopback stub_status, serves on the private address."""
    conn = http.client.HTTPConnection(_address(host), 9113, timeout=15)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    assert "\nnginx_up 1" in metrics, metrics[:2000]
    assert "nginx_connections_accepted" in metrics
    assert not host.socket("tcp://0.0.0.0:9113").is_listening


def test_access_log_is_json(host):
    agent = 'bosun-test "quoted" \\ agent'
    _https(host, "/logged?q=1", headers={"User-Agent": agent})
    time.sleep(0.5)
    lines = host.check_output("tail -n 50 /var/log/nginx/access.log").splitlines()
    entries = [json.loads(line) for line in lines]  # every line is valid JSON
    ours = [entry for entry in entries if entry["uri"] == "/logged?q=1"]
    assert ours, lines
    assert ours[-1]["user_agent"] == agent
    assert ours[-1]["status"] == 200
    assert ours[-1]["ssl_protocol"] in ("TLSv1.2", "TLSv1.3")
    assert ours[-1]["upstream_addr"] in ("127.0.0.2:8000", "127.0.0.3:8000")


def test_rate_limit_answers_429_past_the_burst(host):
    conn = http.client.HTTPSConnection(_address(host), 443, context=_context(), timeout=15)
    statuses = []
    try:
        for _request in range(100):  # bounded; the scenario allows 10 r/s with a burst of 20
            resp, _body = _https(host, "/burst", conn=conn)
            statuses.append(resp.status)
    finally:
        conn.close()
        time.sleep(3)  # let the bucket refill for the other tests
    assert statuses.count(200) >= 20
    assert statuses.count(429) > 0
    assert statuses[:15] == [200] * 15  # the burst is served


def test_configuration_test_is_clean(host):
    assert host.run("nginx -t").rc == 0


def test_a_broken_configuration_never_goes_live(host):
    before = host.check_output("sha256sum %s" % SITE)
    rc, out = _playbook("converge.yml", {"nginx_extra_server_config": "this_is_not_a_directive on;"})
    assert rc != 0
    failures = " ".join(str(msg) for msg in _failures(out))
    assert "failed to validate" in failures
    # The live file is untouched, the live tree still passes, and nginx keeps serving.
    assert host.check_output("sha256sum %s" % SITE) == before
    assert "this_is_not_a_directive" not in host.file(SITE).content_string
    assert host.run("nginx -t").rc == 0
    assert _https(host, "/still-serving")[0].status == 200


def test_injected_upstream_members_are_refused_before_anything_is_written(host):
    """Inventory values with a newline or ";" never reach nginx's configuration."""
    membership = "/etc/nginx/bosun/upstream-app.conf"
    before = host.check_output("sha256sum %s %s" % (membership, SITE))
    servers = [
        {"name": "app1", "address": "127.0.0.2"},
        {"name": "app2", "address": "127.0.0.3", "fail_timeout": "1s; include /etc/passwd"},
        {"name": "app3\nserver 127.0.0.9:9;", "address": "127.0.0.4"},
        {"name": "app4", "address": "10.0.0.1:80;\n server evil"},
    ]
    rc, out = _playbook("converge.yml", {"nginx_upstream_servers": servers})
    assert rc != 0
    refused = list(_task_results(out, "Refuse member names, addresses and numbers that are not plain values"))
    assert refused and refused[0].get("failed"), _failures(out) or out
    message = refused[0]["msg"]
    for expected in (
        'member "app2": fail_timeout',
        'member "app3\\nserver 127.0.0.9:9;": name',
        'member "app4": address',
    ):
        assert expected in message, message
    changed = [
        task["task"]["name"]
        for play in out.get("plays", [])
        for task in play["tasks"]
        if any(result.get("changed") for result in task["hosts"].values())
    ]
    assert changed == []
    assert host.check_output("sha256sum %s %s" % (membership, SITE)) == before
    assert "127.0.0.9" not in host.file(membership).content_string
    assert sorted(set(_served_by(host, 10))) == ["app1", "app2"]


def test_drain_refuses_unknown_members_and_emptying_the_upstream(host):
    rc, out = _playbook("drain.yml", {"drain_hosts": ["app1", "app2"], "drain_state": "down"})
    assert rc != 0
    assert "would leave no member up" in " ".join(_failures(out))
    rc, out = _playbook("drain.yml", {"drain_hosts": ["app1"], "drain_state": "down", "nginx_upstream_hosts": ["app9"]})
    assert rc != 0
    assert "unknown: app9" in " ".join(_failures(out))
    assert sorted(set(_served_by(host, 10))) == ["app1", "app2"]


def test_drain_moves_traffic_and_waits_for_requests_in_flight(host):
    try:
        result = _drain(["app2"], "down")
        assert result["down"] == ["app2"] and result["drained"] and result["changed"]
        assert set(_served_by(host, 10)) == {"app1"}

        # A slow request now goes to app1; app2 comes back and app1 is drained: the drain
        # waits for the request in flight, which completes normally.
        slow = {}

        def _slow():
            resp, body = _https(host, "/slow?seconds=20", timeout=60)
            slow.update(status=resp.status, server=json.loads(body)["server"])

        thread = threading.Thread(target=_slow)
        thread.start()
        time.sleep(1)
        assert _drain(["app2"], "up")["down"] == []
        result = _drain(["app1"], "down")
        thread.join(60)
        assert slow == {"status": 200, "server": "app1"}
        assert result["_waited"] >= 2, result
        assert result["drained"] and result["remaining_connections"] == {"app1": 0}
        assert set(_served_by(host, 10)) == {"app2"}
        assert host.check_output("ss -Htn state established dst 127.0.0.2 dport = :8000") == ""
    finally:
        result = _drain(["app1", "app2"], "up")
    assert result["down"] == [] and result["up"] == ["app1", "app2"]
    assert sorted(set(_served_by(host, 10))) == ["app1", "app2"]
    # Marking up what is already up changes nothing.
    assert _drain(["app1"], "up")["changed"] is False


def test_the_membership_file_is_the_earlier_releases_bytes(host):
    membership = host.file(MEMBERSHIP)
    assert membership.content_string == EARLIER_MEMBERSHIP
    assert (membership.user, membership.group, membership.mode) == ("root", "root", 0o644)


def test_a_converge_resets_a_drain_and_shows_the_membership_diff(host):
    """The role writes the file through nginx_upstream: nginx_upstream_down (empty) replaces a
    drain left behind, the change is shown with --diff and tested before it goes live."""
    try:
        assert _drain(["app2"], "down")["down"] == ["app2"]
        assert set(_served_by(host, 10)) == {"app1"}
        drained = host.file(MEMBERSHIP).content_string
        rc, out = _playbook("converge.yml", {}, options=("--check", "--diff"))
        assert rc == 0, _failures(out) or out
        predicted = next(_task_results(out, MEMBERSHIP_TASK))
        assert predicted["changed"] and predicted["diff"]["before"] == drained
        assert predicted["diff"]["after"] == EARLIER_MEMBERSHIP
        assert host.file(MEMBERSHIP).content_string == drained
        rc, out = _playbook("converge.yml", {}, options=("--diff",))
        assert rc == 0, _failures(out) or out
        written = next(_task_results(out, MEMBERSHIP_TASK))
        assert written["changed"] and written["diff"] == predicted["diff"]
        assert "server 127.0.0.3:8000 max_fails=3 fail_timeout=10s down;  # app2 (drained)" in written["diff"]["before"]
        assert host.file(MEMBERSHIP).content_string == EARLIER_MEMBERSHIP
        assert sorted(set(_served_by(host, 10))) == ["app1", "app2"]
    finally:
        _drain(["app1", "app2"], "up")
