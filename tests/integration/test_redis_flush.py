"""bosun.platform.redis_flush against a real Redis, and playbooks/cache_flush.yml with ansible-playbook.

The module runs in a subprocess as Ansible runs it; every effect is checked with an
independent client (redis-py, as the default user). This file starts its own servers
(DEBUG enabled, client certificates required on the TLS port, a replica, a cluster node),
so it never disturbs the session's shared Redis.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.support.collection import ROOT, collections_path
from tests.support.servers import RedisServer, free_port

MAINT_USER = "cache-maint"  # the redis role's redis_maintenance_user
MAINT_PASSWORD = "maint 'pw' $HOME \\ x"
# What issue 6's cache-maintenance user is allowed: scan, unlink, del, ping, info, flushdb.
MAINT_RULES = [
    "on",
    ">" + MAINT_PASSWORD,
    "resetkeys",
    "~menu:*",
    "resetchannels",
    "-@all",
    "+scan",
    "+unlink",
    "+del",
    "+ping",
    "+info",
    "+flushdb",
]


@pytest.fixture(scope="module")
def server(test_ca):
    with RedisServer(test_ca, extra_config=["enable-debug-command local", "tls-auth-clients yes"]) as srv:
        yield srv


@pytest.fixture
def r(server):
    """A clean server (every database empty, slowlog and statistics reset) and a client."""
    client = server.client()
    client.flushall()
    client.config_set("slowlog-log-slower-than", 10000)
    client.slowlog_reset()
    client.config_resetstat()
    yield client
    client.acl_deluser(MAINT_USER)


@pytest.fixture
def flush(server, run_module):
    """Run redis_flush with the server's connection options (+ ``args``)."""

    def _flush(check_mode=False, secrets=(), **args):
        params = server.conn_args()
        params.update(args)
        result = run_module("redis_flush", params, check_mode=check_mode, timeout=120)
        assert_no_secret(result, [server.password, MAINT_PASSWORD, server.acl_password, *secrets])
        return result

    return _flush


def assert_no_secret(result, secrets):
    text = json.dumps(result) + result.get("_stderr", "")
    for secret in secrets:
        assert secret not in text


def populate(client, count, prefix):
    """``count`` string keys named ``prefix:0`` ... (DEBUG POPULATE, on the server side)."""
    client.execute_command("DEBUG", "POPULATE", count, prefix)


def keys(client, pattern="*"):
    return sorted(client.scan_iter(match=pattern, count=1000))


# --- patterns and prefixes ----------------------------------------------------------------
NEIGHBOURS = [b"menux", b"menu2:1", b"MENU:1", b"menu", b"xmenu:1", b"men:u", b"menu\\:1"]


def test_pattern_deletes_exactly_the_matching_keys(r, flush):
    populate(r, 20000, "menu")
    literal = [b"menu:*", b"menu:?", b"menu:[1]", b"menu:\r\nnewline", b"menu:\x00\xff"]
    r.mset(dict.fromkeys(NEIGHBOURS + literal, b"v"))

    result = flush(patterns=["menu:*"])

    assert result["rc"] == 0, result
    assert result["changed"] is True
    assert result["deleted"] == result["matched"] == 20000 + len(literal)
    assert result["scope"] == "patterns"
    [entry] = result["results"]
    assert entry["pattern"] == "menu:*" and entry["deleted"] == 20000 + len(literal)
    assert entry["scan_calls"] >= 20
    assert result["scanned"] == 20000 + len(literal) + len(NEIGHBOURS)
    assert keys(r) == sorted(NEIGHBOURS)

    again = flush(patterns=["menu:*"])
    assert again["changed"] is False and again["deleted"] == 0


