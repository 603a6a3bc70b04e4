"""main() of nginx_upstream and app_release: argument handling, check mode, refusals."""

import json
import os

import pytest

from tests.support.modules import run_module
from tests.support.nginx import membership_file

# The configuration test the nginx role installs; the module's default path is where the
# role puts it, absent on the test machine.
VALIDATOR = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "roles", "nginx", "files", "bosun-nginx-validate"
)

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
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/true", "validator": VALIDATOR}
    result = run_module("nginx_upstream", args, check_mode=True)
    assert result["changed"] and result["down"] == ["app2"] and result["up"] == ["app1"]
    assert not result["reloaded"] and result["drained"] and result["remaining_connections"] == {}
    assert path.read_text() == before


def test_nginx_upstream_failed_configuration_test_keeps_the_file(tmp_path):
    path = _conf(tmp_path)
    before = path.read_text()
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/false", "reload": "none"}
    for check_mode in (True, False):
        result = run_module("nginx_upstream", dict(args, validator=VALIDATOR), check_mode=check_mode)
        assert result["failed"] and str(path) in result["msg"] and "configuration test failed" in result["msg"]
        assert path.read_text() == before


def test_nginx_upstream_without_the_roles_configuration_test(tmp_path):
    """A real run refuses to write untested; a check run (before the role installed the test) warns."""
    path = _conf(tmp_path)
    before = path.read_text()
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/true", "reload": "none"}
    args["validator"] = str(tmp_path / "no-such-validate")
    result = run_module("nginx_upstream", args)
    assert result["failed"] and not result["changed"]
    assert "configuration test %s is missing" % args["validator"] in result["msg"]
    predicted = run_module("nginx_upstream", args, check_mode=True)
    assert predicted["changed"] and not predicted.get("failed")
    assert "check mode skipped the test" in json.dumps(predicted.get("warnings", []))
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
    args["validator"] = VALIDATOR
    for check_mode in (True, False):
        result = run_module("nginx_upstream", args, check_mode=check_mode)
        assert result["failed"] and not result["changed"], result
        assert "member %s" % json.dumps(servers[1]["name"]) in result["msg"] and field in result["msg"]
        assert path.read_text() == before


# --- diff, and the members declared by the nginx role ----------------------------------

ROLE_SERVERS = [dict(server, backup=False) for server in SERVERS]


def _declare_args(tmp_path, **extra):
    args = {
        "conf_dir": str(tmp_path),
        "servers": SERVERS,
        "down": [],
        "nginx_binary": "/bin/true",
        "validator": VALIDATOR,
        "reload": "none",
        "_ansible_diff": True,
    }
    args.update(extra)
    return args


@pytest.mark.parametrize("check_mode", [True, False])
def test_nginx_upstream_diff_of_a_drain(tmp_path, check_mode):
    path = _conf(tmp_path)
    before = path.read_text()
    args = {"conf_dir": str(tmp_path), "hosts": ["app2"], "nginx_binary": "/bin/true", "reload": "none"}
    args.update(validator=VALIDATOR, wait=False, _ansible_diff=True)
    result = run_module("nginx_upstream", args, check_mode=check_mode)
    assert result["changed"], result
    assert result["diff"] == {
        "before": before,
        "after": membership_file("app", SERVERS, down=["app2"]),
        "before_header": str(path),
        "after_header": str(path),
    }
    assert path.read_text() == (before if check_mode else result["diff"]["after"])
    again = run_module("nginx_upstream", args, check_mode=check_mode)
    assert again["changed"] is check_mode
    assert (again["diff"]["before"] == again["diff"]["after"]) is not check_mode
    no_diff = run_module("nginx_upstream", dict(args, _ansible_diff=False), check_mode=check_mode)
    assert "diff" not in no_diff


