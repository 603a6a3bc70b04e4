"""elasticsearch_maintenance without a node: matching, name dates, write indices, the cleanup
plan and its guards, snapshot retention, segment counts, the shard report, options, docs.

The payloads have the shape Elasticsearch 8.19 answers with; the integration tests
(tests/integration/test_elasticsearch_maintenance.py) run the module against a real node.
"""

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from ansible_collections.bosun.platform.plugins.doc_fragments.elasticsearch import ModuleDocFragment
from ansible_collections.bosun.platform.plugins.module_utils import _elasticsearch as _es
from ansible_collections.bosun.platform.plugins.module_utils import _elasticsearch_maintenance as em
from ansible_collections.bosun.platform.plugins.modules import elasticsearch_maintenance

from tests.support.modules import run_module
from tests.support.servers import free_port

NOW = datetime(2024, 4, 5, 12, 0, 0, tzinfo=timezone.utc)
SECRET = "s3 'cr$t pw"
ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def params(**over):
    base = dict(action="cleanup", patterns=["logs-*"], older_than_days=30, login_user="maint", login_password=SECRET)
    base.update(over)
    return em.default_params(**base)


def record(name, days=None, **over):
    """One index as index_records makes it; ``days``: created that many days before NOW."""
    entry = dict(
        name=name,
        closed=False,
        system=False,
        hidden=False,
        data_stream=None,
        created=None if days is None else NOW - timedelta(days=days),
        write_block=False,
        write_alias_of=[],
    )
    entry.update(over)
    return entry


def records(*entries):
    return dict((e["name"], e) for e in entries)


# --- patterns and names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("logs-*", "logs-2024.01.01", True),
        ("logs-*", "Logs-2024.01.01", False),
        ("logs-202?.*", "logs-2024.01.01", True),
        ("logs-[ab]*", "logs-b1", True),
        ("*", ".security-7", False),  # dot names only for dot patterns
        ("*", ".ds-logs-2024.01.01-000001", False),
        (".ds-*", ".ds-logs-2024.01.01-000001", True),
        ("*", "orders", True),
    ],
)
def test_matches(pattern, name, expected):
    assert em.matches(pattern, name) is expected


@pytest.mark.parametrize(
    "pattern, prefix", [("logs-*", "logs-"), ("a?b*", "a"), ("[x]*", ""), ("*", ""), ("exact", "exact")]
)
def test_literal_prefix(pattern, prefix):
    assert em.literal_prefix(pattern) == prefix


@pytest.mark.parametrize(
    "name, pattern, fmt, expected",
    [
        ("logs-2024.01.05", "logs-*", "%Y.%m.%d", datetime(2024, 1, 5, tzinfo=timezone.utc)),
        ("logs-app-2024.01.05", "logs-*", "%Y.%m.%d", datetime(2024, 1, 5, tzinfo=timezone.utc)),
        ("logs-2024.01.05-000007", "logs-*", "%Y.%m.%d", datetime(2024, 1, 5, tzinfo=timezone.utc)),
        ("metrics-2024.03", "metrics-*", "%Y.%m", datetime(2024, 3, 1, tzinfo=timezone.utc)),
        ("w-2024.02", "w-*", "%G.%V", datetime(2024, 1, 8, tzinfo=timezone.utc)),  # ISO week 2's Monday
        ("h-20240105-13", "h-*", "%Y%m%d-%H", datetime(2024, 1, 5, 13, tzinfo=timezone.utc)),
        ("d-24.001", "d-*", "%y.%j", datetime(2024, 1, 1, tzinfo=timezone.utc)),
        # the prefix of the pattern is skipped: its digits are not the date
        ("2019.01.01-logs-2024.01.05", "2019.01.01-logs-*", "%Y.%m.%d", datetime(2024, 1, 5, tzinfo=timezone.utc)),
        ("logs-12024.01.05", "logs-*", "%Y.%m.%d", None),  # not cut out of a longer number
        ("logs-2024.13.05", "logs-*", "%Y.%m.%d", None),  # month 13
        ("logs-current", "logs-*", "%Y.%m.%d", None),
    ],
)
def test_the_date_in_a_name(name, pattern, fmt, expected):
    assert em.name_date(name, pattern, fmt) == expected