def test_prefixes_match_glob_characters_literally(r, flush):
    inside = [b"a*b:1", b"a*b:2", b"q?[x]\\:1"]
    outside = [b"axb:1", b"a*c:1", b"aab:1", b"q?[x]:1", b"qa[x]\\:1", b"qax\\:1", b"a\\*b:1"]
    r.mset(dict.fromkeys(inside + outside, b"v"))

    result = flush(prefixes=["a*b:", "q?[x]\\:"])

    assert result["rc"] == 0, result
    assert [(e["prefix"], e["pattern"], e["deleted"]) for e in result["results"]] == [
        ("a*b:", "a\\*b:*", 2),
        ("q?[x]\\:", "q\\?\\[x\\]\\\\:*", 1),
    ]
    assert keys(r) == sorted(outside)


def test_check_mode_predicts_the_real_run_exactly(r, flush):
    populate(r, 10000, "menu")
    populate(r, 3000, "search")
    r.set("other", 1)
    patterns = ["menu:*", "menu:1*", "search:*", "nothing:*"]  # menu:1* overlaps menu:*

    predicted = flush(check_mode=True, patterns=patterns)

    assert predicted["rc"] == 0, predicted
    assert r.dbsize() == 13001
    assert predicted["changed"] is True
    assert [e["deleted"] for e in predicted["results"]] == [10000, 0, 3000, 0]

    done = flush(patterns=patterns)
    assert done["changed"] is True
    assert [(e["pattern"], e["matched"], e["deleted"]) for e in done["results"]] == [
        (e["pattern"], e["matched"], e["deleted"]) for e in predicted["results"]
    ]
    assert keys(r) == [b"other"]

    nothing = flush(check_mode=True, patterns=patterns)
    assert nothing["changed"] is False and nothing["deleted"] == 0


def test_key_type_and_del_command(r, flush):
    r.mset({"menu:s1": 1, "menu:s2": 2})
    r.hset("menu:h1", "f", "v")
    r.rpush("menu:l1", "x")

    result = flush(patterns=["menu:*"], key_type="hash", delete_command="del")

    assert result["rc"] == 0, result
    assert result["deleted"] == 1
    assert keys(r) == [b"menu:l1", b"menu:s1", b"menu:s2"]
    stats = r.info("commandstats")
    assert stats["cmdstat_del"]["calls"] == 1
    assert "cmdstat_unlink" not in stats


def test_commands_stay_short(r, flush):
    populate(r, 50000, "menu")
    populate(r, 50000, "keep")
    r.slowlog_reset()

    result = flush(patterns=["menu:*"])

    assert result["rc"] == 0 and result["deleted"] == 50000, result
    stats = r.info("commandstats")
    assert stats["cmdstat_scan"]["calls"] == result["results"][0]["scan_calls"] >= 50
    assert stats["cmdstat_unlink"]["calls"] >= 25
    # about 0.5 ms each normally; a SCAN COUNT or batch 100 times larger would be far above
    assert stats["cmdstat_scan"]["usec_per_call"] < 5000
    assert stats["cmdstat_unlink"]["usec_per_call"] < 5000
    # SLOWLOG (10 ms) measures wall time: on a loaded shared machine one command may be
    # descheduled past it, which says nothing of the work it did; more than one may not.
    slow = [(entry["command"][:40], entry["duration"]) for entry in r.slowlog_get(128)]
    assert len(slow) <= 1, slow


def test_many_small_batches_and_huge_key_names(r, flush):
    populate(r, 5000, "menu")
    huge = [b"menu:" + bytes([65 + i]) * 400000 for i in range(3)]  # each beyond one read
    r.mset(dict.fromkeys(huge, b"v"))
    r.mset(dict.fromkeys(NEIGHBOURS, b"v"))

    result = flush(patterns=["menu:*"], scan_count=7)

    assert result["rc"] == 0, result
    assert result["deleted"] == 5003
    assert result["results"][0]["scan_calls"] > 500
    assert keys(r) == sorted(NEIGHBOURS)


# --- guards -------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["*", "", "**", "?*"])
def test_match_everything_needs_allow_delete_all(r, flush, pattern):
    r.mset({"a": 1, "b": 2})

    refused = flush(patterns=["menu:*", pattern])

    assert refused["rc"] != 0 and refused.get("failed") is True
    assert "matches every key" in refused["msg"] and "allow_delete_all" in refused["msg"]
    assert refused["changed"] is False and refused["deleted"] == 0
    assert r.dbsize() == 2


