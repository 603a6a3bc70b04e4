"""bosun.platform.elasticsearch_maintenance against a real Elasticsearch node.

One node for the session (tests/support/elasticsearch.py): TLS with the test CA, the
superuser ``elastic`` (a password with a quote, a dollar and spaces) for the changes, the
file-realm user with the cluster privilege ``monitor`` only for the shard report. Snapshots
go to ``fs`` repositories under the node's ``path.repo``.

Elasticsearch sets ``index.creation_date`` itself (the setting cannot be given), so the age
rules are tested with dates in index names (``age_from: name``), and the creation date with
``older_than_days`` 0 and 1 on indices just created. Every outcome is checked with an
independent probe as the superuser (``_cat/indices``, ``_snapshot``, a restore, segment
statistics). Each test removes what it created.
"""

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote as _quote

import pytest
import yaml

from tests.support.collection import collections_path

NOW = datetime.now(timezone.utc)


def day(days_ago, fmt="%Y.%m.%d"):
    return (NOW - timedelta(days=days_ago)).strftime(fmt)


def conn(elasticsearch, **over):
    args = dict(
        url="https://localhost:%d" % elasticsearch.port,
        login_user=elasticsearch.user,
        login_password=elasticsearch.password,
        ca_cert=elasticsearch.ca_cert,
    )
    args.update(over)
    return args


def maintain(run_module, elasticsearch, check_mode=False, **args):
    login = dict((k, args.pop(k)) for k in list(args) if k in ("login_user", "login_password", "api_key", "url"))
    return run_module("elasticsearch_maintenance", dict(conn(elasticsearch, **login), **args), check_mode=check_mode)


def existing(elasticsearch, prefix):
    """Index names that start with ``prefix``, as the node lists them (the independent probe)."""
    _status, rows = elasticsearch.request("GET", "/_cat/indices?format=json&h=index&expand_wildcards=all")
    return sorted(r["index"] for r in rows if r["index"].startswith(prefix))


def create(elasticsearch, name, docs=0, replicas=0, aliases=None, **settings):
    body = {"settings": dict({"number_of_shards": 1, "number_of_replicas": replicas}, **settings)}
    if aliases:
        body["aliases"] = aliases
    elasticsearch.request("PUT", "/" + quote(name), body)
    for n in range(docs):
        elasticsearch.request("POST", "/%s/_doc?refresh=true" % quote(name), {"n": n})


def quote(name):
    return _quote(name, safe="")


@contextlib.contextmanager
def indices(elasticsearch, prefix):
    """Deletes every index that starts with ``prefix`` when the block ends."""
    try:
        yield prefix
    finally:
        for name in existing(elasticsearch, prefix):
            elasticsearch.request("DELETE", "/" + quote(name), check=False)


@pytest.fixture
def repository(elasticsearch):
    """A registered fs repository under path.repo, removed with its snapshots afterwards."""
    name = "repo-" + uuid.uuid4().hex[:8]
    elasticsearch.request(
        "PUT", "/_snapshot/" + name, {"type": "fs", "settings": {"location": "%s/%s" % (elasticsearch.repo, name)}}
    )
    try:
        yield name
    finally:
        names = [s["snapshot"] for s in snapshots(elasticsearch, name)]
        if names:
            elasticsearch.request("DELETE", "/_snapshot/%s/%s" % (name, ",".join(names)), check=False)
        elasticsearch.request("DELETE", "/_snapshot/" + name, check=False)


def snapshots(elasticsearch, repo):
    return elasticsearch.request("GET", "/_snapshot/%s/_all" % repo)[1]["snapshots"]


def comparable(result):
    """A result without what differs between a check-mode and a real run by nature."""
    out = dict((k, v) for k, v in result.items() if k not in ("elapsed", "changed", "msg", "rc", "_stderr"))
    out.pop("invocation", None)
    if out.get("snapshot"):
        out["snapshot"] = dict(indices=out["snapshot"]["indices"], repository=out["snapshot"]["repository"])
    # an age (and the detail that states it) grows between the two runs
    out["kept"] = [
        dict((k, v) for k, v in entry.items() if k not in ("age_days", "detail")) for entry in out.get("kept", [])
    ]
    return out