@pytest.mark.parametrize(
    "fmt, message",
    [
        ("%m.%d", "has no year"),
        ("%Y.%b", "%b is not supported"),
        ("%Y.%V", "%G and %V go together"),
        ("%Y.%m.%", "ends with a lone %"),
    ],
)
def test_unusable_name_date_formats(fmt, message):
    with pytest.raises(ValueError, match=message.replace("%", "%")):
        em.date_regex(fmt)
    assert any(message in p for p in em.validate(params(age_from="name", name_date_format=fmt)))


def test_snapshot_names_are_lower_case_utc_with_milliseconds():
    moment = datetime(2024, 4, 5, 3, 15, 0, 120000, tzinfo=timezone.utc)
    assert em.snapshot_name(moment) == "bosun-cleanup-20240405t031500.120z"
    later = em.snapshot_name(moment + timedelta(milliseconds=1))
    assert later > em.snapshot_name(moment) and later == later.lower()


# --- what the cluster answered ------------------------------------------------------------------------
def test_write_indices_of_aliases():
    aliases = {
        "a-1": {"aliases": {"a": {"is_write_index": False}}},
        "a-2": {"aliases": {"a": {"is_write_index": True}}},
        "solo-1": {"aliases": {"solo": {}}},
        "pair-1": {"aliases": {"pair": {}}},
        "pair-2": {"aliases": {"pair": {}, "other": {"is_write_index": True}}},
        "off-1": {"aliases": {"off": {"is_write_index": False}}},
        "plain": {"aliases": {}},
    }
    assert em.write_indices(aliases) == {"a-2": ["a"], "solo-1": ["solo"], "pair-2": ["other"]}


def test_index_records_from_the_three_answers():
    resolved = {
        "indices": [
            {"name": "logs-1", "aliases": ["logs"], "attributes": ["open"]},
            {"name": "old", "attributes": ["closed"]},
            {"name": ".ds-web-2024.01.01-000001", "attributes": ["hidden", "open"], "data_stream": "web"},
            {"name": ".ds-orphan-000001", "attributes": ["hidden", "open"]},
            {"name": ".tasks", "attributes": ["hidden", "open", "system"]},
        ],
        "aliases": [],
        "data_streams": [],
    }
    settings = {
        "logs-1": {"settings": {"index.creation_date": "1704067200000", "index.blocks.write": "true"}},
        "old": {"settings": {"index.creation_date": "1577836800000"}},
    }
    aliases = {"logs-1": {"aliases": {"logs": {"is_write_index": True}}}}
    got = em.index_records(resolved, settings, aliases)
    assert got["logs-1"]["created"] == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert got["logs-1"]["write_block"] is True and got["logs-1"]["write_alias_of"] == ["logs"]
    assert got["old"]["closed"] is True and got["old"]["write_block"] is False
    assert got[".ds-web-2024.01.01-000001"]["data_stream"] == "web"
    assert got[".ds-orphan-000001"]["data_stream"] == "?"  # a .ds- name is a backing index all the same
    assert got[".tasks"]["system"] is True and got[".tasks"]["created"] is None


# --- the cleanup plan -------------------------------------------------------------------------------------
def test_cleanup_plan_keeps_what_must_stay_and_says_why():
    cluster = records(
        record("logs-a", 40),
        record("logs-b", 31),
        record("logs-c", 30),  # exactly 30 days: not older than 30
        record("logs-d", 2),
        record("logs-w", 90, write_alias_of=["logs"]),
        record("logs-ds", 90, data_stream="logs"),
        record("logs-sys", 90, system=True),
        record("logs-nodate"),
        record("logs-closed", 60, closed=True),
        record("other", 90),
    )
    plan = em.plan_cleanup(cluster, params(), NOW)
    assert plan["delete"] == ["logs-a", "logs-b", "logs-closed"]
    assert plan["details"]["logs-a"] == dict(date="2024-02-25T12:00:00Z", age_days=40.0)
    kept = dict((k["index"], k) for k in plan["kept"])
    assert dict((n, k["reason"]) for n, k in kept.items()) == {
        "logs-c": "too_young",
        "logs-d": "too_young",
        "logs-w": "write_index",
        "logs-ds": "data_stream",
        "logs-sys": "system",
        "logs-nodate": "no_date",
    }
    assert kept["logs-c"]["detail"] == "30.0 days old, not older than 30" and kept["logs-c"]["age_days"] == 30.0
    assert kept["logs-w"]["detail"] == "write index of alias logs"
    assert kept["logs-ds"]["detail"] == "backing index of data stream logs"
    assert kept["logs-nodate"]["detail"] == "no index.creation_date"
    assert plan["patterns"] == [dict(pattern="logs-*", matched=9)]


