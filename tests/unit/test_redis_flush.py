"""redis_flush without a server: pattern escaping, guards, plans, the RESP reader, result shape, docs."""

import socket
import threading

import pytest
import yaml
from ansible_collections.bosun.platform.plugins.doc_fragments.redis import ModuleDocFragment
from ansible_collections.bosun.platform.plugins.module_utils import _flush, _resp
from ansible_collections.bosun.platform.plugins.modules import redis_flush

from tests.support.modules import run_module

SECRET = "s3 'cr$t \\ pw"


def params(**over):
    return _flush.default_params(login_password=SECRET, **over)


# --- escaping and match-everything ----------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, pattern",
    [
        ("menu:", "menu:*"),
        ("a*b:", "a\\*b:*"),
        ("q?", "q\\?*"),
        ("[x]", "\\[x\\]*"),
        ("back\\slash", "back\\\\slash*"),
        ("", "*"),
        ("spaces and 'quotes' $x:", "spaces and 'quotes' $x:*"),
    ],
)
def test_prefix_pattern_escapes_glob_characters(prefix, pattern):
    assert _flush.prefix_pattern(prefix) == pattern


@pytest.mark.parametrize("pattern", ["", "*", "**", "***", "?*", "*?", "*?*"])
def test_patterns_that_match_everything(pattern):
    assert _flush.matches_everything(pattern) is True


@pytest.mark.parametrize("pattern", ["?", "??", "a*", "*a", "\\*", "[*]", "menu:*", "*:*", "\\**"])
def test_patterns_that_do_not_match_everything(pattern):
    assert _flush.matches_everything(pattern) is False


# --- patterns with parameters and the literal-prefix guard (issue 14 #12) -------------------
@pytest.mark.parametrize(
    "pattern, prefix",
    [
        ("menu:*", "menu:"),
        ("user:\\*:*", "user:*:"),
        ("a\\?b[xy]*", "a?b"),
        ("\\\\*", "\\"),  # an escaped backslash, then any suffix
        ("\\", "\\"),  # a lone trailing backslash is literal
        ("exact", "exact"),
        ("x]y*", "x]y"),  # ] outside a class is literal
        ("*", ""),
        ("?*", ""),
        ("[^x]*", ""),
        ("[a-z]*", ""),
        ("*:session", ""),
        ("", ""),
    ],
)
def test_literal_prefix_of_a_pattern(pattern, prefix):
    assert _flush.literal_prefix(pattern) == prefix


@pytest.mark.parametrize("pattern", ["[^x]*", "?*", "[a-z]*", "?", "*:session", "[*]"])
def test_a_pattern_without_a_literal_prefix_needs_allow_delete_all(pattern):
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(patterns=[pattern]))
    assert "pattern %r" % pattern in err.value.message
    assert "allow_delete_all: true" in err.value.message
    # forced, it is flushed as given: [^x]* still spares the keys that start with x
    assert _flush.plan(params(patterns=[pattern], allow_delete_all=True))["targets"][0]["pattern"] in (pattern, "*")
    assert _flush.plan(params(patterns=["[^x]*"], allow_delete_all=True))["targets"] == [{"pattern": "[^x]*"}]


@pytest.mark.parametrize(
    "value, pattern",
    [
        ("42", "user:42:*"),
        ("*", "user:\\*:*"),
        ("?", "user:\\?:*"),
        ("[^x]", "user:\\[^x\\]:*"),
        ("a\\", "user:a\\\\:*"),
        (42, "user:42:*"),
        ("", "user::*"),
    ],
)
def test_placeholders_are_filled_with_literal_values(value, pattern):
    plan = _flush.plan(params(patterns=["user:${id}:*"], pattern_params={"id": value}))
    assert plan["targets"] == [{"pattern": pattern, "template": "user:${id}:*"}]


def test_a_parameter_cannot_widen_a_pattern_to_every_key():
    # "${id}*" with id "*" is the literal key prefix "*", not every key
    assert _flush.plan(params(patterns=["${id}*"], pattern_params={"id": "*"}))["targets"][0]["pattern"] == "\\**"
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(patterns=["${id}*"], pattern_params={"id": ""}))
    assert "allow_delete_all: true" in err.value.message


