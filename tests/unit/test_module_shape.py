"""Every module has one shape: argument_spec(), a work function and main() = run_module(...);
its attributes are documented honestly; the diffs of app_release and redis_flush."""

import ast
import fnmatch
import os
import socket
import threading

import pytest
import yaml
from ansible_collections.bosun.platform.plugins.module_utils import _app_release as ar
from ansible_collections.bosun.platform.plugins.module_utils import _flush
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, failure_of, run_module

from tests.support.modules import run_module as run_real_module

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
MODULES_DIR = os.path.join(ROOT, "plugins", "modules")
MODULES = sorted(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith(".py") and name != "__init__.py")


# --- run_module ----------------------------------------------------------------------------
class Exited(Exception):
    pass


class FakeModule:
    """Records what run_module asks of an AnsibleModule; exit_json and fail_json end the run."""

    instances = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.params = {}
        self.check_mode = False
        self.warnings = []
        self.exited = None
        self.failed = None
        FakeModule.instances.append(self)

    def warn(self, text):
        self.warnings.append(text)

    def exit_json(self, **result):
        self.exited = result
        raise Exited()

    def fail_json(self, msg, **result):
        self.failed = dict(result, msg=msg)
        raise Exited()


class OwnError(Exception):
    def __init__(self, message, result=None):
        super(OwnError, self).__init__(message)
        self.message = message
        self.result = result or {}


def _run(work, **kwargs):
    FakeModule.instances = []
    with pytest.raises(Exited):
        run_module({"x": {"type": "str"}}, work, supports_check_mode=True, module_class=FakeModule, **kwargs)
    return FakeModule.instances[0]


def test_run_module_builds_the_module_with_check_mode_and_exits_with_the_result():
    module = _run(lambda m: dict(changed=True, n=1, warnings=["careful"]), required_if=[("x", "y", ["z"])])
    assert module.kwargs == dict(
        argument_spec={"x": {"type": "str"}}, supports_check_mode=True, required_if=[("x", "y", ["z"])]
    )
    assert module.exited == dict(changed=True, n=1) and module.failed is None
    assert module.warnings == ["careful"]


def test_run_module_fails_with_the_message_result_and_warnings_of_the_collections_errors():
    def work(module):
        raise OwnError("refused: x", dict(changed=False, deleted=0, warnings=["w1", "w2"]))

    module = _run(work, errors=(OwnError,))
    assert module.failed == dict(msg="refused: x", changed=False, deleted=0)
    assert module.warnings == ["w1", "w2"] and module.exited is None


def test_run_module_fails_with_a_module_failure():
    def work(module):
        module.warn("first")
        raise ModuleFailure("no group", changed=False, warnings=["second"])

    module = _run(work)
    assert module.failed == dict(msg="no group", changed=False)
    assert module.warnings == ["first", "second"]


def test_other_exceptions_are_not_turned_into_failures():
    def work(module):
        raise OwnError("a bug")

    FakeModule.instances = []
    with pytest.raises(OwnError):
        run_module({}, work, supports_check_mode=True, module_class=FakeModule)


def test_failure_of_reads_message_msg_or_the_text():
    class WithMsg(Exception):
        def __init__(self, msg, **result):
            super(WithMsg, self).__init__(msg)
            self.msg = msg
            self.result = result

    assert failure_of(OwnError("m", {"a": 1})) == ("m", {"a": 1})
    assert failure_of(WithMsg("n", b=2)) == ("n", {"b": 2})
    assert failure_of(ValueError("plain")) == ("plain", {})


# --- one shape, honest attributes ---------------------------------------------------------------
def _tree(name):
    with open(os.path.join(MODULES_DIR, name + ".py"), encoding="utf-8") as f:
        return ast.parse(f.read())


def _doc(name, variable="DOCUMENTATION"):
    for node in _tree(name).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == variable:
            return yaml.safe_load(node.value.value)
    raise AssertionError(name)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_one_shape(name):
    tree = _tree(name)
    defined = set(node.name for node in tree.body if isinstance(node, ast.FunctionDef))
    imported = set(
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    )
    assert "argument_spec" in defined | imported, name
    main = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"][0]
    assert len(main.body) == 1, name
    call = main.body[0].value
    assert isinstance(call, ast.Call) and call.func.id == "run_module", name
    assert isinstance(call.args[0], ast.Call) and call.args[0].func.id == "argument_spec", name
    names = set(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)) | set(
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    )
    assert not names & {"AnsibleModule", "exit_json", "fail_json"}, name