def test_zero_days_is_everything_before_now_and_name_dates_work_the_same():
    assert em.plan_cleanup(
        records(record("x-1", 0.001), record("x-2", 0)), params(patterns=["x-*"], older_than_days=0), NOW
    )["delete"] == ["x-1"]
    by_name = records(record("logs-2024.03.05"), record("logs-2024.03.06"), record("logs-2024.03.07"))
    by_name.update(records(record("logs-2024.04.05")))
    plan = em.plan_cleanup(by_name, params(age_from="name"), NOW)
    # from the start of the day: 03.06 is 30.5 days old at noon on 04.05, 03.07 only 29.5
    assert plan["delete"] == ["logs-2024.03.05", "logs-2024.03.06"]
    assert [k["reason"] for k in plan["kept"]] == ["too_young", "too_young"]


def test_every_match_guard_is_per_pattern_and_allow_delete_all_lifts_it():
    cluster = records(record("a-1", 40), record("a-2", 50), record("b-1", 40), record("b-2", 1))
    with pytest.raises(em.MaintenanceError) as refused:
        em.plan_cleanup(cluster, params(patterns=["b-*", "a-*"]), NOW)
    assert refused.value.message == (
        "pattern 'a-*' matches 2 indices and every one would be deleted (a-1, a-2): nothing deleted; "
        "give allow_delete_all: true to allow it"
    )
    assert refused.value.result["plan"]["delete"] == ["a-1", "a-2", "b-1"]
    allowed = em.plan_cleanup(cluster, params(patterns=["b-*", "a-*"], allow_delete_all=True), NOW)
    assert allowed["delete"] == ["a-1", "a-2", "b-1"]
    # a pattern that matches nothing, and one whose indices are all kept, are fine
    assert em.plan_cleanup(cluster, params(patterns=["b-*", "zzz-*"]), NOW)["delete"] == ["b-1"]


def test_max_delete_counts_each_index_once():
    cluster = records(*[record("l-%02d" % i, 40) for i in range(12)] + [record("l-young", 1)])
    with pytest.raises(em.MaintenanceError) as refused:
        em.plan_cleanup(cluster, params(patterns=["l-*", "l-0*"], max_delete=11, allow_delete_all=True), NOW)
    assert refused.value.message == (
        "12 indices would be deleted, more than max_delete 11 "
        "(l-00, l-01, l-02, l-03, l-04, l-05, l-06, l-07, l-08, l-09 and 2 more): nothing deleted"
    )
    allowed = em.plan_cleanup(cluster, params(patterns=["l-*", "l-0*"], max_delete=12, allow_delete_all=True), NOW)
    assert len(allowed["delete"]) == 12
    with pytest.raises(em.MaintenanceError, match="more than max_delete 0"):
        em.plan_cleanup(cluster, params(patterns=["l-*"], max_delete=0), NOW)


# --- snapshots -------------------------------------------------------------------------------------------
def snap(name, minute, state="SUCCESS"):
    return dict(snapshot=name, state=state, start_time_in_millis=1712300000000 + minute * 60000)


def test_retention_keeps_the_newest_successful_ones_and_the_new_one():
    found = [
        snap("bosun-cleanup-1", 1),
        snap("bosun-cleanup-2", 2),
        snap("bosun-cleanup-3", 3, state="PARTIAL"),
        snap("bosun-cleanup-4", 4),
        snap("manual-9", 9),
        snap("bosun-cleanup-5", 5),
    ]
    assert em.retention(found, 2, new_name="bosun-cleanup-5") == ["bosun-cleanup-1", "bosun-cleanup-2"]
    assert em.retention(found, 1, new_name="bosun-cleanup-5") == [
        "bosun-cleanup-1",
        "bosun-cleanup-2",
        "bosun-cleanup-4",
    ]
    assert em.retention(found, 3) == ["bosun-cleanup-1"]
    assert em.retention(found, 10) == []
    # the new snapshot is kept even when it is not the newest by the clock
    assert "bosun-cleanup-1" not in em.retention(found, 1, new_name="bosun-cleanup-1")
    # in check mode the new one is not in the repository yet: the same names go
    assert em.retention(found[:-1], 2, new_name="bosun-cleanup-5") == ["bosun-cleanup-1", "bosun-cleanup-2"]


