"""main() of nginx_upstream and app_release: argument handling, check mode, refusals."""

import json
import os

import pytest

from tests.support.modules import run_module
from tests.support.nginx import membership_file

SERVERS = [
    {"name": "app1", "address": "127.0.0.2", "port": 8000, "weight": 1, "max_fails": 3, "fail_timeout": "10s"},
    {"name": "app2", "address": "127.0.0.3", "port": 8000, "weight": 1, "max_fails": 3, "fail_timeout": "10s"},
]


def _conf(tmp_path):
    (tmp_path / "bosun").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\n")
    path = tmp_path / "bosun" / "upstream-app.conf"
    path.write_text(membership_file("app", SERVERS))
    return path


def test_nginx_upstream_check_mode_predicts_without_writing(tmp_path):
    path = _conf(tmp_path)
    before = path.read_text()
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/true"}
    result = run_module("nginx_upstream", args, check_mode=True)
    assert result["changed"] and result["down"] == ["app2"] and result["up"] == ["app1"]
    assert not result["reloaded"] and result["drained"] and result["remaining_connections"] == {}
    assert path.read_text() == before


def test_nginx_upstream_failed_configuration_test_keeps_the_file(tmp_path):
    path = _conf(tmp_path)
    before = path.read_text()
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/false", "reload": "none"}
    result = run_module("nginx_upstream", args)
    assert result["failed"] and str(path) in result["msg"] and "configuration test failed" in result["msg"]
    assert path.read_text() == before


def test_nginx_upstream_refuses_bad_names(tmp_path):
    result = run_module("nginx_upstream", {"conf_dir": str(tmp_path), "name": "../x"})
    assert result["failed"] and "letters, digits and _" in result["msg"]


def test_app_release_query_and_check_mode(tmp_path):
    root = tmp_path / "srv"
    (root / "releases" / "1.0.0").mkdir(parents=True)
    (root / "releases" / "1.0.0" / ".bosun-release.json").write_text("{}\n")
    os.symlink(str(root / "releases" / "1.0.0"), str(root / "current"))
    state = run_module("app_release", {"state": "query", "root": str(root)})
    assert not state["changed"]
    assert (state["current"], state["previous"], state["releases"]) == ("1.0.0", "", ["1.0.0"])
    installed = run_module("app_release", {"root": str(root), "release": "2.0.0"}, check_mode=True)
    assert installed["changed"] and installed["installed"]
    assert sorted(os.listdir(root / "releases")) == ["1.0.0"]
    switched = run_module(
        "app_release", {"state": "current", "root": str(root), "release": "1.0.0", "prune": True}, check_mode=True
    )
    assert not switched["changed"] and not switched["switched"] and switched["pruned"] == []


def test_app_release_refuses_an_unsafe_id_and_requires_one(tmp_path):
    result = run_module("app_release", {"state": "current", "root": str(tmp_path), "release": "../etc"})
    assert result["failed"] and 'release id "../etc" must match' in result["msg"]
    result = run_module("app_release", {"state": "current", "root": str(tmp_path)})
    assert result["failed"] and "release" in result["msg"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("address", "10.0.0.1:80;\n server evil"), ("address", "a b"), ("fail_timeout", "1s; include /etc/passwd")]
    + [("name", "app3\nserver 127.0.0.9:9;")],
)
def test_nginx_upstream_refuses_injected_members_and_keeps_the_file(tmp_path, field, value):
    servers = [dict(SERVERS[0]), dict(SERVERS[1], **{field: value})]
    (tmp_path / "bosun").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\n")
    path = tmp_path / "bosun" / "upstream-app.conf"
    path.write_text(membership_file("app", servers))
    before = path.read_text()
    # nginx -t stands in as /bin/true: only the module's own checks can refuse
    args = {"conf_dir": str(tmp_path), "hosts": ["app1"], "nginx_binary": "/bin/true", "reload": "none"}
    for check_mode in (True, False):
        result = run_module("nginx_upstream", args, check_mode=check_mode)
        assert result["failed"] and not result["changed"], result
        assert "member %s" % json.dumps(servers[1]["name"]) in result["msg"] and field in result["msg"]
        assert path.read_text() == before
