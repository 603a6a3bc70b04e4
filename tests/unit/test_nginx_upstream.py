"""Pure logic of nginx_upstream: parse, declare, plan, render, diff, the configuration test, ss."""

import json
import os
import stat

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _nginx_upstream as nu

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
VALIDATOR = os.path.join(ROOT, "roles", "nginx", "files", "bosun-nginx-validate")

SERVERS = [
    {
        "name": "app1",
        "address": "10.0.0.11",
        "port": 8000,
        "weight": 1,
        "max_fails": 3,
        "fail_timeout": "10s",
        "backup": False,
    },
    {
        "name": "app2",
        "address": "fd00::12",
        "port": 8001,
        "weight": 3,
        "max_fails": 2,
        "fail_timeout": "5s",
        "backup": False,
    },
    {
        "name": "spare",
        "address": "spare.internal",
        "port": 8000,
        "weight": 1,
        "max_fails": 3,
        "fail_timeout": "10s",
        "backup": True,
    },
    {
        "name": "local",
        "address": "unix:/run/app/app.sock",
        "port": 8000,
        "weight": 1,
        "max_fails": 3,
        "fail_timeout": "10s",
        "backup": False,
    },
]

# What the nginx role's template (upstream.conf.j2, before the module became the file's one
# writer) rendered through Ansible for SERVERS: load balancers converged by those releases
# hold these bytes, and must see no change.
TEMPLATE_PLAIN = (
    "# Ansible managed\n"
    '# Members of upstream "app". Written by bosun.platform.nginx and by its\n'
    "# `upstream` entry point (drain: tasks_from: upstream), which reads the state line below.\n"
    '# bosun-upstream-state: {"down": [], "name": "app", "servers": [{"address": "10.0.0.11", "backup'
    '": false, "fail_timeout": "10s", "max_fails": 3, "name": "app1", "port": 8000, "weight": 1}, {"a'
    'ddress": "fd00::12", "backup": false, "fail_timeout": "5s", "max_fails": 2, "name": "app2", "por'
    't": 8001, "weight": 3}, {"address": "spare.internal", "backup": true, "fail_timeout": "10s", "ma'
    'x_fails": 3, "name": "spare", "port": 8000, "weight": 1}, {"address": "unix:/run/app/app.sock", '
    '"backup": false, "fail_timeout": "10s", "max_fails": 3, "name": "local", "port": 8000, "weight":'
    " 1}]}\n"
    "server 10.0.0.11:8000 max_fails=3 fail_timeout=10s;  # app1\n"
    "server [fd00::12]:8001 weight=3 max_fails=2 fail_timeout=5s;  # app2\n"
    "server spare.internal:8000 max_fails=3 fail_timeout=10s backup;  # spare\n"
    "server unix:/run/app/app.sock max_fails=3 fail_timeout=10s;  # local\n"
)
TEMPLATE_DRAINED = (
    "# Ansible managed\n"
    '# Members of upstream "app". Written by bosun.platform.nginx and by its\n'
    "# `upstream` entry point (drain: tasks_from: upstream), which reads the state line below.\n"
    '# bosun-upstream-state: {"down": ["app2", "local", "spare"], "name": "app", "servers": [{"addres'
    's": "10.0.0.11", "backup": false, "fail_timeout": "10s", "max_fails": 3, "name": "app1", "port":'
    ' 8000, "weight": 1}, {"address": "fd00::12", "backup": false, "fail_timeout": "5s", "max_fails":'
    ' 2, "name": "app2", "port": 8001, "weight": 3}, {"address": "spare.internal", "backup": true, "f'
    'ail_timeout": "10s", "max_fails": 3, "name": "spare", "port": 8000, "weight": 1}, {"address": "u'
    'nix:/run/app/app.sock", "backup": false, "fail_timeout": "10s", "max_fails": 3, "name": "local",'
    ' "port": 8000, "weight": 1}]}\n'
    "server 10.0.0.11:8000 max_fails=3 fail_timeout=10s;  # app1\n"
    "server [fd00::12]:8001 weight=3 max_fails=2 fail_timeout=5s down;  # app2 (drained)\n"
    "server spare.internal:8000 max_fails=3 fail_timeout=10s backup down;  # spare (drained)\n"
    "server unix:/run/app/app.sock max_fails=3 fail_timeout=10s down;  # local (drained)\n"
)