def test_a_snapshot_that_is_not_a_complete_copy():
    answer = {
        "snapshot": {
            "state": "PARTIAL",
            "indices": ["a"],
            "shards": {"total": 2, "failed": 1, "successful": 1},
            "failures": [{"index": "b", "shard_id": 0, "reason": "IndexShardSnapshotFailedException"}],
        }
    }
    assert em.snapshot_problems(answer, "s", ["a", "b"]) == [
        "state PARTIAL",
        "without b",
        "1 of 2 shards failed",
        "b[0]: IndexShardSnapshotFailedException",
    ]
    good = {"snapshot": {"state": "SUCCESS", "indices": ["b", "a"], "shards": {"total": 2, "failed": 0}}}
    assert em.snapshot_problems(good, "s", ["a", "b"]) == []


# --- force-merge ------------------------------------------------------------------------------------------
def test_forcemerge_plan_and_segment_counts():
    cluster = records(
        record("m-ro", 20, write_block=True),
        record("m-rw", 20),
        record("m-young", 1, write_block=True),
        record("m-closed", 20, write_block=True, closed=True),
    )
    plan = em.plan_forcemerge(cluster, params(action="forcemerge", patterns=["m-*"], older_than_days=7), NOW)
    assert plan["candidates"] == ["m-ro"]
    assert dict((s["index"], s["reason"]) for s in plan["skipped"]) == {
        "m-rw": "writable",
        "m-young": "too_young",
        "m-closed": "closed",
    }
    # without older_than_days every read-only index is a candidate
    plan = em.plan_forcemerge(cluster, params(action="forcemerge", patterns=["m-*"], older_than_days=None), NOW)
    assert plan["candidates"] == ["m-ro", "m-young"]
    stats = {
        "indices": {
            "m-ro": {"shards": {"0": [{"segments": {"count": 1}}, {"segments": {"count": 4}}]}},
            "m-young": {"shards": {"0": [{"segments": {"count": 1}}], "1": [{"segments": {"count": 0}}]}},
        }
    }
    segments = em.max_segments(stats)
    assert segments == {"m-ro": 4, "m-young": 1}
    assert em.split_merged(["m-ro", "m-young"], segments, 1) == (["m-ro"], ["m-young"])
    assert em.split_merged(["m-ro", "m-young"], segments, 5) == ([], ["m-ro", "m-young"])


# --- shard report --------------------------------------------------------------------------------------------
STATE = {
    "nodes": {"id1": {"name": "es1"}, "id2": {"name": "es2"}},
    "routing_table": {
        "indices": {
            "orders": {
                "shards": {
                    "0": [
                        {"state": "STARTED", "primary": True, "node": "id1"},
                        {
                            "state": "UNASSIGNED",
                            "primary": False,
                            "node": None,
                            "unassigned_info": {"reason": "NODE_LEFT"},
                        },
                    ],
                    "1": [{"state": "STARTED", "primary": True, "node": "id1"}],
                }
            },
            "menu": {
                "shards": {
                    "0": [{"state": "UNASSIGNED", "primary": True, "unassigned_info": {"reason": "ALLOCATION_FAILED"}}]
                }
            },
        }
    },
}
ALLOCATION = [
    {"shards": "2", "shards.undesired": "0", "disk.indices": "100", "disk.used": "5000", "disk.avail": "5000",
     "disk.total": "10000", "disk.percent": "50", "host": "10.0.0.1", "node": "es1"},
    {"shards": "0", "disk.used": "1000", "disk.total": "10000", "disk.percent": "10", "node": "es2"},
    {"shards": "2", "node": "UNASSIGNED"},
]  # fmt: skip