def test_allow_delete_all_deletes_everything_in_the_selected_database_only(r, server, flush):
    r.mset({"a": 1, "b": 2})
    other_db = server.client(db=1)
    other_db.set("keep", 1)

    result = flush(patterns=["*"], allow_delete_all=True)

    assert result["rc"] == 0, result
    assert result["deleted"] == 2 and result["results"][0]["pattern"] == "*"
    assert r.dbsize() == 0 and other_db.get("keep") == b"1"


def test_max_keys_aborts_before_deleting_anything(r, flush):
    populate(r, 1000, "menu")
    populate(r, 500, "search")

    refused = flush(patterns=["menu:*", "search:*"], max_keys=1499)

    assert refused["rc"] != 0
    assert "1500 keys" in refused["msg"] and "max_keys 1499" in refused["msg"]
    assert "nothing was deleted" in refused["msg"]
    assert refused["changed"] is False and refused["deleted"] == 0
    assert r.dbsize() == 1500

    allowed = flush(patterns=["menu:*", "search:*"], max_keys=1500)
    assert allowed["rc"] == 0 and allowed["deleted"] == 1500
    assert r.dbsize() == 0


def test_db_scope_needs_allow_delete_all_and_leaves_other_databases(r, server, flush):
    db1 = server.client(db=1)
    db1.mset({"a": 1, "b": 2, "c": 3})
    r.set("db0", 1)

    refused = flush(whole_db=True, login_db=1)
    assert refused["rc"] != 0 and "holds 3 keys in database 1" in refused["msg"]
    assert refused["deleted"] == 0 and db1.dbsize() == 3

    predicted = flush(check_mode=True, whole_db=True, login_db=1, allow_delete_all=True)
    assert predicted["changed"] is True and predicted["deleted"] == 3
    assert db1.dbsize() == 3

    done = flush(whole_db=True, login_db=1, allow_delete_all=True)
    assert done["rc"] == 0 and done["changed"] is True and done["deleted"] == 3
    assert db1.dbsize() == 0 and r.get("db0") == b"1"
    assert r.info("commandstats")["cmdstat_flushdb"]["calls"] == 1

    empty = flush(whole_db=True, login_db=1)  # an empty database needs no allow_delete_all and is not changed
    assert empty["rc"] == 0 and empty["changed"] is False and empty["deleted"] == 0


def test_all_scope_counts_every_database(r, server, flush):
    r.mset({"a": 1, "b": 2})
    server.client(db=3).set("c", 3)

    refused = flush(all=True)
    assert refused["rc"] != 0 and "holds 3 keys in every database" in refused["msg"]

    done = flush(all=True, allow_delete_all=True, flush_mode="sync")
    assert done["rc"] == 0 and done["changed"] is True
    assert [(e["db"], e["deleted"]) for e in done["results"]] == [(0, 2), (3, 1)]
    assert r.dbsize() == 0 and server.client(db=3).dbsize() == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(), "give exactly one of"),
        (dict(patterns=["a:*"], whole_db=True), "got patterns, whole_db"),
        (dict(patterns=[]), "patterns is empty"),
        (dict(whole_db=True, key_type="hash"), "key_type filters patterns and prefixes only"),
        (dict(patterns=["a:*"], scan_count=0), "scan_count must be 1 or more"),
    ],
)
def test_bad_arguments_fail_before_touching_the_server(r, flush, args, message):
    r.set("a:1", 1)
    result = flush(**args)
    assert result["rc"] != 0 and message in result["msg"]
    assert r.exists("a:1") == 1


