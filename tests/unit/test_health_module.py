"""bosun.platform.health_check as a module: documentation = argument spec, no_log, main()."""

import ast
import json
import os

import pytest
import yaml
from ansible_collections.bosun.platform.plugins.doc_fragments import postgres as pg_fragment
from ansible_collections.bosun.platform.plugins.doc_fragments import redis as redis_fragment
from ansible_collections.bosun.platform.plugins.module_utils._checks import spec

from tests.support.modules import run_module

MODULE = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "modules", "health_check.py")


def module_doc(name):
    with open(MODULE, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return yaml.safe_load(node.value.value)
    raise AssertionError(name)


def compare(docs, argspec, path=""):
    """Every difference between documented options and the argument spec, as text."""
    problems = []
    for name in sorted(set(docs) | set(argspec)):
        where = path + name
        if name not in docs or name not in argspec:
            problems.append("%s: only in %s" % (where, "docs" if name in docs else "spec"))
            continue
        doc, arg = docs[name], argspec[name]
        for key in ("type", "default", "choices", "elements", "aliases"):
            want = arg.get(key, "str" if key == "type" else None)
            got = doc.get(key, "str" if key == "type" else None)
            if key == "default" and want is not None and doc.get("type") == "float":
                want, got = float(want), float(got) if got is not None else None
            if want != got:
                problems.append("%s: %s is %r in the spec, %r in the docs" % (where, key, want, got))
        if bool(arg.get("required")) != bool(doc.get("required")):
            problems.append("%s: required differs" % where)
        if "options" in arg or "suboptions" in doc:
            problems += compare(doc.get("suboptions") or {}, arg.get("options") or {}, where + ".")
    return problems


def test_documentation_matches_argument_spec_including_nested_options():
    assert compare(module_doc("DOCUMENTATION")["options"], spec.argument_spec()) == []


@pytest.mark.parametrize(("family", "fragment"), [("postgres", pg_fragment), ("redis", redis_fragment)])
def test_nested_connection_options_are_the_shared_ones(family, fragment):
    shared = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    nested = module_doc("DOCUMENTATION")["options"]["checks"]["suboptions"][family]["suboptions"]
    argspec = spec.check_options()[family]["options"]
    for name, doc in shared.items():
        assert name in nested and name in argspec, name
        for key in ("type", "choices", "aliases"):
            assert nested[name].get(key) == doc.get(key), (name, key)
        first = doc["description"] if isinstance(doc["description"], str) else doc["description"][0]
        assert " ".join(nested[name]["description"][0].split()) == " ".join(first.split()), name
        assert "default" not in argspec[name]  # resolved in plan.py: check, top level, family default


def test_every_password_is_no_log():
    top = spec.argument_spec()
    assert top["login_password"]["no_log"] is True
    checks = top["checks"]["options"]
    assert checks["postgres"]["options"]["login_password"]["no_log"] is True
    assert checks["redis"]["options"]["login_password"]["no_log"] is True


def test_examples_and_return_parse():
    examples = module_doc("EXAMPLES")
    assert all("bosun.platform.health_check" in task for task in examples)
    assert set(module_doc("RETURN")) == {"checks", "status", "summary", "duration_ms", "msg"}


def test_invalid_checks_fail_with_a_message_not_a_traceback():
    result = run_module(
        "health_check", {"checks": [{"type": "http"}, {"type": "tcp", "tcp": {"port": 1}, "crit": "x"}]}
    )
    assert result["failed"] is True and result["rc"] != 0
    assert "Traceback" not in result["msg"] + result["_stderr"]
    result = run_module("health_check", {"checks": [{"type": "http", "name": "api"}]})
    assert result["msg"] == "invalid checks: checks[0] (api): http checks need their options under the key http"
    assert result["changed"] is False


def test_passwords_never_appear_and_check_mode_reports_the_same(tmp_path):
    secret = "hunter2 'q' $x"
    checks = [
        {
            "name": "pg",
            "type": "postgres",
            "postgres": {"login_host": "127.0.0.1", "login_port": 1, "login_password": secret},
        },
        {"name": "cache", "type": "redis", "redis": {"login_port": 1, "login_password": secret, "login_user": "ops"}},
        {"name": "api", "type": "http", "http": {"url": "http://ops:%s@127.0.0.1:1/h" % "urlpw-777"}},
        {"name": "root", "type": "disk", "disk": {"path": str(tmp_path)}, "warn": 0, "crit": 100},
    ]
    for check_mode in (False, True):
        result = run_module("health_check", {"checks": checks, "fail_on": "crit"}, check_mode=check_mode)
        dumped = json.dumps(result)
        assert secret not in dumped and "urlpw-777" not in dumped, check_mode
        assert "Traceback" not in result["_stderr"]
        assert result["failed"] is True and result["changed"] is False
        assert [c["status"] for c in result["checks"]] == ["crit", "crit", "crit", "warn"]
        assert result["msg"].startswith("3 of 4 checks failed (fail_on=crit): pg crit: PostgreSQL 127.0.0.1:1/postgres")
        assert "cache crit: Redis 127.0.0.1:1 db 0: connection refused" in result["msg"]
        assert "api crit: GET http://127.0.0.1:1/h: connection refused" in result["msg"]
        assert result["summary"] == dict(ok=0, warn=1, unknown=0, crit=3, total=4)


# --- what AnsibleModule writes to syslog / the journal when it logs its invocation ---------
LOG_CAPTURE = '''
"""Record what AnsibleModule hands to syslog or the journal (a test double of both sinks)."""
import importlib.abc
import json
import os
import sys
import types

_PATH = os.environ["BOSUN_LOG_CAPTURE"]


def _record(sink, **fields):
    with open(_PATH, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(sink=sink, fields=fields), default=str) + "\\n")


if os.environ.get("BOSUN_LOG_SINK") == "journal":
    # a systemd host with python3-systemd: basic.py sends to the journal, fields included
    systemd = types.ModuleType("systemd")
    journal = types.ModuleType("systemd.journal")
    daemon = types.ModuleType("systemd.daemon")
    journal.send = lambda **fields: _record("journal", **fields)
    journal.sendv = lambda *fields: _record("journal", fields=list(fields))
    daemon.booted = lambda: True
    systemd.journal, systemd.daemon = journal, daemon
    sys.modules.update({"systemd": systemd, "systemd.journal": journal, "systemd.daemon": daemon})
else:
    # no python3-systemd: basic.py falls back to syslog(3)
    class _NoSystemd(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "systemd" or name.startswith("systemd."):
                raise ImportError("no systemd here")
            return None

    sys.meta_path.insert(0, _NoSystemd())
    import syslog

    syslog.openlog = lambda *args, **kwargs: _record("openlog", args=args)
    syslog.syslog = lambda *args: _record("syslog", args=args)
'''


@pytest.mark.parametrize("sink", ["syslog", "journal"])
def test_header_secrets_never_reach_syslog_or_the_journal(sink, tmp_path):
    token = "tok" + os.urandom(12).hex()
    cookie = "ck" + os.urandom(8).hex()
    declared = "sig" + os.urandom(8).hex()
    (tmp_path / "sitecustomize.py").write_text(LOG_CAPTURE, encoding="utf-8")
    capture = tmp_path / "log.jsonl"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), BOSUN_LOG_CAPTURE=str(capture), BOSUN_LOG_SINK=sink)
    http = {
        "url": "http://ops:urlpw-%s@127.0.0.1:1/h" % token[-6:],
        "headers": {"Authorization": "Bearer " + token, "Cookie": "session=" + cookie, "Accept": "text/plain"},
        "secret_headers": {"X-Signature": declared},
    }
    args = {"checks": [{"name": "api", "type": "http", "http": http}], "fail_on": "never", "_ansible_no_log": False}
    result = run_module("health_check", args, env=env)
    assert result["rc"] == 0 and result["checks"][0]["status"] == "crit", result
    logged = capture.read_text(encoding="utf-8")
    records = [json.loads(line) for line in logged.splitlines()]
    invoked = [r for r in records if r["sink"] == sink and "Invoked with" in json.dumps(r)]
    assert len(invoked) == 1, records  # the capture saw the real invocation record
    assert "X-Signature" in logged and "text/plain" in logged  # what is not secret is still logged
    for value in (token, cookie, declared, "urlpw-" + token[-6:]):
        assert value not in logged, (value, logged)
        assert value not in json.dumps(result), value