def test_nginx_upstream_writes_the_roles_file_from_the_members(tmp_path):
    (tmp_path / "bosun").mkdir()
    (tmp_path / "nginx.conf").write_text("events {}\n")
    path = tmp_path / "bosun" / "upstream-app.conf"
    expected = membership_file("app", ROLE_SERVERS, down=["app1"])
    args = _declare_args(tmp_path, down=["app1"])
    predicted = run_module("nginx_upstream", args, check_mode=True)
    assert predicted["changed"] and not path.exists()
    assert predicted["diff"] == {
        "before": "",
        "after": expected,
        "before_header": "%s (absent)" % path,
        "after_header": str(path),
    }
    assert (predicted["down"], predicted["up"]) == (["app1"], ["app2"])
    written = run_module("nginx_upstream", args)
    assert written["changed"] and not written["reloaded"] and written["diff"] == predicted["diff"]
    assert path.read_text() == expected and (os.stat(path).st_mode & 0o7777) == 0o644
    for check_mode in (True, False):
        again = run_module("nginx_upstream", args, check_mode=check_mode)
        assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"] == expected


def test_nginx_upstream_declared_members_keep_a_file_of_the_old_template(tmp_path):
    """A load balancer converged before the module wrote the file: same bytes, no change."""
    path = _conf(tmp_path)
    path.write_text(membership_file("app", ROLE_SERVERS, down=["app2"]))
    os.chmod(path, 0o644)
    before = path.read_text()
    for check_mode in (True, False):
        result = run_module("nginx_upstream", _declare_args(tmp_path, down=["app2"]), check_mode=check_mode)
        assert not result["changed"] and path.read_text() == before
    # down not given: the file's drain state stays; a drain on top works as in the entry point
    kept = run_module("nginx_upstream", _declare_args(tmp_path, down=None, hosts=["app1"], state="up"))
    assert not kept["changed"] and kept["down"] == ["app2"]
    reset = run_module("nginx_upstream", _declare_args(tmp_path))
    assert reset["changed"] and path.read_text() == membership_file("app", ROLE_SERVERS)


def test_nginx_upstream_declared_members_replace_a_file_it_cannot_read_and_set_its_mode(tmp_path):
    path = _conf(tmp_path)
    path.write_text("server 127.0.0.9:9;\n")
    os.chmod(path, 0o600)
    result = run_module("nginx_upstream", _declare_args(tmp_path, mode="0644"))
    assert result["changed"] and path.read_text() == membership_file("app", ROLE_SERVERS)
    assert (os.stat(path).st_mode & 0o7777) == 0o644
    os.chmod(path, 0o600)
    mode_only = run_module("nginx_upstream", _declare_args(tmp_path, mode="0644"), check_mode=True)
    assert mode_only["changed"] and (os.stat(path).st_mode & 0o7777) == 0o600


@pytest.mark.parametrize(
    ("servers", "down", "message"),
    [
        ([], [], "needs at least one member"),
        ([SERVERS[0], dict(SERVERS[1], name="app1")], [], "named twice: app1"),
        (SERVERS, ["app9"], "down names app9, which are not members"),
        ([SERVERS[0], dict(SERVERS[1], address="10.0.0.1:80;\n server evil")], [], 'member "app2"'),
    ],
)
def test_nginx_upstream_refuses_declared_members_it_cannot_write(tmp_path, servers, down, message):
    path = _conf(tmp_path)
    before = path.read_text()
    for check_mode in (True, False):
        result = run_module(
            "nginx_upstream", _declare_args(tmp_path, servers=servers, down=down), check_mode=check_mode
        )
        assert result["failed"] and not result["changed"] and message in result["msg"], result
        assert path.read_text() == before


def test_nginx_upstream_down_needs_servers(tmp_path):
    _conf(tmp_path)
    result = run_module("nginx_upstream", {"conf_dir": str(tmp_path), "down": ["app1"]})
    assert result["failed"] and "down" in result["msg"] and "servers" in result["msg"]