def _text(state):
    """A membership file as the module writes it anew."""
    return nu.render(nu.header_for(state["name"]), state)


def _state(down=()):
    return {"name": "app", "servers": SERVERS, "down": sorted(down)}


@pytest.mark.parametrize(("text", "down"), [(TEMPLATE_PLAIN, ()), (TEMPLATE_DRAINED, ("app2", "local", "spare"))])
def test_a_file_of_the_old_template_is_what_the_module_writes(text, down):
    header, state = nu.parse(text)
    assert state == _state(down)
    assert nu.render(header, state) == text
    assert header == nu.header_for("app")
    # declared from the inventory's members, a new file is the same bytes
    assert _text(nu.declare("app", SERVERS, list(down))) == text
    assert nu.render(nu.header_to_keep("app", header), nu.declare("app", SERVERS, list(down), state)) == text


def test_render_after_a_change_is_the_file_with_the_new_state():
    header, state = nu.parse(TEMPLATE_PLAIN)
    new_state, summary = nu.plan(state, ["app2", "spare", "local"], "down")
    assert nu.render(header, new_state) == TEMPLATE_DRAINED
    assert summary["down"] == ["app2", "local", "spare"] and summary["up"] == ["app1"]
    assert [s["name"] for s in summary["drained"]] == ["app2", "spare", "local"]
    assert "server [fd00::12]:8001 weight=3 max_fails=2 fail_timeout=5s down;  # app2 (drained)" in nu.render(
        header, new_state
    )


def test_plan_up_and_idempotence():
    _header, state = nu.parse(_text(_state(["app1", "app2"])))
    new_state, summary = nu.plan(state, ["app1"], "up")
    assert new_state["down"] == ["app2"] and summary["up"] == ["app1", "spare", "local"]
    assert summary["drained"] == []
    again, _summary = nu.plan(new_state, ["app1"], "up")
    assert again == new_state


def test_plan_refuses_unknown_members():
    _header, state = nu.parse(_text(_state()))
    with pytest.raises(nu.UpstreamError, match=r"unknown: app9\."):
        nu.plan(state, ["app9"], "down")


def test_plan_refuses_emptying_unless_allowed():
    _header, state = nu.parse(_text(_state()))
    with pytest.raises(nu.UpstreamError, match="would leave no member up"):
        nu.plan(state, ["app1", "app2", "local"], "down")
    new_state, _summary = nu.plan(state, ["app1", "app2", "local"], "down", allow_all_down=True)
    assert new_state["down"] == ["app1", "app2", "local"]


def test_parse_refuses_a_file_without_state_line():
    with pytest.raises(nu.UpstreamError, match="/etc/nginx/x.conf has no line"):
        nu.parse("server 1.2.3.4:80;\n", "/etc/nginx/x.conf")
    with pytest.raises(nu.UpstreamError, match="not valid JSON"):
        nu.parse(nu.STATE_PREFIX + "{nope\n", "f")


def test_ss_filter_and_counts():
    members = [("app1", ["10.0.0.11"], 8000), ("app2", ["fd00::12", "10.0.0.12"], 8001)]
    assert nu.ss_filter(members) == (
        ["(", "dst", "10.0.0.11", "dport", "=", ":8000", ")", "or"]
        + ["(", "dst", "[fd00::12]", "dport", "=", ":8001", ")", "or"]
        + ["(", "dst", "10.0.0.12", "dport", "=", ":8001", ")"]
    )
    out = "0 0 10.0.0.1:41000 10.0.0.11:8000\n0 0 10.0.0.1:41002 10.0.0.11:8000\n0 0 [fd00::1]:41001 [fd00::12]:8001\n"
    assert nu.count_connections(out, members) == {"app1": 2, "app2": 1}