def test_template_syntax_and_missing_parameters():
    assert _flush.template_names("a:${id}:${kind}:$${id}:${id}") == ["id", "kind"]
    assert _flush.fill_pattern("cost:$$5:${id}", {"id": "*"}) == "cost:$5:\\*"
    assert _flush.fill_pattern("a$b:${1x}", {}) == "a$b:${1x}"  # not a placeholder: literal
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(patterns=["user:${id}:*"]))
    assert "pattern 'user:${id}:*' needs a value for ${id}" in err.value.message
    for bad in ([1], {"a": 1}, None, True):
        with pytest.raises(_flush.FlushError) as err:
            _flush.plan(params(patterns=["user:${id}:*"], pattern_params={"id": bad}))
        assert "${id}" in err.value.message
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(prefixes=["user:"], pattern_params={"id": "1"}))
    assert "pattern_params" in err.value.message


# --- the plan ---------------------------------------------------------------------------------
def test_plan_patterns_keeps_order_and_drops_duplicates():
    plan = _flush.plan(params(patterns=["menu:*", "search:*", "menu:*"]))
    assert plan == {"scope": "patterns", "targets": [{"pattern": "menu:*"}, {"pattern": "search:*"}]}


def test_plan_prefixes_carry_the_prefix():
    plan = _flush.plan(params(prefixes=["a*b:"]))
    assert plan["targets"] == [{"pattern": "a\\*b:*", "prefix": "a*b:"}]


def test_plan_db_false_is_not_a_scope():
    assert _flush.plan(params(patterns=["a:*"], whole_db=False))["scope"] == "patterns"
    assert _flush.plan(params(all=True))["scope"] == "all"


@pytest.mark.parametrize(
    "over, message",
    [
        (dict(), "give exactly one of patterns, prefixes, whole_db: true or all: true (got none)"),
        (dict(whole_db=False), "(got none)"),
        (dict(patterns=["a"], prefixes=["b"]), "(got patterns, prefixes)"),
        (dict(whole_db=True, all=True), "(got whole_db, all)"),
        (dict(patterns=[]), "patterns is empty"),
        (dict(prefixes=[None]), "prefixes holds an empty (null) entry"),
        (dict(patterns=["a"], scan_count=0), "scan_count must be 1 or more"),
        (dict(patterns=["a"], max_keys=-1), "max_keys must be 0 or more"),
        (dict(patterns=["a"], pause_ms=-5), "pause_ms must be 0 or more"),
        (dict(all=True, key_type="string"), "key_type filters patterns and prefixes only"),
    ],
)
def test_plan_refuses_bad_options(over, message):
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(**over))
    assert message in err.value.message
    assert SECRET not in err.value.message


@pytest.mark.parametrize(
    "over, shown",
    [
        (dict(patterns=["menu:*", "*"]), "pattern '*'"),
        (dict(patterns=[""]), "pattern ''"),
        (dict(patterns=["?*"]), "pattern '?*'"),
        (dict(prefixes=[""]), "prefix ''"),
    ],
)
def test_match_everything_needs_allow_delete_all(over, shown):
    with pytest.raises(_flush.FlushError) as err:
        _flush.plan(params(**over))
    assert shown in err.value.message
    assert "matches every key of Redis at 127.0.0.1:6379 db 0" in err.value.message
    assert "allow_delete_all: true" in err.value.message
    forced = _flush.plan(params(allow_delete_all=True, **over))
    assert "*" in [t["pattern"] for t in forced["targets"]]


def test_empty_pattern_with_allow_delete_all_means_every_key():
    assert _flush.plan(params(patterns=["", "*"], allow_delete_all=True))["targets"] == [{"pattern": "*"}]


def test_run_refuses_before_connecting_and_returns_the_result_shape():
    # port 1 would fail to connect: the message proves that nothing was attempted
    with pytest.raises(_flush.FlushError) as err:
        _flush.run(params(patterns=["*"], login_port=1))
    assert "matches every key" in err.value.message
    result = err.value.result
    assert result["changed"] is False and result["deleted"] == 0 and result["results"] == []
    assert isinstance(result["duration_ms"], int)