# --- cleanup by a date in the name --------------------------------------------------------------------
def test_cleanup_deletes_only_the_old_indices_and_check_mode_predicts_it_exactly(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-logs-") as prefix:
        old = [prefix + day(45), prefix + day(31)]
        young = [prefix + day(29), prefix + day(0)]
        for name in old + young:
            create(elasticsearch, name, docs=1)
        create(elasticsearch, prefix + "nodate")
        args = dict(action="cleanup", patterns=[prefix + "*"], older_than_days=30, age_from="name")

        predicted = maintain(run_module, elasticsearch, check_mode=True, **args)
        assert predicted["rc"] == 0 and predicted["changed"] is True, predicted
        assert predicted["deleted"] == sorted(old)
        assert existing(elasticsearch, prefix) == sorted(old + young + [prefix + "nodate"])  # nothing changed

        done = maintain(run_module, elasticsearch, **args)
        assert done["rc"] == 0 and done["changed"] is True, done
        assert comparable(done) == comparable(predicted)
        assert existing(elasticsearch, prefix) == sorted(young + [prefix + "nodate"])
        kept = dict((k["index"], k) for k in done["kept"])
        assert kept[prefix + day(29)]["reason"] == kept[prefix + day(0)]["reason"] == "too_young"
        assert 28 < kept[prefix + day(29)]["age_days"] <= 30
        assert kept[prefix + "nodate"]["reason"] == "no_date"
        assert done["patterns"] == [dict(pattern=prefix + "*", matched=5)]
        assert done["msg"].startswith("deleted 2 indices (%s, %s)" % tuple(sorted(old)))

        again = maintain(run_module, elasticsearch, **args)
        assert again["changed"] is False and again["deleted"] == [], again


def test_write_indices_of_aliases_are_never_deleted(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-alias-") as prefix:
        create(elasticsearch, prefix + "app-" + day(90), aliases={prefix + "app": {"is_write_index": True}})
        create(elasticsearch, prefix + "app-" + day(60), aliases={prefix + "app": {"is_write_index": False}})
        create(elasticsearch, prefix + "solo-" + day(90), aliases={prefix + "solo": {}})
        create(elasticsearch, prefix + "pair-" + day(90), aliases={prefix + "pair": {}})
        create(elasticsearch, prefix + "pair-" + day(80), aliases={prefix + "pair": {}})
        result = maintain(
            run_module,
            elasticsearch,
            action="cleanup",
            patterns=[prefix + "*"],
            older_than_days=30,
            age_from="name",
        )
        assert result["rc"] == 0, result
        # an alias of two indices and no write flag has no write index: both may go
        assert result["deleted"] == sorted(
            [prefix + "app-" + day(60), prefix + "pair-" + day(90), prefix + "pair-" + day(80)]
        )
        kept = dict((k["index"], k) for k in result["kept"])
        assert kept[prefix + "app-" + day(90)]["reason"] == "write_index"
        assert kept[prefix + "app-" + day(90)]["detail"] == "write index of alias %sapp" % prefix
        assert kept[prefix + "solo-" + day(90)]["reason"] == "write_index"
        assert existing(elasticsearch, prefix) == sorted([prefix + "app-" + day(90), prefix + "solo-" + day(90)])


# --- guards -----------------------------------------------------------------------------------------
def test_max_delete_refuses_before_deleting_anything(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-many-") as prefix:
        names = [prefix + day(d) for d in (40, 41, 42, 0)]
        for name in names:
            create(elasticsearch, name)
        args = dict(action="cleanup", patterns=[prefix + "*"], older_than_days=30, age_from="name", max_delete=2)
        for check_mode in (True, False):
            result = maintain(run_module, elasticsearch, check_mode=check_mode, **args)
            assert result["failed"] is True and result["changed"] is False, result
            assert result["msg"].startswith("3 indices would be deleted, more than max_delete 2 (")
            assert result["msg"].endswith("): nothing deleted")
            assert result["deleted"] == [] and result["would_delete"] == sorted(names[:3])
            assert existing(elasticsearch, prefix) == sorted(names)
        raised = dict(args)
        raised["max_delete"] = 3
        result = maintain(run_module, elasticsearch, **raised)
        assert result["deleted"] == sorted(names[:3]) and existing(elasticsearch, prefix) == [names[3]]


def test_a_pattern_whose_every_index_would_go_needs_allow_delete_all(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-all-") as prefix:
        names = sorted([prefix + day(50), prefix + day(40)])
        for name in names:
            create(elasticsearch, name)
        args = dict(action="cleanup", patterns=[prefix + "*"], older_than_days=30, age_from="name")
        refused = maintain(run_module, elasticsearch, **args)
        assert refused["failed"] is True and refused["deleted"] == [], refused
        assert refused["msg"] == (
            "pattern '%s*' matches 2 indices and every one would be deleted (%s): nothing deleted; "
            "give allow_delete_all: true to allow it" % (prefix, ", ".join(names))
        )
        assert existing(elasticsearch, prefix) == names
        forced = maintain(run_module, elasticsearch, allow_delete_all=True, **args)
        assert forced["changed"] is True and forced["deleted"] == names, forced
        assert existing(elasticsearch, prefix) == []


def test_creation_date_ages_and_awkward_names(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-new-") as prefix:
        names = sorted([prefix + "a's$x+&%=;", prefix + "b~!@(1)"])
        for name in names:
            create(elasticsearch, name, docs=1)
        time.sleep(0.05)
        args = dict(action="cleanup", patterns=[prefix + "*"], allow_delete_all=True)
        young = maintain(run_module, elasticsearch, older_than_days=1, **args)
        assert young["changed"] is False and young["deleted"] == [], young
        assert [k["reason"] for k in young["kept"]] == ["too_young", "too_young"]
        assert all(0 <= k["age_days"] < 0.1 for k in young["kept"])
        # 0 days: everything created before now
        done = maintain(run_module, elasticsearch, older_than_days=0, **args)
        assert done["changed"] is True and done["deleted"] == names, done
        assert existing(elasticsearch, prefix) == []


# --- snapshot before deleting, retention ---------------------------------------------------------------
def test_snapshot_holds_the_indices_before_they_are_deleted_and_retention_keeps_n(
    elasticsearch, run_module, repository
):
    with indices(elasticsearch, "bosun-snap-") as prefix:
        create(elasticsearch, prefix + "current", aliases={prefix + "w": {}})  # the write index: never all matched
        elasticsearch.request(
            "PUT", "/_snapshot/%s/manual-1?wait_for_completion=true" % repository, {"indices": prefix + "current"}
        )
        args = dict(
            action="cleanup",
            patterns=[prefix + "*"],
            older_than_days=30,
            age_from="name",
            snapshot_repository=repository,
            snapshot_keep_last=2,
        )
        made = []
        for run in range(3):
            batch = sorted([prefix + day(100 + 10 * run), prefix + day(101 + 10 * run)])
            for name in batch:
                create(elasticsearch, name, docs=3)
            if run == 2:
                predicted = maintain(run_module, elasticsearch, check_mode=True, **args)
                assert predicted["snapshot"]["state"] is None and predicted["snapshot"]["indices"] == batch
                assert len(snapshots(elasticsearch, repository)) == 3  # nothing made, nothing deleted
            result = maintain(run_module, elasticsearch, **args)
            assert result["rc"] == 0 and result["changed"] is True, result
            snap = result["snapshot"]
            assert snap["name"].startswith("bosun-cleanup-") and snap["name"] == snap["name"].lower()
            assert snap["state"] == "SUCCESS" and snap["indices"] == batch == result["deleted"]
            # the independent probe: the repository's own record of the snapshot
            (recorded,) = elasticsearch.request("GET", "/_snapshot/%s/%s" % (repository, snap["name"]))[1]["snapshots"]
            assert recorded["state"] == "SUCCESS" and sorted(recorded["indices"]) == batch
            assert existing(elasticsearch, prefix) == [prefix + "current"]
            made.append(snap["name"])
            if run == 2:
                assert comparable(result) == comparable(predicted)
        assert result["snapshots_deleted"] == [made[0]]
        left = sorted(s["snapshot"] for s in snapshots(elasticsearch, repository))
        assert left == sorted(made[1:] + ["manual-1"])

        # what the newest snapshot holds comes back whole
        restored = prefix + "restored"
        elasticsearch.request(
            "POST",
            "/_snapshot/%s/%s/_restore?wait_for_completion=true" % (repository, made[2]),
            {"indices": batch[0], "rename_pattern": ".+", "rename_replacement": restored},
        )
        elasticsearch.request("POST", "/%s/_refresh" % restored)
        assert elasticsearch.request("GET", "/%s/_count" % restored)[1]["count"] == 3

        # nothing to delete: no snapshot, retention still applies (keep 1)
        nothing_due = dict(args)
        nothing_due.update(snapshot_keep_last=1, patterns=[prefix + "1*"])
        result = maintain(run_module, elasticsearch, **nothing_due)
        assert result["snapshot"] is None and result["snapshots_deleted"] == [made[1]], result


def test_a_missing_repository_fails_and_a_closed_index_is_snapshotted(elasticsearch, run_module, repository):
    with indices(elasticsearch, "bosun-closed-") as prefix:
        names = sorted([prefix + day(60), prefix + day(50), prefix + day(0)])
        for name in names:
            create(elasticsearch, name)
        args = dict(action="cleanup", patterns=[prefix + "*"], older_than_days=30, age_from="name")
        for check_mode in (True, False):
            result = maintain(run_module, elasticsearch, check_mode=check_mode, snapshot_repository="nope", **args)
            assert result["failed"] is True and result["deleted"] == [], result
            assert result["msg"].startswith(
                "snapshot repository 'nope' is not registered in the cluster: nothing deleted"
            )
        assert existing(elasticsearch, prefix) == names
        # a closed index is snapshotted (Elasticsearch 8 can) and deleted like an open one
        elasticsearch.request("POST", "/%s/_close" % names[0])
        result = maintain(run_module, elasticsearch, snapshot_repository=repository, **args)
        assert result["rc"] == 0 and result["deleted"] == names[:2] == result["snapshot"]["indices"], result
        (recorded,) = snapshots(elasticsearch, repository)
        assert recorded["state"] == "SUCCESS" and sorted(recorded["indices"]) == names[:2]
        assert [(k["index"], k["reason"]) for k in result["kept"]] == [(names[2], "too_young")]
        assert existing(elasticsearch, prefix) == [names[2]]


# --- force-merge --------------------------------------------------------------------------------------
def segments(elasticsearch, name):
    stats = elasticsearch.request("GET", "/%s/_stats/segments?level=shards" % name)[1]
    return max(copy["segments"]["count"] for copies in stats["indices"][name]["shards"].values() for copy in copies)


def test_forcemerge_merges_old_read_only_indices_once(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-merge-") as prefix:
        ro, rw, young = prefix + day(20), prefix + day(21), prefix + day(1)
        for name in (ro, rw, young):
            create(elasticsearch, name, docs=3)
        for name in (ro, young):
            elasticsearch.request("PUT", "/%s/_settings" % name, {"index.blocks.write": True})
        assert segments(elasticsearch, ro) == 3
        args = dict(action="forcemerge", patterns=[prefix + "*"], older_than_days=7, age_from="name")
        predicted = maintain(run_module, elasticsearch, check_mode=True, **args)
        assert predicted["changed"] is True, predicted
        assert predicted["merged"] == [dict(index=ro, segments_before=3, segments_after=None, seconds=None)]
        assert segments(elasticsearch, ro) == 3
        done = maintain(run_module, elasticsearch, **args)
        assert done["changed"] is True and [m["index"] for m in done["merged"]] == [ro], done
        assert done["merged"][0]["segments_after"] == 1 == segments(elasticsearch, ro)
        assert segments(elasticsearch, rw) == 3
        reasons = dict((s["index"], s["reason"]) for s in done["skipped"])
        assert reasons == {rw: "writable", young: "too_young"}
        again = maintain(run_module, elasticsearch, **args)
        assert again["changed"] is False and again["merged"] == [], again
        assert dict((s["index"], s["reason"]) for s in again["skipped"])[ro] == "merged"
        assert maintain(run_module, elasticsearch, check_mode=True, **args)["changed"] is False


# --- shard report ----------------------------------------------------------------------------------------
def test_shard_report_shows_the_unassigned_replica_and_why(elasticsearch, run_module):
    with indices(elasticsearch, "bosun-report-") as prefix:
        create(elasticsearch, prefix + "r", replicas=1)
        monitor = dict(login_user=elasticsearch.monitor_user, login_password=elasticsearch.monitor_password)
        for check_mode in (False, True):
            result = maintain(run_module, elasticsearch, check_mode=check_mode, action="shard_report", **monitor)
            assert result["rc"] == 0 and result["changed"] is False, result.get("msg")
            assert result["status"] == "yellow" and result["balanced"] is True and result["spread"] == 0
            (node,) = result["nodes"]
            truth = elasticsearch.request("GET", "/_cat/allocation?format=json&bytes=b")[1]
            assert (
                node["node"] == "es-test"
                and str(node["shards"]) == [r for r in truth if r["node"] == "es-test"][0]["shards"]
            )
            assert node["disk_total_bytes"] > 0 and 0 <= node["disk_percent"] <= 100
            assert result["unassigned_count"] >= 1
            mine = [u for u in result["unassigned"] if u["index"] == prefix + "r"]
            assert mine == [dict(index=prefix + "r", shard=0, primary=False, reason="INDEX_CREATED")]
            why = result["explanation"]
            assert why["can_allocate"] == "no" and why["reason"] == "INDEX_CREATED"
            assert [(d["node"], d["decider"]) for d in why["deciders"]] == [("es-test", "same_shard")]
            assert "unassigned shard(s)" in result["msg"]


# --- failures -------------------------------------------------------------------------------------------
def test_a_wrong_password_fails_clearly_without_the_secret(elasticsearch, run_module):
    wrong = "wr0ng 'pa$$' word " + secrets.token_hex(3)
    result = maintain(run_module, elasticsearch, action="shard_report", login_password=wrong)
    assert result["failed"] is True
    assert result["msg"].startswith(
        "GET https://localhost:%d/_cluster/health: HTTP 401, authentication failed for user elastic "
        "(security_exception: " % elasticsearch.port
    ), result["msg"]
    everything = json.dumps(result) + result["_stderr"]
    for secret in (wrong, elasticsearch.password):
        assert secret not in everything
    assert "Traceback" not in everything


# --- the action group: one connection for health_check and the maintenance module --------------------------
def test_module_defaults_of_the_elasticsearch_action_group(elasticsearch, tmp_path):
    playbook = [
        {
            "name": "One connection for every Elasticsearch task",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {
                "group/bosun.platform.elasticsearch": dict(
                    conn(elasticsearch),
                    login_user=elasticsearch.monitor_user,
                    login_password=elasticsearch.monitor_password,
                )
            },
            "tasks": [
                {
                    "name": "Health",
                    "bosun.platform.health_check": {"checks": [{"name": "search", "type": "elasticsearch"}]},
                    "register": "health",
                },
                {
                    "name": "Shards",
                    "bosun.platform.elasticsearch_maintenance": {"action": "shard_report"},
                    "register": "shards",
                },
                {
                    "name": "Show",
                    "ansible.builtin.debug": {
                        "msg": "health={{ health.checks[0].status }} nodes={{ shards.nodes | length }}"
                        " changed={{ shards.changed }}"
                    },
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook))
    inventory = {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path(),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
    )
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run(
        [binary, "-i", "inventory.yml", "play.yml"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert '"msg": "health=ok nodes=1 changed=False"' in proc.stdout
    assert elasticsearch.monitor_password not in proc.stdout + proc.stderr