def _action_groups():
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as f:
        groups = yaml.safe_load(f)["action_groups"]
    return dict(
        (name, sorted("bosun.platform." + g for g, members in groups.items() if name in members)) for name in MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_every_module_states_its_attributes(name):
    doc = _doc(name)
    assert "bosun.platform.attributes" in doc["extends_documentation_fragment"], name
    attributes = doc["attributes"]
    for attribute in ("check_mode", "diff_mode", "platform"):
        assert attributes[attribute]["support"] in ("full", "partial", "none"), (name, attribute)
        if attributes[attribute]["support"] == "partial":
            assert attributes[attribute].get("details"), (name, attribute)
    groups = _action_groups()[name]
    if groups:
        assert "bosun.platform.attributes.action_group" in doc["extends_documentation_fragment"], name
        assert attributes["action_group"]["support"] == "full"
        assert sorted(attributes["action_group"]["membership"]) == groups, name
    else:
        assert "action_group" not in attributes, name
    assert ("diff" in _doc(name, "RETURN")) == (attributes["diff_mode"]["support"] != "none"), name
    # The module says in its own file whether it supports check mode, as its docs do.
    main = [node for node in _tree(name).body if isinstance(node, ast.FunctionDef) and node.name == "main"][0]
    declared = dict((k.arg, k.value) for k in main.body[0].value.keywords)["supports_check_mode"]
    assert declared.value is (attributes["check_mode"]["support"] != "none"), name


# --- app_release: the diff of the current link ---------------------------------------------------
def _release(root, release):
    path = root / "releases" / release
    path.mkdir(parents=True)
    (path / ar.FINISHED_MARKER).write_text("{}\n")


def test_switch_diff_names_the_release_before_and_after(tmp_path):
    layout = ar.Layout(str(tmp_path))
    _release(tmp_path, "1")
    _release(tmp_path, "2")
    host = ar.Host(False, None)
    first = ar.switch(host, layout, "1")
    assert ar.switch_diff(layout, first) == {
        "before": "",
        "after": "1\n",
        "before_header": "%s (absent)" % layout.current,
        "after_header": layout.current,
    }
    second = ar.switch(host, layout, "2")
    assert ar.switch_diff(layout, second) == dict(
        before="1\n", after="2\n", before_header=layout.current, after_header=layout.current
    )
    again = ar.switch(host, layout, "2")
    diff = ar.switch_diff(layout, again)
    assert diff["before"] == diff["after"] == "2\n"


def test_app_release_module_returns_the_diff_in_check_mode_and_for_real(tmp_path):
    _release(tmp_path, "1.0.0")
    _release(tmp_path, "1.1.0")
    os.symlink(str(tmp_path / "releases" / "1.0.0"), str(tmp_path / "current"))
    current = str(tmp_path / "current")
    args = {"state": "current", "root": str(tmp_path), "release": "1.1.0", "_ansible_diff": True}
    predicted = run_real_module("app_release", args, check_mode=True)
    assert predicted["changed"] and predicted["switched"]
    assert predicted["diff"] == dict(before="1.0.0\n", after="1.1.0\n", before_header=current, after_header=current)
    assert os.readlink(current) == str(tmp_path / "releases" / "1.0.0")
    # a release a check run would have installed is switched to in the prediction too
    unknown = run_real_module("app_release", dict(args, release="2.0.0"), check_mode=True)
    assert unknown["diff"]["before"] == "1.0.0\n" and unknown["diff"]["after"] == "2.0.0\n"

    switched = run_real_module("app_release", dict(args, prune=True))
    assert switched["changed"] and switched["diff"] == predicted["diff"]
    assert os.readlink(current) == str(tmp_path / "releases" / "1.1.0")
    again = run_real_module("app_release", args)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"] == "1.1.0\n"

    without = run_real_module("app_release", dict(args, _ansible_diff=False))
    assert "diff" not in without
    queried = run_real_module("app_release", {"state": "query", "root": str(tmp_path), "_ansible_diff": True})
    assert "diff" not in queried


# --- redis_flush: counts per pattern before and after ----------------------------------------------
def test_flush_diff_counts_per_pattern_prefix_and_database():
    entries = [
        dict(pattern="menu:*", db=0, matched=1000, deleted=1000, scan_calls=2, duration_ms=1),
        dict(pattern="user:42:*", template="user:${id}:*", db=0, matched=1, deleted=1, scan_calls=1, duration_ms=1),
        dict(pattern="gone:*", db=0, matched=0, deleted=0, scan_calls=1, duration_ms=1),
    ]
    diff = _flush.diff(_flush._result("patterns", 0, entries, 5000, {}))
    assert diff == dict(
        before="db 0 pattern 'menu:*': 1000 keys\ndb 0 pattern 'user:42:*': 1 key\ndb 0 pattern 'gone:*': 0 keys\n",
        after="db 0 pattern 'menu:*': 0 keys\ndb 0 pattern 'user:42:*': 0 keys\ndb 0 pattern 'gone:*': 0 keys\n",
        before_header="keys per pattern",
        after_header="keys per pattern",
    )
    prefixed = [dict(pattern="a\\*b:*", prefix="a*b:", db=3, matched=2, deleted=2, scan_calls=1, duration_ms=1)]
    diff = _flush.diff(_flush._result("prefixes", 3, prefixed, 10, {}))
    assert diff["before"] == "db 3 prefix 'a*b:': 2 keys\n" and diff["before_header"] == "keys per prefix"
    databases = [
        dict(pattern=None, db=0, matched=7, deleted=7, scan_calls=0, duration_ms=0),
        dict(pattern=None, db=2, matched=3, deleted=3, scan_calls=0, duration_ms=0),
    ]
    diff = _flush.diff(_flush._result("all", None, databases, 0, {}))
    assert diff["before"] == "db 0: 7 keys\ndb 2: 3 keys\n" and diff["after"] == "db 0: 0 keys\ndb 2: 0 keys\n"
    assert diff["before_header"] == "keys per database"
    assert _flush.diff(_flush._result("db", 0, [], 0, {}))["before"] == ""


class FakeRedis:
    """Just enough of a Redis server on loopback for redis_flush: INFO, DBSIZE, SCAN, UNLINK."""

    def __init__(self, keys):
        self.keys = set(keys)
        self.commands = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        with conn, conn.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                argv = []
                for _index in range(int(line[1:])):
                    size = int(reader.readline()[1:])
                    argv.append(reader.read(size + 2)[:-2].decode())
                self.commands.append(argv[0].upper())
                conn.sendall(self._reply(argv))

    @staticmethod
    def _bulk(text):
        data = text.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)

    def _reply(self, argv):
        verb = argv[0].upper()
        if verb == "INFO":
            return self._bulk(
                "# Server\r\nredis_version:7.0.15\r\n# Replication\r\nrole:master\r\n"
                "# Keyspace\r\ndb0:keys=%d,expires=0,avg_ttl=0\r\n" % len(self.keys)
            )
        if verb == "DBSIZE":
            return b":%d\r\n" % len(self.keys)
        if verb == "SCAN":
            pattern = argv[argv.index("MATCH") + 1]
            found = sorted(key for key in self.keys if fnmatch.fnmatchcase(key, pattern))
            return b"*2\r\n$1\r\n0\r\n*%d\r\n%s" % (len(found), b"".join(self._bulk(k) for k in found))
        if verb in ("UNLINK", "DEL"):
            gone = self.keys & set(argv[1:])
            self.keys -= gone
            return b":%d\r\n" % len(gone)
        return b"+OK\r\n"

    def close(self):
        self.sock.close()