def test_run_connection_refused_is_a_clear_message():
    with pytest.raises(_flush.FlushError) as err:
        _flush.run(params(patterns=["a:*"], login_port=1, connect_timeout=2.0))
    assert err.value.message.startswith("cannot connect to Redis at 127.0.0.1:1 db 0: ")
    assert SECRET not in err.value.message


def test_missing_tls_file_is_named():
    with pytest.raises(_flush.FlushError) as err:
        _flush.run(params(patterns=["a:*"], tls=True, ca_cert="/nonexistent/ca.pem", login_port=1))
    assert err.value.message == (
        "cannot set up TLS for Redis at 127.0.0.1:1 db 0: "
        "ca_cert /nonexistent/ca.pem: No such file or directory (errno 2)"
    )


# --- messages ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply, expected",
    [
        ("MOVED 3999 127.0.0.1:6381", "runs in cluster mode"),
        ("CROSSSLOT Keys in request don't hash to the same slot", "runs in cluster mode"),
        ("READONLY You can't write against a read only replica.", "is a read-only replica"),
        ("NOPERM this user has no permissions to access one of the keys", "lacks a permission"),
        ("NOAUTH Authentication required.", "requires authentication"),
        ("LOADING Redis is loading the dataset in memory", "still loading"),
        ("ERR echo %s" % SECRET, "answered an error while deleting"),
    ],
)
def test_server_errors_are_explained_without_secrets(reply, expected):
    ctx = _flush._Context(params(login_user="ops"))
    message = ctx.explain(_resp.ReplyError(reply), "deleting keys matching 'menu:*'")
    assert expected in message
    assert "Redis at 127.0.0.1:6379 db 0 as ops" in message
    assert SECRET not in message


def test_lost_connection_is_explained():
    ctx = _flush._Context(params())
    message = ctx.explain(_resp.ConnectionLost("the server closed the connection"), "deleting keys")
    assert (
        message
        == "connection to Redis at 127.0.0.1:6379 db 0 lost while deleting keys: the server closed the connection"
    )


def test_result_changed_only_when_something_was_deleted():
    entries = [dict(pattern="a:*", db=0, matched=3, deleted=0, scan_calls=1, duration_ms=1)]
    assert _flush._result("patterns", 0, entries, 10, {})["changed"] is False
    entries.append(dict(pattern="b:*", db=0, matched=2, deleted=2, scan_calls=1, duration_ms=1))
    result = _flush._result("patterns", 0, entries, 10, {"redis_version": "7.0.15"})
    assert result["changed"] is True
    assert (result["matched"], result["deleted"], result["scanned"]) == (5, 2, 10)
    assert result["redis_version"] == "7.0.15"


def test_parse_info_reads_sections_and_keyspace():
    info = _flush.parse_info(
        b"# Server\r\nredis_version:7.0.15\r\n\r\n# Replication\r\nrole:master\r\n"
        b"# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n"
    )
    assert info["redis_version"] == "7.0.15" and info["role"] == "master"
    assert info["db0"] == {"keys": 12, "expires": 1, "avg_ttl": 0}
    assert info["db3"]["keys"] == 1


def test_version_parsing():
    assert _flush._version({"redis_version": "6.2.14"}) >= (6, 2)
    assert _flush._version({"redis_version": "6.0.16"}) < (6, 2)
    assert _flush._version({}) < (6, 2)


# --- the RESP reader, fed through a real socket in small pieces -------------------------------
def encode_scan_reply(cursor, keys):
    body = b"".join(b"$%d\r\n%s\r\n" % (len(k), k) for k in keys)
    return b"*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(cursor), cursor, len(keys)) + body, body


def feed(data, chunk):
    """A RespConnection whose peer sends ``data`` in ``chunk``-byte pieces, then closes."""
    ours, theirs = socket.socketpair()
    ours.settimeout(10)

    def writer():
        for i in range(0, len(data), chunk):
            theirs.sendall(data[i : i + chunk])
        theirs.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return _resp.RespConnection(ours, "test"), thread


AWKWARD_KEYS = [b"menu:1", b"", b"menu:\r\nx", b"$3\r\nabc", b"*2\r\n", b"\x00\xff", b"k" * 70000]


