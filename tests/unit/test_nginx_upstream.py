"""Pure logic of nginx_upstream: parse, plan, render (same text as the role's template), ss."""

import json
import os

import jinja2
import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _nginx_upstream as nu

TEMPLATE = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "roles", "nginx", "templates", "upstream.conf.j2"
)

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
]


def _template(state):
    """Render the role's template as Ansible's template module does (trim_blocks)."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, autoescape=False)  # noqa: S701 - not HTML
    env.filters["to_json"] = json.dumps
    with open(TEMPLATE, encoding="utf-8") as f:
        return env.from_string(f.read()).render(ansible_managed="Ansible managed", __nginx_upstream_state=state)


def _state(down=()):
    return {"name": "app", "servers": SERVERS, "down": sorted(down)}


@pytest.mark.parametrize("down", [(), ("app2",), ("app1", "spare")])
def test_render_is_the_templates_text(down):
    text = _template(_state(down))
    header, state = nu.parse(text)
    assert state == _state(down)
    assert nu.render(header, state) == text


def test_render_after_a_change_is_the_template_with_the_new_state():
    header, state = nu.parse(_template(_state()))
    new_state, summary = nu.plan(state, ["app2"], "down")
    assert nu.render(header, new_state) == _template(_state(["app2"]))
    assert summary["down"] == ["app2"] and summary["up"] == ["app1", "spare"]
    assert [s["name"] for s in summary["drained"]] == ["app2"]
    assert "server [fd00::12]:8001 weight=3 max_fails=2 fail_timeout=5s down;  # app2 (drained)" in nu.render(
        header, new_state
    )


def test_plan_up_and_idempotence():
    _header, state = nu.parse(_template(_state(["app1", "app2"])))
    new_state, summary = nu.plan(state, ["app1"], "up")
    assert new_state["down"] == ["app2"] and summary["up"] == ["app1", "spare"]
    assert summary["drained"] == []
    again, _summary = nu.plan(new_state, ["app1"], "up")
    assert again == new_state


def test_plan_refuses_unknown_members():
    _header, state = nu.parse(_template(_state()))
    with pytest.raises(nu.UpstreamError, match=r"unknown: app9\."):
        nu.plan(state, ["app9"], "down")


def test_plan_refuses_emptying_unless_allowed():
    _header, state = nu.parse(_template(_state()))
    with pytest.raises(nu.UpstreamError, match="would leave no member up"):
        nu.plan(state, ["app1", "app2"], "down")
    new_state, _summary = nu.plan(state, ["app1", "app2"], "down", allow_all_down=True)
    assert new_state["down"] == ["app1", "app2"]


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


def test_config_test_uses_a_copy_and_names_the_error(tmp_path):
    conf = tmp_path / "conf"
    (conf / "bosun").mkdir(parents=True)
    (conf / "nginx.conf").write_text("include bosun/upstream-app.conf;\n")
    (conf / "bosun" / "upstream-app.conf").write_text("old\n")
    seen = {}

    def run(argv):
        copy = os.path.dirname(argv[-1])
        with open(os.path.join(copy, "bosun", "upstream-app.conf")) as f:
            seen["candidate"] = f.read()
        return 1, "", "nginx: [emerg] bad thing in %s/bosun/upstream-app.conf:3" % copy

    ok, message = nu.test_config(run, "nginx", str(conf), "nginx.conf", "bosun/upstream-app.conf", "new\n")
    assert not ok and seen["candidate"] == "new\n"
    assert message == "nginx: [emerg] bad thing in %s/bosun/upstream-app.conf:3" % conf
    assert (conf / "bosun" / "upstream-app.conf").read_text() == "old\n"


def test_write_keeps_mode(tmp_path):
    target = tmp_path / "f.conf"
    target.write_text("a\n")
    os.chmod(target, 0o640)
    nu.write(str(target), "b\n")
    assert target.read_text() == "b\n" and (os.stat(target).st_mode & 0o777) == 0o640


# --- what may enter a server line -----------------------------------------------------
VARS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "roles", "nginx", "vars", "main.yml")

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


def test_a_unix_socket_member_renders_as_the_template_does():
    servers = SERVERS + [dict(SERVERS[0], name="local", address="unix:/run/app/app.sock")]
    state = {"name": "app", "servers": servers, "down": ["local"]}
    text = _template(state)
    assert "server unix:/run/app/app.sock max_fails=3 fail_timeout=10s down;  # local (drained)\n" in text
    header, parsed = nu.parse(text)
    assert nu.render(header, parsed) == text


def test_the_role_checks_members_with_the_same_patterns():
    """The role's preflight (vars/main.yml) and the module refuse the same values."""
    import yaml

    with open(VARS, encoding="utf-8") as f:
        role = yaml.safe_load(f)["__nginx_upstream_patterns"]
    assert role == nu.PATTERNS