# --- connection, authentication, TLS ----------------------------------------------------
def test_acl_user_limited_to_its_keyspace(r, flush):
    r.acl_setuser(MAINT_USER, reset=True)
    r.execute_command("ACL", "SETUSER", MAINT_USER, *MAINT_RULES)
    populate(r, 3000, "menu")
    populate(r, 100, "user")
    as_maint = dict(login_user=MAINT_USER, login_password=MAINT_PASSWORD)

    result = flush(patterns=["menu:*"], **as_maint)
    assert result["rc"] == 0, result
    assert result["deleted"] == 3000 and result["scanned"] == 3100

    refused = flush(patterns=["user:*"], **as_maint)
    assert refused["rc"] != 0
    assert "as cache-maint" in refused["msg"] and "NOPERM" in refused["msg"]
    assert "deleted before that" in refused["msg"]
    assert refused["deleted"] == 0 and len(keys(r, "user:*")) == 100

    wrong = flush(patterns=["menu:*"], login_user=MAINT_USER, login_password="not the password")
    assert wrong["rc"] != 0 and "cannot authenticate" in wrong["msg"] and "WRONGPASS" in wrong["msg"]


def test_acl_user_without_info_still_flushes(r, flush):
    r.execute_command("ACL", "SETUSER", MAINT_USER, *MAINT_RULES, "-info")
    populate(r, 100, "menu")

    result = flush(patterns=["menu:*"], login_user=MAINT_USER, login_password=MAINT_PASSWORD)

    assert result["rc"] == 0, result
    assert result["deleted"] == 100
    assert result["scanned"] is None and result["redis_version"] is None


def test_wrong_password_and_unreachable_server_are_clear(r, server, flush):
    wrong = flush(patterns=["menu:*"], login_password=server.password + "x")
    assert wrong["rc"] != 0 and "cannot authenticate to Redis at 127.0.0.1:%d" % server.port in wrong["msg"]

    missing = flush(patterns=["menu:*"], login_password=None)
    assert missing["rc"] != 0 and "requires authentication" in missing["msg"]

    port = free_port()
    refused = flush(patterns=["menu:*"], login_port=port)
    assert refused["rc"] != 0
    assert "cannot connect to Redis at 127.0.0.1:%d" % port in refused["msg"] and "refused" in refused["msg"]
    assert "Traceback" not in refused["_stderr"]


def test_unix_socket(r, server, flush):
    populate(r, 10, "menu")
    result = flush(patterns=["menu:*"], login_unix_socket=server.socket)
    assert result["rc"] == 0 and result["deleted"] == 10, result


def test_tls_with_client_certificate(r, server, test_ca, flush):
    populate(r, 10, "menu")
    tls = dict(login_port=server.tls_port, tls=True, ca_cert=test_ca.ca_cert)

    no_cert = flush(patterns=["menu:*"], **tls)
    assert no_cert["rc"] != 0 and "cannot connect to Redis at 127.0.0.1:%d" % server.tls_port in no_cert["msg"]

    unknown_ca = flush(
        patterns=["menu:*"], login_port=server.tls_port, tls=True, client_cert=test_ca.cert, client_key=test_ca.key
    )
    assert unknown_ca["rc"] != 0 and "certificate verify failed" in unknown_ca["msg"]

    result = flush(patterns=["menu:*"], client_cert=test_ca.cert, client_key=test_ca.key, **tls)
    assert result["rc"] == 0, result
    assert result["deleted"] == 10 and r.dbsize() == 0