def test_wait_drained_polls_until_no_connection_left():
    outputs = ["0 0 10.0.0.1:1 10.0.0.11:8000\n", "0 0 10.0.0.1:1 10.0.0.11:8000\n", ""]
    calls, now = [], [0.0]

    def run(argv):
        calls.append(argv)
        return 0, outputs[len(calls) - 1], ""

    def sleep(seconds):
        now[0] += seconds

    counts, waited, drained = nu.wait_drained(
        run, "ss", [("app1", ["10.0.0.11"], 8000)], 60, sleep=sleep, clock=lambda: now[0]
    )
    assert (counts, waited, drained) == ({"app1": 0}, 2.0, True)
    assert calls[0][:6] == ["ss", "-H", "-t", "-n", "state", "established"]


def test_wait_drained_gives_up_after_the_timeout():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    counts, waited, drained = nu.wait_drained(
        lambda argv: (0, "0 0 a:1 10.0.0.11:8000\n", ""),
        "ss",
        [("app1", ["10.0.0.11"], 8000)],
        3,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert (counts, waited, drained) == ({"app1": 1}, 3.0, False)


def test_wait_drained_reports_a_failing_ss():
    with pytest.raises(nu.UpstreamError, match="rc 1"):
        nu.wait_drained(lambda argv: (1, "", "bad filter"), "ss", [("a", ["1.2.3.4"], 80)], 3)


def _fake_nginx(tmp_path, rc):
    """An nginx stand-in for the configuration test: it keeps the candidate it found in the
    copy it was pointed at, and fails naming a path of that copy, as nginx -t does."""
    fake = tmp_path / "nginx"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2 $3" = "-t -q -c" ] || exit 64\n'
        'copy=$(dirname "$4")\n'
        'cp "$copy/bosun/upstream-app.conf" "%s"\n'
        'echo "nginx: [emerg] bad thing in $copy/bosun/upstream-app.conf:3" >&2\n'
        "exit %d\n" % (tmp_path / "seen", rc)
    )
    fake.chmod(0o755)
    return str(fake)


def _conf_dir(tmp_path):
    conf = tmp_path / "conf"
    (conf / "bosun").mkdir(parents=True)
    (conf / "nginx.conf").write_text("include bosun/upstream-app.conf;\n")
    (conf / "bosun" / "upstream-app.conf").write_text("old\n")
    return conf


def _run(argv):
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_configuration_test_is_the_roles_script_on_a_copy(tmp_path):
    """The module tests with the script the role installs: the candidate goes into a copy of
    the tree, nginx's messages name the live paths, the live file is untouched."""
    conf = _conf_dir(tmp_path)
    calls = []

    def run(argv):
        calls.append(argv)
        return _run(argv)

    ok, message = nu.test_config(
        run, VALIDATOR, str(conf), "nginx.conf", "bosun/upstream-app.conf", "new\n", _fake_nginx(tmp_path, 1)
    )
    assert not ok and (tmp_path / "seen").read_text() == "new\n"
    assert message == "nginx: [emerg] bad thing in %s/bosun/upstream-app.conf:3" % conf
    assert (conf / "bosun" / "upstream-app.conf").read_text() == "old\n"
    assert calls[0][0] == VALIDATOR and calls[0][2:] == [
        "bosun/upstream-app.conf",
        str(conf),
        "nginx.conf",
        str(tmp_path / "nginx"),
    ]
    assert not os.path.exists(calls[0][1])  # the candidate's temporary file is gone
    ok, message = nu.test_config(
        _run, VALIDATOR, str(conf), "nginx.conf", "bosun/upstream-app.conf", "new\n", _fake_nginx(tmp_path, 0)
    )
    assert ok