@pytest.fixture
def fake_redis():
    server = FakeRedis(["menu:1", "menu:2", "menu:3", "search:a", "user:7"])
    yield server
    server.close()


def test_redis_flush_check_mode_diff_counts_what_would_go(fake_redis):
    args = {"patterns": ["menu:*", "search:*", "menu:1*"], "login_port": fake_redis.port, "_ansible_diff": True}
    result = run_real_module("redis_flush", args, check_mode=True)
    assert result["rc"] == 0 and result["changed"] and result["deleted"] == 4, result
    assert result["diff"] == dict(
        before="db 0 pattern 'menu:*': 3 keys\ndb 0 pattern 'search:*': 1 key\ndb 0 pattern 'menu:1*': 0 keys\n",
        after="db 0 pattern 'menu:*': 0 keys\ndb 0 pattern 'search:*': 0 keys\ndb 0 pattern 'menu:1*': 0 keys\n",
        before_header="keys per pattern",
        after_header="keys per pattern",
    )
    assert "UNLINK" not in fake_redis.commands and len(fake_redis.keys) == 5
    without = run_real_module("redis_flush", dict(args, _ansible_diff=False), check_mode=True)
    assert "diff" not in without and without["deleted"] == 4


def test_redis_flush_real_run_diff_counts_what_went(fake_redis):
    args = {"prefixes": ["menu:"], "login_port": fake_redis.port, "_ansible_diff": True}
    result = run_real_module("redis_flush", args)
    assert result["rc"] == 0 and result["deleted"] == 3, result
    assert result["diff"]["before"] == "db 0 prefix 'menu:': 3 keys\n"
    assert result["diff"]["after"] == "db 0 prefix 'menu:': 0 keys\n"
    assert fake_redis.keys == {"search:a", "user:7"}