# --- failures in the middle, replicas, clusters --------------------------------------------
def test_connection_killed_mid_flush_reports_progress_and_rerun_completes(r, server, flush):
    populate(r, 30000, "menu")
    r.mset(dict.fromkeys(NEIGHBOURS, b"v"))
    box = {}
    worker = threading.Thread(target=lambda: box.update(result=flush(patterns=["menu:*"], scan_count=100, pause_ms=10)))
    worker.start()
    killed = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not killed:
        if r.dbsize() < 30000 - 1000:
            for client in r.client_list():
                if client["name"] == "bosun_redis_flush":
                    killed = r.client_kill_filter(_id=client["id"]) == 1
        time.sleep(0.01)
    worker.join(60)
    assert killed, "the flush finished before it could be killed"
    failed = box["result"]

    remaining = len(keys(r, "menu:*"))
    assert failed["rc"] != 0 and failed["changed"] is True
    assert "connection to Redis at 127.0.0.1:%d db 0 lost" % server.port in failed["msg"]
    assert "%d keys were deleted before that" % failed["deleted"] in failed["msg"]
    assert 0 < remaining < 30000 - 1000
    # confirmed deletions; only the (at most two) batches in flight may be unconfirmed
    assert 30000 - remaining - 600 <= failed["deleted"] <= 30000 - remaining

    rerun = flush(patterns=["menu:*"])
    assert rerun["rc"] == 0 and rerun["deleted"] == remaining
    assert keys(r) == sorted(NEIGHBOURS)


def test_replica_is_refused(test_ca, run_module):
    with RedisServer(test_ca) as replica:
        client = replica.client()
        client.execute_command("ACL", "SETUSER", MAINT_USER, *MAINT_RULES, "-info")
        client.set("menu:1", 1)
        primary_port = free_port()  # nothing listens there: the replica keeps its data and refuses writes
        client.execute_command("REPLICAOF", "127.0.0.1", str(primary_port))

        as_default = run_module("redis_flush", replica.conn_args(patterns=["menu:*"]))
        assert as_default["rc"] != 0
        assert "is a replica of 127.0.0.1:%d" % primary_port in as_default["msg"]
        assert "run the flush against the primary" in as_default["msg"]

        # a user that may not run INFO meets the READONLY reply instead
        as_maint = run_module(
            "redis_flush", replica.conn_args(patterns=["menu:*"], login_user=MAINT_USER, login_password=MAINT_PASSWORD)
        )
        assert as_maint["rc"] != 0 and "is a read-only replica" in as_maint["msg"]
        assert as_maint["deleted"] == 0 and client.exists("menu:1") == 1
        assert_no_secret(as_maint, [MAINT_PASSWORD, replica.password])


def test_cluster_is_detected(test_ca, run_module):
    config = ["cluster-enabled yes", "cluster-port %d" % free_port()]
    with RedisServer(test_ca, extra_config=config) as node:
        client = node.client()
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        client.execute_command("ACL", "SETUSER", MAINT_USER, *MAINT_RULES, "-info")
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO") and time.monotonic() < deadline:
            time.sleep(0.05)
        client.set("menu:{a}1", 1)
        client.set("menu:{b}2", 2)

        as_default = run_module("redis_flush", node.conn_args(patterns=["menu:*"]))
        assert as_default["rc"] != 0 and "runs in cluster mode" in as_default["msg"]

        as_maint = run_module(
            "redis_flush", node.conn_args(patterns=["menu:*"], login_user=MAINT_USER, login_password=MAINT_PASSWORD)
        )
        assert as_maint["rc"] != 0 and "runs in cluster mode" in as_maint["msg"], as_maint
        assert client.exists("menu:{a}1") == 1 and client.exists("menu:{b}2") == 1