def test_the_roles_script_keeps_its_interface_and_refuses_paths_outside(tmp_path):
    conf = _conf_dir(tmp_path)
    candidate = tmp_path / "candidate"
    candidate.write_text("new\n")
    nginx = _fake_nginx(tmp_path, 0)
    for relpath in ("/etc/passwd", "../x.conf", "bosun/../../x.conf"):
        rc, _out, err = _run([VALIDATOR, str(candidate), relpath, str(conf), "nginx.conf", nginx])
        assert rc == 2 and "must be relative" in err
    rc, _out, err = _run([VALIDATOR, str(candidate), "bosun/upstream-app.conf", str(conf), "/etc/nginx.conf", nginx])
    assert rc == 2
    # the role's `validate:` form: CANDIDATE RELPATH, the rest defaulted (nginx from PATH)
    rc, _out, _err = _run(
        ["env", "PATH=%s:/usr/bin:/bin" % tmp_path, VALIDATOR, str(candidate), "bosun/upstream-app.conf", str(conf)]
    )
    assert rc == 0 and (tmp_path / "seen").read_text() == "new\n"
    assert os.stat(VALIDATOR).st_mode & stat.S_IXUSR


# --- the members declared by the caller (the nginx role) -------------------------------


def test_declare_sets_the_drain_state_or_keeps_the_files():
    _header, current = nu.parse(TEMPLATE_DRAINED)
    assert nu.declare("app", SERVERS, ["app1", "app1"]) == _state(["app1"])
    # down not given: the file's drain state, for the members that remain
    assert nu.declare("app", SERVERS, None, current)["down"] == ["app2", "local", "spare"]
    assert nu.declare("app", SERVERS[:2], None, current)["down"] == ["app2"]
    assert nu.declare("app", SERVERS, None, None)["down"] == []
    # every member down is written as declared (the guard is the drain's)
    assert nu.declare("app", SERVERS, ["app1", "app2", "local"])["down"] == ["app1", "app2", "local"]
    assert nu.summarize(nu.declare("app", SERVERS, ["app2"])) == {
        "down": ["app2"],
        "up": ["app1", "spare", "local"],
        "drained": [],
    }


def test_declare_refuses_what_cannot_be_written():
    path = "/etc/nginx/bosun/upstream-app.conf"
    with pytest.raises(nu.UpstreamError, match="needs at least one member"):
        nu.declare("app", [], [], path=path)
    with pytest.raises(nu.UpstreamError, match="named twice: app1"):
        nu.declare("app", [SERVERS[0], dict(SERVERS[1], name="app1")], [], path=path)
    with pytest.raises(nu.UpstreamError, match="down names app9, which are not members"):
        nu.declare("app", SERVERS, ["app9"], path=path)
    with pytest.raises(nu.UpstreamError, match=r'member "app2".*fail_timeout'):
        nu.declare("app", [SERVERS[0], dict(SERVERS[1], fail_timeout="1s; include /etc/passwd")], [], path=path)


def test_a_declared_file_keeps_a_header_of_comments_only():
    assert nu.header_to_keep("app", ["# Managed by the platform team", "# upstream app"]) == [
        "# Managed by the platform team",
        "# upstream app",
    ]
    assert nu.header_to_keep("app", ["# ok", "server 10.9.9.9:80;"]) == nu.header_for("app")
    assert nu.header_to_keep("app", []) == nu.header_for("app")


def test_diff_of_the_membership_file():
    path = "/etc/nginx/bosun/upstream-app.conf"
    assert nu.diff(path, TEMPLATE_PLAIN, TEMPLATE_DRAINED) == {
        "before": TEMPLATE_PLAIN,
        "after": TEMPLATE_DRAINED,
        "before_header": path,
        "after_header": path,
    }
    assert nu.diff(path, None, TEMPLATE_PLAIN) == {
        "before": "",
        "after": TEMPLATE_PLAIN,
        "before_header": path + " (absent)",
        "after_header": path,
    }


def test_write_keeps_mode(tmp_path):
    target = tmp_path / "f.conf"
    target.write_text("a\n")
    os.chmod(target, 0o640)
    nu.write(str(target), "b\n")
    assert target.read_text() == "b\n" and (os.stat(target).st_mode & 0o777) == 0o640


