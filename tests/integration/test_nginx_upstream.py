"""nginx_upstream against a real nginx on loopback, with two real backends behind it.

Probes independent of the module: which backend answers through nginx, the live file's
bytes, ``nginx -t`` on the live tree, and ``ss`` for connections.
"""

import http.client
import json
import os
import subprocess
import threading
import time

import pytest

from tests.support.collection import ROOT
from tests.support.nginx import NamedBackend, UpstreamNginx, membership_file

VALIDATOR = os.path.join(ROOT, "roles", "nginx", "files", "bosun-nginx-validate")


@pytest.fixture
def lb():
    with NamedBackend("app1", "127.0.0.2") as app1, NamedBackend("app2", "127.0.0.3") as app2:
        servers = [
            {
                "name": backend.name,
                "address": backend.address,
                "port": backend.port,
                "weight": 1,
                "max_fails": 3,
                "fail_timeout": "10s",
                "backup": False,
            }
            for backend in (app1, app2)
        ]
        with UpstreamNginx(servers) as server:
            server.servers = servers
            yield server


def _args(lb, **extra):
    # The validator the nginx role installs on a load balancer, from the collection's tree.
    args = {"name": "app", "conf_dir": lb.dir, "reload": "signal", "drain_timeout": 10, "validator": VALIDATOR}
    args.update(extra)
    return args


def _get(lb, path="/", timeout=15):
    conn = http.client.HTTPConnection(lb.host, lb.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _served_by(lb, count=8):
    return {_get(lb)[1] for _request in range(count)}


def _eventually(check, seconds=10):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in %s s" % seconds
        time.sleep(0.2)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_drain_and_enable_through_a_real_reload(lb, run_module):
    assert _served_by(lb) == {"app1", "app2"}
    result = run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    assert result["changed"] and result["reloaded"] and result["drained"]
    assert (result["down"], result["up"]) == (["app2"], ["app1"])
    assert result["remaining_connections"] == {"app2": 0}
    assert _read(lb.membership) == membership_file("app", lb.servers, down=["app2"])
    _eventually(lambda: _served_by(lb) == {"app1"})
    assert subprocess.run(["nginx", "-t", "-q", "-c", lb.conf], check=False).returncode == 0

    again = run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    assert not again["changed"] and not again["reloaded"]

    up = run_module("nginx_upstream", _args(lb, hosts=["app2"], state="up"))
    assert up["changed"] and up["down"] == [] and up["remaining_connections"] == {}
    assert _read(lb.membership) == membership_file("app", lb.servers)
    _eventually(lambda: _served_by(lb) == {"app1", "app2"})


def test_drain_waits_for_a_request_in_flight(lb, run_module):
    # Only app1 is up, so the slow request goes there; then app2 comes back and app1 is drained.
    run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    _eventually(lambda: _served_by(lb) == {"app1"})
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(zip(("status", "body"), _get(lb, "/slow?seconds=4"))))
    thread.start()
    time.sleep(0.5)
    run_module("nginx_upstream", _args(lb, hosts=["app2"], state="up"))
    result = run_module("nginx_upstream", _args(lb, hosts=["app1"], state="down"))
    thread.join(30)
    assert slow == {"status": 200, "body": "app1"}
    assert result["drained"] and result["remaining_connections"] == {"app1": 0}
    assert result["waited"] >= 1, result
    out = subprocess.run(
        ["ss", "-H", "-t", "-n", "state", "established", "dst", "127.0.0.2"], capture_output=True, text=True, check=True
    ).stdout
    assert ":%d" % lb.servers[0]["port"] not in out


@pytest.mark.parametrize("fail_on_timeout", [True, False])
def test_drain_timeout_reports_the_remaining_connections(lb, run_module, fail_on_timeout):
    thread = threading.Thread(target=lambda: _get(lb, "/slow?seconds=5"))
    # Only app1 up, so the slow request is on app1 for sure; then app1 drains with app2 back.
    run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    _eventually(lambda: _served_by(lb) == {"app1"})
    thread.start()
    time.sleep(0.5)
    run_module("nginx_upstream", _args(lb, hosts=["app2"], state="up"))
    result = run_module(
        "nginx_upstream", _args(lb, hosts=["app1"], state="down", drain_timeout=1, fail_on_timeout=fail_on_timeout)
    )
    thread.join(30)
    assert result["drained"] is False
    assert result["remaining_connections"] == {"app1": 1}
    assert result["down"] == ["app1"]
    if fail_on_timeout:
        assert result["failed"] and "still holds established connections to app1" in result["msg"]
    else:
        assert not result.get("failed")