# --- the playbook ---------------------------------------------------------------------------
@pytest.fixture
def playbook(server, tmp_path):
    """Run playbooks/cache_flush.yml against a local 'cache' host pointed at the test server."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "cache": {
                    "hosts": {"cache1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                    "vars": {
                        "bosun_redis_login_port": server.port,
                        "bosun_redis_login_password": server.password,
                        "bosun_lock_path": str(tmp_path / "platform.lock"),
                        "bosun_lock_become": False,
                        "bosun_cache_groups": {
                            "user": ["user:${id}:*"],
                            "business": ["business:*", "search:*"],
                            "menu": ["menu:*"],
                        },
                    },
                }
            }
        )
    )
    inventory.chmod(0o600)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
    )

    def _run(*args):
        proc = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                "-i",
                str(inventory),
                os.path.join(ROOT, "playbooks", "cache_flush.yml"),
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert server.password not in proc.stdout + proc.stderr
        return proc

    return _run


def test_playbook_flushes_a_named_group(r, playbook):
    r.mset({"business:1": 1, "search:1": 1, "menu:1": 1, "user:42:a": 1})

    proc = playbook("-e", "cache_group=business")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(r) == [b"menu:1", b"user:42:a"]
    assert "business:*: matched 1, deleted 1" in proc.stdout
    assert "search:*: matched 1, deleted 1" in proc.stdout
    assert "changed=3" in proc.stdout  # the flush, and the platform lock taken and released


def test_playbook_group_with_a_placeholder_and_check_mode(r, playbook):
    r.mset({"user:42:a": 1, "user:42:b": 1, "user:43:a": 1})

    # neither of these two may delete anything, so they run side by side
    checked, unset = parallel(
        playbook,
        ("-e", "cache_group=user", "-e", "id=42", "--check"),
        ("-e", "cache_group=user"),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "user:42:*: matched 2, would delete 2" in checked.stdout
    assert unset.returncode != 0 and "needs a value for ${id}" in unset.stdout + unset.stderr
    assert r.dbsize() == 3

    proc = playbook("-e", "cache_group=user", "-e", "id=42")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(r) == [b"user:43:a"]


def test_playbook_parameter_is_a_literal_never_a_wildcard(r, playbook):
    """-e id='*' flushes the keys of the user literally called '*', not every user's (issue 14 #12)."""
    r.mset({"user:*:a": 1, "user:*:b": 1, "user:42:a": 1, "user:43:a": 1, "user:[*]:a": 1})

    proc = playbook("-e", "cache_group=user", "-e", "id=*")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "user:\\*:*: matched 2, deleted 2" in proc.stdout
    assert keys(r) == [b"user:42:a", b"user:43:a", b"user:[*]:a"]
    for value in ("[*]", "?"):
        proc = playbook("-e", "cache_group=user", "-e", "id=%s" % value)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(r) == [b"user:42:a", b"user:43:a"]


def test_playbook_is_refused_while_another_job_holds_the_platform_lock(r, playbook, tmp_path, run_module):
    r.mset({"business:1": 1, "search:1": 1})
    lock = str(tmp_path / "platform.lock")
    held = run_module("platform_lock", dict(path=lock, taken_by="deploy", job="deploy 2.0.0"))
    assert held["rc"] == 0, held.get("msg")

    proc = playbook("-e", "cache_group=business")

    assert proc.returncode != 0
    assert "is held by deploy running deploy 2.0.0" in proc.stdout
    assert r.dbsize() == 2
    assert run_module("platform_lock", dict(path=lock, state="released", token=held["token"]))["changed"]
    proc = playbook("-e", "cache_group=business")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r.dbsize() == 0
    assert not os.path.exists(lock)  # released at the end


def test_playbook_patterns_and_guards(r, playbook):
    r.mset({"menu:1": 1, "event:1": 1, "other": 1})

    unknown, everything, no_prefix, limited = parallel(
        playbook,
        ("-e", "cache_group=nope"),
        ("-e", "cache_patterns=*"),
        ("-e", "cache_patterns=[^x]*"),
        ("-e", "cache_patterns=menu:*,event:*", "-e", "cache_flush_max_keys=1"),
    )
    assert unknown.returncode != 0 and "Unknown cache group 'nope'" in unknown.stdout
    assert "business, menu, user" in unknown.stdout
    assert everything.returncode != 0 and "matches every key" in everything.stdout
    assert no_prefix.returncode != 0 and "has no literal prefix" in no_prefix.stdout
    assert limited.returncode != 0 and "2 keys of Redis" in limited.stdout
    assert "'menu:*', 'event:*', more than max_keys 1" in limited.stdout
    assert r.dbsize() == 3

    proc = playbook("-e", "cache_patterns=menu:*,event:*")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(r) == [b"other"]