def test_shard_report_counts_per_node_and_lists_unassigned_primaries_first():
    copies = em.shard_copies(STATE)
    assert copies[0] == dict(
        index="menu", shard=0, primary=True, state="UNASSIGNED", node=None, reason="ALLOCATION_FAILED"
    )
    report = em.shard_report({"status": "red", "number_of_nodes": 2, "number_of_data_nodes": 2}, ALLOCATION, copies, 1)
    assert [(n["node"], n["shards"], n["primaries"], n["disk_percent"]) for n in report["nodes"]] == [
        ("es1", 2, 2, 50),
        ("es2", 0, 0, 10),
    ]
    assert report["spread"] == 2 and report["balanced"] is False
    assert report["unassigned_count"] == 2
    assert report["unassigned"] == [
        dict(index="menu", shard=0, primary=True, reason="ALLOCATION_FAILED"),
        dict(index="orders", shard=0, primary=False, reason="NODE_LEFT"),
    ]
    assert em.shard_report({}, ALLOCATION, copies, 2)["balanced"] is True
    single = em.shard_report({"status": "green"}, ALLOCATION[:1], [], 0)
    assert single["spread"] == 0 and single["balanced"] is True and single["unassigned"] == []


def test_the_allocation_explanation_keeps_the_deciders_that_said_no():
    answer = {
        "index": "orders",
        "shard": 0,
        "primary": False,
        "current_state": "unassigned",
        "unassigned_info": {"reason": "INDEX_CREATED", "last_allocation_status": "no_attempt"},
        "can_allocate": "no",
        "allocate_explanation": "cannot allocate",
        "node_allocation_decisions": [
            {
                "node_name": "es1",
                "deciders": [
                    {"decider": "same_shard", "decision": "NO", "explanation": "a copy is already here"},
                    {"decider": "disk_threshold", "decision": "YES", "explanation": "enough disk"},
                ],
            }
        ],
    }
    got = em.explanation(answer)
    assert got["reason"] == "INDEX_CREATED" and got["can_allocate"] == "no" and got["explanation"] == "cannot allocate"
    assert got["deciders"] == [dict(node="es1", decider="same_shard", explanation="a copy is already here")]


# --- options, requests --------------------------------------------------------------------------------------
def test_validate():
    assert em.validate(params()) == []
    assert em.validate(params(patterns=["logs-*", "", "a,b", "-x*", "sp ace"])) == [
        "an empty index pattern matches nothing: remove it",
        "index pattern 'a,b' holds ',', which no index name can",
        "index pattern '-x*' starts with '-': give names as they are (no exclusions)",
        "index pattern 'sp ace' holds ' ', which no index name can",
    ]
    assert em.validate(params(snapshot_keep_last=2)) == ["snapshot_keep_last needs snapshot_repository"]
    assert em.validate(params(snapshot_repository="b", snapshot_keep_last=0)) == [
        "snapshot_keep_last must be 1 or more (got 0)"
    ]
    assert em.validate(params(older_than_days=-1, max_delete=-1)) == [
        "older_than_days must be 0 or more (got -1)",
        "max_delete must be 0 or more (got -1)",
    ]
    assert em.validate(params(action="forcemerge", max_num_segments=0)) == [
        "max_num_segments must be 1 or more (got 0)"
    ]
    assert em.validate(params(action="shard_report", snapshot_repository="b")) == [
        "snapshot_repository is an option of action=cleanup"
    ]
    problems = em.validate(params(url="https://u:%s@es:9200" % SECRET, api_key="k"))
    assert "url must not hold credentials: give login_user and login_password" in problems
    assert "api_key and login_user/login_password are mutually exclusive" in problems
    assert SECRET not in json.dumps(problems)


def test_batches_keep_request_paths_short():
    names = ["index-%04d-%s" % (i, "x" * 40) for i in range(200)]
    groups = list(em.batches(names, budget=500))
    assert [n for g in groups for n in g] == names and len(groups) > 1
    assert all(len(",".join(em.quote(n) for n in g)) <= 500 for g in groups)
    assert em.quote("a's$x+&%=;") == "a%27s%24x%2B%26%25%3D%3B"


def test_redaction_is_the_last_line_of_defence():
    options = dict(login_user="maint", login_password=SECRET, api_key=None)
    assert _es.redact("x %s y" % SECRET, options) == "x ******** y"


# --- the module ----------------------------------------------------------------------------------------------
def test_a_refused_port_fails_naming_the_request_without_the_secret():
    port = free_port()
    for check_mode in (False, True):
        result = run_module(
            "elasticsearch_maintenance",
            dict(action="shard_report", url="https://127.0.0.1:%d" % port, login_user="maint", login_password=SECRET),
            check_mode=check_mode,
        )
        assert result["failed"] is True and result["changed"] is False
        assert result["msg"] == "GET https://127.0.0.1:%d/_cluster/health: connection refused" % port
        assert SECRET not in json.dumps(result) + result["_stderr"]