def test_a_configuration_that_fails_nginx_t_never_goes_live(lb, run_module):
    # A member nginx cannot resolve, written into the state line only (the live file still
    # passes): rendering the new membership from it must fail the whole-configuration test.
    servers = lb.servers + [dict(lb.servers[0], name="ghost", address="no-such-host.invalid")]
    live = membership_file("app", lb.servers).splitlines(keepends=True)
    broken_state = membership_file("app", servers).splitlines(keepends=True)[3]
    text = "".join(live[:3] + [broken_state] + live[4:])
    with open(lb.membership, "w", encoding="utf-8") as f:
        f.write(text)
    result = run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    assert result["failed"]
    assert lb.membership in result["msg"] and "no-such-host.invalid" in result["msg"]
    assert _read(lb.membership) == text
    assert _served_by(lb) == {"app1", "app2"}


def test_check_mode_predicts_and_changes_nothing(lb, run_module):
    before = _read(lb.membership)
    mtime = os.stat(os.path.join(lb.dir, "nginx.pid")).st_mtime
    result = run_module("nginx_upstream", _args(lb, hosts=["app1"], state="down"), check_mode=True)
    assert result["changed"] and result["down"] == ["app1"] and not result["reloaded"]
    assert result["waited"] == 0
    assert _read(lb.membership) == before
    assert os.stat(os.path.join(lb.dir, "nginx.pid")).st_mtime == mtime
    assert _served_by(lb) == {"app1", "app2"}
    unchanged = run_module("nginx_upstream", _args(lb, hosts=["app1"], state="up"), check_mode=True)
    assert not unchanged["changed"]


def test_refusals_name_the_cause(lb, run_module):
    result = run_module("nginx_upstream", _args(lb, hosts=["app1", "app2"], state="down"))
    assert result["failed"] and "would leave no member up" in result["msg"]
    result = run_module("nginx_upstream", _args(lb, hosts=["app9"], state="down"))
    assert result["failed"] and "unknown: app9" in result["msg"]
    assert _read(lb.membership) == membership_file("app", lb.servers)
    allowed = run_module("nginx_upstream", _args(lb, hosts=["app1", "app2"], state="down", allow_all_down=True))
    assert allowed["changed"] and allowed["up"] == []
    missing = run_module("nginx_upstream", _args(lb, name="other", hosts=["app1"]))
    assert missing["failed"] and "upstream-other.conf is missing" in missing["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # passes nginx -t: without the check a server of the file's choosing goes live
        ("name", "app3\nserver 127.0.0.9:9;"),
        ("address", "10.0.0.1:80;\n server evil"),
        ("fail_timeout", "1s; include /etc/passwd"),
    ],
)
def test_an_injected_member_is_refused_and_the_live_configuration_kept(lb, run_module, field, value):
    # The bad member is in the state line only (the live server lines still pass nginx -t),
    # as a hand-edited or tampered file would have it.
    member = dict(lb.servers[0], name="app3")
    member[field] = value
    servers = lb.servers + [member]
    live = membership_file("app", lb.servers).splitlines(keepends=True)
    tampered = membership_file("app", servers).splitlines(keepends=True)[3]
    text = "".join(live[:3] + [tampered] + live[4:])
    with open(lb.membership, "w", encoding="utf-8") as f:
        f.write(text)
    mtime = os.stat(os.path.join(lb.dir, "nginx.pid")).st_mtime
    result = run_module("nginx_upstream", _args(lb, hosts=["app2"], state="down"))
    assert result["failed"] and not result["changed"] and not result["reloaded"]
    assert lb.membership in result["msg"] and "member %s" % json.dumps(servers[-1]["name"]) in result["msg"]
    assert field in result["msg"]
    assert _read(lb.membership) == text
    assert os.stat(os.path.join(lb.dir, "nginx.pid")).st_mtime == mtime
    assert subprocess.run(["nginx", "-t", "-q", "-c", lb.conf], capture_output=True, check=False).returncode == 0
    assert _served_by(lb) == {"app1", "app2"}