def test_playbook_refuses_a_group_outside_the_maintenance_users_key_patterns(r, playbook):
    """The example's group business flushes search:*, which the maintenance user's ACL key
    patterns do not allow: refused naming group, pattern and user before anything is flushed
    (it used to delete business:* and then fail with NOPERM on search:*)."""
    allowed = ["cache:*", "menu:*", "business:*"]
    r.execute_command("ACL", "SETUSER", MAINT_USER, *(MAINT_RULES[:3] + ["~" + p for p in allowed] + MAINT_RULES[4:]))
    r.mset({"business:1": 1, "search:1": 1, "menu:1": 1})
    as_maint = json.dumps(
        {
            "bosun_redis_login_user": MAINT_USER,
            "bosun_redis_login_password": MAINT_PASSWORD,
            "redis_maintenance_key_patterns": allowed,
        }
    )
    refused, ad_hoc, menu = parallel(
        playbook,
        ("-e", as_maint, "-e", "cache_group=business"),
        ("-e", as_maint, "-e", "cache_patterns=menu:*,search:1"),
        ("-e", as_maint, "-e", "cache_group=menu"),
    )
    for proc in (refused, ad_hoc, menu):
        assert MAINT_PASSWORD not in proc.stdout + proc.stderr
    assert refused.returncode != 0
    assert 'cache group business has "search:*", outside the key patterns Redis user cache-maint' in refused.stdout
    assert "NOPERM" not in refused.stdout
    assert ad_hoc.returncode != 0 and 'cache_patterns has "search:1", outside' in ad_hoc.stdout
    assert menu.returncode == 0, menu.stdout + menu.stderr
    assert keys(r) == [b"business:1", b"search:1"]


def parallel(function, *argument_lists):
    """Call ``function(*args)`` for each argument list at once; return the results in order.

    Each playbook run gets a platform lock file of its own, so that they can run side by side.
    """
    lock_dir = tempfile.mkdtemp(prefix="bosun-locks-")
    argument_lists = [
        tuple(args) + ("-e", "bosun_lock_path=%s/%d.lock" % (lock_dir, i)) for i, args in enumerate(argument_lists)
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(argument_lists)) as pool:
            return list(pool.map(lambda args: function(*args), argument_lists))
    finally:
        shutil.rmtree(lock_dir, ignore_errors=True)


# --- the deploy's flush ----------------------------------------------------------------------
def test_deploy_flush_connects_like_cache_flush_to_a_tls_port_and_another_db(r, server, test_ca, tmp_path):
    """deploy.yml's flush (the deploy role's tasks/cache_flush.yml) takes the whole connection of each
    cache host: TLS with a client certificate on the TLS-only port, and the database number.
    It used to pass only host, port, user and password, so a TLS-only Redis failed the flush."""
    db3 = server.client(db=3)
    db3.mset({"menu:1": 1, "menu:2": 1, "user:1": 1})
    r.mset({"menu:1": 1})
    inventory = tmp_path / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "cache": {
                    "hosts": {"cache1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                    "vars": {
                        "bosun_redis_login_port": server.tls_port,
                        "bosun_redis_login_password": server.password,
                        "bosun_redis_login_db": 3,
                        "bosun_redis_tls": True,
                        "bosun_redis_ca_cert": test_ca.ca_cert,
                        "bosun_redis_client_cert": test_ca.cert,
                        "bosun_redis_client_key": test_ca.key,
                        "bosun_cache_groups": {"menu": ["menu:*"]},
                    },
                }
            }
        )
    )
    inventory.chmod(0o600)
    playbook = tmp_path / "finish.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "The deploy's flush, as its finish play runs it",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {"bosun_deploy_cache_flush_group": "menu"},
                    "tasks": [
                        {
                            "name": "Flush",
                            "ansible.builtin.include_role": {
                                "name": "bosun.platform.deploy",
                                "tasks_from": "cache_flush",
                            },
                        }
                    ],
                }
            ]
        )
    )
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), str(playbook)],
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert server.password not in proc.stdout + proc.stderr
    assert sorted(db3.keys("*")) == [b"user:1"]
    assert r.get("menu:1") == b"1"  # database 0 untouched