def test_options_are_checked_before_any_request():
    result = run_module("elasticsearch_maintenance", dict(action="cleanup", patterns=["logs-*"]))
    assert result["failed"] is True and "older_than_days" in result["msg"]
    result = run_module(
        "elasticsearch_maintenance",
        dict(action="cleanup", patterns=["a,b"], older_than_days=1, url="https://127.0.0.1:1", login_password=SECRET),
    )
    assert result["msg"] == ("login_password needs login_user; index pattern 'a,b' holds ',', which no index name can")
    assert SECRET not in json.dumps(result)


def _documented_options():
    options = dict(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"])
    options.update(yaml.safe_load(elasticsearch_maintenance.DOCUMENTATION)["options"])
    return options


def test_documentation_matches_the_argument_spec():
    spec = em.argument_spec()
    documented = _documented_options()
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name
    for secret in ("login_password", "api_key", "ca_cert_data"):
        assert spec[secret]["no_log"] is True


def test_examples_return_and_the_action_group():
    examples = yaml.safe_load(elasticsearch_maintenance.EXAMPLES)
    tasks = [t for e in examples for t in e.get("block", [e])]
    assert sum("bosun.platform.elasticsearch_maintenance" in t for t in tasks) == 4
    returned = yaml.safe_load(elasticsearch_maintenance.RETURN)
    assert {"deleted", "kept", "snapshot", "snapshots_deleted", "merged", "skipped", "balanced", "explanation"} <= set(
        returned
    )
    with open(os.path.join(ROOT, "meta", "runtime.yml"), encoding="utf-8") as f:
        groups = yaml.safe_load(f)["action_groups"]
    assert groups["elasticsearch"] == ["elasticsearch_maintenance", "health_check"]
    doc = yaml.safe_load(elasticsearch_maintenance.DOCUMENTATION)
    assert doc["attributes"]["action_group"]["membership"] == ["bosun.platform.elasticsearch"]


# --- one connection for the action group: health_check takes it too ---------------------------------------
def health_plans(checks, **top):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.bosun.platform.plugins.module_utils._checks import plan, spec

    validated = ArgumentSpecValidator(spec.argument_spec()).validate(dict(checks=checks, **top))
    assert not validated.error_messages, validated.error_messages
    return plan.build(validated.validated_parameters)


def test_health_check_takes_the_elasticsearch_group_defaults():
    group = dict(url="https://search1:9200", login_user="mon", login_password=SECRET, ca_cert="/etc/ca.pem")
    # every option of the group's defaults is one health_check accepts
    from ansible_collections.bosun.platform.plugins.module_utils._checks import spec

    assert set(_es.CONNECTION_OPTIONS) <= set(spec.argument_spec()) and set(_es.CONNECTION_OPTIONS) <= set(
        em.argument_spec()
    )
    (one,), warnings = health_plans([{"type": "elasticsearch", "elasticsearch": {"expected_nodes": 1}}], **group)
    assert one.options["url"] == "https://search1:9200" and one.options["login_user"] == "mon"
    assert one.options["ca_cert"] == "/etc/ca.pem" and one.options["validate_certs"] is True
    assert SECRET in one.secrets and warnings == []
    # a check's own value wins; the default url stays when none is given anywhere
    (mine,), _warnings = health_plans([{"type": "elasticsearch", "elasticsearch": {"url": "http://x:9200"}}], **group)
    assert mine.options["url"] == "http://x:9200"
    (bare,), _warnings = health_plans([{"type": "elasticsearch"}])
    assert bare.options["url"] == "https://127.0.0.1:9200" and bare.options["login_user"] is None
    # login_user is both PostgreSQL's and Elasticsearch's: not guessed in a mixed task, url still applies
    plans, warnings = health_plans([{"type": "elasticsearch"}, {"type": "postgres"}], **group)
    assert plans[0].options["url"] == "https://search1:9200" and plans[0].options["login_user"] is None
    assert warnings == [
        "top-level ca_cert, login_password, login_user ignored: this task has both elasticsearch and postgres "
        "checks, so it is not clear which they are for; give them in each check's elasticsearch/postgres options"
    ]