# --- what may enter a server line -----------------------------------------------------
VARS = os.path.join(ROOT, "roles", "nginx", "vars", "main.yml")

# (field, value) pairs that would put text of the inventory's choosing into nginx's
# configuration, or values nginx would misread.
INJECTIONS = [
    ("address", "10.0.0.1:80;\n server evil"),
    ("address", "a b"),
    ("address", "10.0.0.1;"),
    ("address", "10.0.0.1:80"),
    ("address", "[fd00::1]"),
    ("address", "999.0.0.1"),
    ("address", "app.internal\n"),
    ("address", "unix:/run/app.sock; server evil"),
    ("address", "unix:/run/a b.sock"),
    ("address", "unix:/run/{x}.sock"),
    ("address", ""),
    ("name", "app3\nserver 127.0.0.9:9;"),
    ("name", "a b"),
    ("name", "app1;"),
    ("name", ""),
    ("fail_timeout", "1s; include /etc/passwd"),
    ("fail_timeout", "10s\n"),
    ("fail_timeout", "10s; #"),
    ("fail_timeout", "ten"),
    ("fail_timeout", ""),
    ("port", 0),
    ("port", 70000),
    ("port", "8000;"),
    ("weight", 0),
    ("weight", "2 backup"),
    ("weight", True),
    ("max_fails", -1),
    ("max_fails", "3;"),
    ("backup", "yes"),
]

VALID = [
    ("address", "10.0.0.11"),
    ("address", "fd00::12"),
    ("address", "::1"),
    ("address", "app-1.lab.example.com."),
    ("address", "bosun_app_1"),
    ("address", "localhost"),
    ("address", "unix:/run/app/app.sock"),
    ("name", "app-1.lab"),
    ("name", "10.0.0.11"),
    ("fail_timeout", "10s"),
    ("fail_timeout", "1m"),
    ("fail_timeout", "10"),
    ("fail_timeout", "500ms"),
    ("fail_timeout", "1h30m"),
    ("fail_timeout", 10),
    ("weight", 5),
    ("max_fails", 0),
    ("port", 65535),
]


def _one(field, value):
    servers = [dict(SERVERS[0]), dict(SERVERS[1])]
    servers[1][field] = value
    return {"name": "app", "servers": servers, "down": []}


def _file(state):
    return nu.STATE_PREFIX + json.dumps(state, sort_keys=True) + "\n"


@pytest.mark.parametrize(("field", "value"), INJECTIONS)
def test_parse_refuses_a_member_field_nginx_must_not_read(field, value):
    state = _one(field, value)
    who = json.dumps(state["servers"][1]["name"])
    with pytest.raises(nu.UpstreamError) as caught:
        nu.parse(_file(state), "/etc/nginx/bosun/upstream-app.conf")
    message = str(caught.value)
    assert "/etc/nginx/bosun/upstream-app.conf" in message
    assert "member %s" % who in message and field in message
    assert "\n" not in message


@pytest.mark.parametrize(("field", "value"), VALID)
def test_parse_accepts_the_forms_nginx_takes(field, value):
    state = _one(field, value)
    _header, parsed = nu.parse(_file(state))
    assert parsed == state


def test_a_unix_socket_member_is_written_without_a_port():
    assert "server unix:/run/app/app.sock max_fails=3 fail_timeout=10s down;  # local (drained)\n" in TEMPLATE_DRAINED
    header, parsed = nu.parse(TEMPLATE_DRAINED)
    assert nu.render(header, parsed) == TEMPLATE_DRAINED


def test_the_role_checks_members_with_the_same_patterns():
    """The role's preflight (vars/main.yml) and the module refuse the same values."""
    import yaml

    with open(VARS, encoding="utf-8") as f:
        role = yaml.safe_load(f)["__nginx_upstream_patterns"]
    assert role == nu.PATTERNS