@pytest.mark.parametrize("chunk", [1, 7, 65536, 10**7])
def test_scan_reply_is_read_in_place_whatever_the_chunking(chunk):
    first, body = encode_scan_reply(b"1234", AWKWARD_KEYS)
    last = encode_scan_reply(b"0", [])[0]
    conn, thread = feed(first + b":7\r\n" + last, chunk)
    cursor, count = conn.read_scan_head()
    assert (cursor, count) == (b"1234", len(AWKWARD_KEYS))
    names = []
    assert bytes(conn.read_scan_keys(count, names)) == body
    assert names == AWKWARD_KEYS
    assert conn.read_reply() == 7
    assert conn.read_scan_head() == (b"0", 0)
    assert bytes(conn.read_scan_keys(0)) == b""
    with pytest.raises(_resp.ConnectionLost):
        conn.read_reply()
    thread.join()


def test_scan_keys_become_the_arguments_of_unlink():
    keys = [b"a", b"b\r\nc", b""]
    _reply, body = encode_scan_reply(b"0", keys)
    assert b"*4\r\n$6\r\nUNLINK\r\n" + body == _resp.encode_command("UNLINK", *keys)


def test_replies_of_every_kind():
    conn, thread = feed(b"+OK\r\n-ERR wrong\r\n:-3\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n", 3)
    assert conn.read_reply() == b"OK"
    with pytest.raises(_resp.ReplyError) as err:
        conn.read_reply()
    assert err.value.code == "ERR" and err.value.message == "ERR wrong"
    assert conn.read_reply() == -3
    assert conn.read_reply() is None
    assert conn.read_reply() == [b"a", [1]]
    assert conn.read_reply() is None
    thread.join()


def test_error_reply_to_scan():
    conn, thread = feed(b"-NOPERM this user has no permissions to run the 'scan' command\r\n", 5)
    with pytest.raises(_resp.ReplyError) as err:
        conn.read_scan_head()
    assert err.value.code == "NOPERM"
    thread.join()


def test_encode_command():
    assert _resp.encode_command("SCAN", 0, "MATCH", "a b*", b"\x00") == (
        b"*5\r\n$4\r\nSCAN\r\n$1\r\n0\r\n$5\r\nMATCH\r\n$4\r\na b*\r\n$1\r\n\x00\r\n"
    )
    with pytest.raises(TypeError):
        _resp.encode_command("SET", True)


# --- the module: arguments and documentation ---------------------------------------------------
def test_module_fails_cleanly_without_a_scope_and_hides_the_password():
    result = run_module("redis_flush", dict(login_port=1, login_password=SECRET))
    assert result["rc"] == 1 and result["failed"] is True
    assert result["msg"].startswith("give exactly one of")
    assert result["changed"] is False and result["deleted"] == 0
    assert SECRET not in result["msg"] + result["_stderr"] + str(result)
    assert "Traceback" not in result["_stderr"]


def test_module_rejects_unknown_choices():
    result = run_module("redis_flush", dict(patterns=["a:*"], key_type="bitmap", login_port=1))
    assert result["rc"] == 1 and "key_type" in result["msg"] and "bitmap" in result["msg"]


def test_check_mode_refusal_is_the_same_as_a_real_run():
    real = run_module("redis_flush", dict(patterns=["*"], login_port=1))
    checked = run_module("redis_flush", dict(patterns=["*"], login_port=1), check_mode=True)
    assert real["msg"] == checked["msg"] and "matches every key" in real["msg"]


def _documented_options():
    options = dict(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(yaml.safe_load(redis_flush.DOCUMENTATION)["options"])
    return options


def test_documentation_matches_the_argument_spec():
    spec = _flush.argument_spec()
    documented = _documented_options()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name
    assert spec["login_password"]["no_log"] is True


def test_examples_and_return_are_valid_yaml():
    examples = yaml.safe_load(redis_flush.EXAMPLES)
    assert all("bosun.platform.redis_flush" in task for task in examples)
    returned = yaml.safe_load(redis_flush.RETURN)
    assert {"results", "matched", "deleted", "scanned", "duration_ms"} <= set(returned)
    assert set(returned["results"]["contains"]) == {
        "pattern",
        "prefix",
        "template",
        "db",
        "matched",
        "deleted",
        "scan_calls",
        "duration_ms",
    }
