"""health_check type elasticsearch: the judgement of the three responses, options, secrets.

The payloads have the shape Elasticsearch 8.19 answers with (``/_cluster/health``,
``/_nodes/stats/jvm,fs`` with the check's filter_path, ``/_cluster/settings`` with
include_defaults); tests/integration/test_elasticsearch_check.py runs the check against a
real node.
"""

import base64

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._checks import elasticsearch_check as es
from ansible_collections.bosun.platform.plugins.module_utils._checks import plan, registry, spec
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import CheckFailed, Probe
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import worst

from tests.support.servers import free_port

GB = 1024**3


def probe_for(**over):
    thresholds = dict((k, v) for k, v in es.METRICS.items() if v is not None)
    for name, (warn, crit) in over.items():
        thresholds[name] = thresholds[name].with_bounds(warn, crit)
    return Probe("search", 5, thresholds)


def by_name(probe):
    return dict((m["name"], m) for m in probe.metrics)


def health(**over):
    doc = {
        "cluster_name": "bosun",
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 3,
        "active_shards": 3,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }
    doc.update(over)
    return doc


def node(name, heap=41, old_used=20, old_max=256, total=100 * GB, available=77 * GB, reported=True):
    """One node of /_nodes/stats/jvm,fs; heap in %, the old pool in MB."""
    path = {
        "path": "/var/lib/elasticsearch",
        "mount": "/ (/dev/vda)",
        "type": "ext4",
        "total_in_bytes": total,
        "free_in_bytes": available + GB,
        "available_in_bytes": available,
    }
    if reported:  # Elasticsearch's own figures for the default 85/90/95 % watermarks
        path.update(
            low_watermark_free_space_in_bytes=int(total * 0.15),
            high_watermark_free_space_in_bytes=int(total * 0.10),
            flood_stage_free_space_in_bytes=int(total * 0.05),
        )
    mem = {"heap_used_percent": heap, "heap_max_in_bytes": 256 * 1024**2}
    if old_max is not None:
        mem["pools"] = {"old": {"used_in_bytes": old_used * 1024**2, "max_in_bytes": old_max * 1024**2}}
    return {"name": name, "jvm": {"mem": mem}, "fs": {"total": dict(path), "data": [path]}}


def stats(*nodes, failed=0):
    return {
        "_nodes": {"total": len(nodes) + failed, "successful": len(nodes), "failed": failed},
        "nodes": dict(("id%d" % i, n) for i, n in enumerate(nodes)),
    }


DEFAULTS = {
    "defaults": {
        "cluster": {
            "routing": {
                "allocation": {
                    "disk": {
                        "threshold_enabled": "true",
                        "watermark": {
                            "flood_stage": "95%",
                            "high": "90%",
                            "low": "85%",
                            "flood_stage.max_headroom": "100GB",
                            "low.max_headroom": "200GB",
                            "high.max_headroom": "150GB",
                            "flood_stage.frozen": "95%",
                        },
                    }
                }
            }
        }
    }
}


def measured(health_doc=None, stats_doc=None, settings=None, expected_nodes=None, **bounds):
    probe = probe_for(**bounds)
    es.measure(
        probe,
        health_doc or health(),
        stats_doc or stats(node("es1")),
        DEFAULTS if settings is None else settings,
        expected_nodes=expected_nodes,
    )
    return probe


def status(probe):
    return worst(m["status"] for m in probe.metrics)


# --- cluster status, nodes, shards -------------------------------------------------------
def test_green_single_node_reads_well():
    probe = measured(expected_nodes=1)
    got = by_name(probe)
    assert status(probe) == "ok"
    assert probe.message == (
        "green, 1/1 nodes, 0 unassigned shards, heap 41 % (memory pressure 8 %), disk 23 % (high watermark 90 %)"
    )
    # the heap is the check's value: recorded first, judged on the memory pressure
    assert probe.metrics[0]["name"] == "heap" and probe.metrics[0]["value"] == 7.8
    assert got["heap"]["text"] == "Elasticsearch heap 41 % (memory pressure 8 %)"
    assert got["status"]["text"] == "cluster green, 1/1 nodes, 0 unassigned shards"
    assert got["disk"]["value"] == 23.0 and got["disk"]["unit"] == "%"
    assert [m["name"] for m in probe.metrics if m["headline"]] == ["heap", "status", "disk"]


@pytest.mark.parametrize(
    "color, unassigned, primaries, expected",
    [("green", 0, 0, "ok"), ("yellow", 2, 0, "warn"), ("red", 3, 1, "crit"), ("purple", 0, 0, "unknown")],
)
def test_cluster_status_decides(color, unassigned, primaries, expected):
    doc = health(status=color, unassigned_shards=unassigned, unassigned_primary_shards=primaries)
    probe = measured(doc)
    got = by_name(probe)
    assert got["status"]["status"] == expected and status(probe) == expected
    assert got["unassigned_shards"]["value"] == unassigned and got["unassigned_shards"]["status"] == "ok"
    if color == "red":
        assert probe.message.startswith("red, 1 node, 3 unassigned shards (1 primary), heap ")


def test_fewer_nodes_than_expected_is_crit_more_is_warn():
    probe = measured(health(number_of_nodes=2), expected_nodes=3)
    got = by_name(probe)
    assert got["nodes"]["status"] == "crit" and got["nodes"]["text"] == "2 of 3 expected nodes in the cluster"
    assert got["status"]["status"] == "ok" and status(probe) == "crit"
    assert probe.message.startswith("green, 2/3 nodes, ")
    probe = measured(health(number_of_nodes=4), expected_nodes=3)
    assert by_name(probe)["nodes"]["status"] == "warn" and status(probe) == "warn"
    assert by_name(probe)["nodes"]["text"] == "4 nodes in the cluster, 3 expected"
    probe = measured(health(number_of_nodes=4))  # nothing expected: reported only
    assert by_name(probe)["nodes"]["status"] == "ok" and probe.message.startswith("green, 4 nodes, ")


def test_moving_shards_and_pending_tasks():
    doc = health(
        initializing_shards=2,
        relocating_shards=1,
        number_of_pending_tasks=12,
        task_max_waiting_in_queue_millis=2500,
        unassigned_shards=2,
        delayed_unassigned_shards=2,
        status="yellow",
    )
    probe = measured(doc)
    got = by_name(probe)
    assert got["initializing_shards"]["value"] == 2 and got["relocating_shards"]["value"] == 1
    assert (
        got["pending_tasks"]["status"] == "warn" and got["pending_tasks"]["text"] == "12 pending tasks (oldest 2.5 s)"
    )
    assert probe.message.startswith("yellow, 1 node, 2 unassigned shards (2 delayed), heap ")
    assert probe.message.endswith(", 2 initializing, 1 relocating shards, 12 pending tasks (oldest 2.5 s)")
    assert by_name(measured(doc, pending_tasks=(20, None)))["pending_tasks"]["status"] == "ok"
    probe = measured(doc, unassigned_shards=(1, 5))
    assert by_name(probe)["unassigned_shards"]["status"] == "warn"


# --- heap -----------------------------------------------------------------------------
def test_heap_judges_the_memory_pressure_of_the_worst_node():
    doc = stats(node("es1", heap=93, old_used=50), node("es2", heap=60, old_used=230), node("es3"))
    probe = measured(health(number_of_nodes=3), doc)
    heap = by_name(probe)["heap"]
    # es1's whole heap is fuller (young garbage) but es2's old generation is what presses
    assert heap["value"] == 89.8 and heap["status"] == "warn"
    assert heap["text"] == "Elasticsearch heap 60 % (memory pressure 90 %) on es2"
    assert by_name(measured(health(), doc, heap=(95, 99)))["heap"]["status"] == "ok"
    assert by_name(measured(health(), doc, heap=(50, 80)))["heap"]["status"] == "crit"


def test_heap_without_memory_pools_falls_back_to_heap_used():
    probe = measured(stats_doc=stats(node("es1", heap=88, old_max=None)))
    heap = by_name(probe)["heap"]
    assert heap["value"] == 88.0 and heap["status"] == "warn" and heap["text"] == "Elasticsearch heap 88 %"
    probe = measured(stats_doc={"nodes": {}})
    assert by_name(probe)["heap"]["value"] is None and "heap n/a" in probe.message
    assert by_name(probe)["disk"]["value"] is None and status(probe) == "ok"


# --- disk against the watermarks ------------------------------------------------------
@pytest.mark.parametrize(
    "available_gb, expected, text",
    [
        (77, "ok", "disk 23 % (high watermark 90 %)"),
        (12, "ok", "disk 88 % (above the low watermark 85 %: no shards allocated there; high 90 %)"),
        (8, "warn", "disk 92 % above the high watermark 90 % (no new shards there, shards move away)"),
        (4, "crit", "disk 96 % above the flood stage watermark 95 % (indices with a shard there are read-only)"),
    ],
)
def test_disk_levels(available_gb, expected, text):
    for reported in (True, False):  # the node's own figures, or computed from the settings
        probe = measured(stats_doc=stats(node("es1", available=available_gb * GB, reported=reported)))
        disk = by_name(probe)["disk"]
        assert (disk["status"], disk["text"]) == (expected, text), reported


def test_disk_of_several_nodes_names_the_worst():
    doc = stats(node("es1", available=50 * GB), node("es2", available=8 * GB), node("es3", available=9 * GB))
    disk = by_name(measured(health(number_of_nodes=3), doc))["disk"]
    assert disk["status"] == "warn" and disk["text"].startswith("disk 92 % on es2 above the high watermark 90 %")


def test_watermark_max_headroom_on_a_big_disk():
    # 4 TB: 90 % would keep 410 GB free, the 150 GB headroom caps it (high watermark 96.3 %)
    big = stats(node("es1", total=4096 * GB, available=300 * GB, reported=False))
    disk = by_name(measured(stats_doc=big))["disk"]
    assert disk["status"] == "ok" and disk["text"] == "disk 93 % (high watermark 96.3 %)"
    # a watermark set explicitly without its headroom: no cap, as Elasticsearch does it
    explicit = dict(DEFAULTS, persistent={"cluster.routing.allocation.disk.watermark.high": "90%"})
    assert by_name(measured(stats_doc=big, settings=explicit))["disk"]["status"] == "warn"


def test_watermarks_as_ratios_and_absolute_sizes():
    settings = {
        "defaults": DEFAULTS["defaults"],
        "persistent": {"cluster": {"routing": {"allocation": {"disk": {"watermark": {"low": "0.5", "high": "30gb"}}}}}},
        # transient wins over persistent
        "transient": {"cluster.routing.allocation.disk.watermark.flood_stage": "10gb"},
    }
    doc = stats(node("es1", available=20 * GB, reported=False))
    disk = by_name(measured(stats_doc=doc, settings=settings))["disk"]
    assert disk["status"] == "warn" and disk["text"].startswith("disk 80 % above the high watermark 70 %")
    doc = stats(node("es1", available=5 * GB, reported=False))
    assert by_name(measured(stats_doc=doc, settings=settings))["disk"]["status"] == "crit"


def test_disabled_watermarks_are_reported_not_judged():
    settings = {
        "defaults": DEFAULTS["defaults"],
        "persistent": {"cluster.routing.allocation.disk.threshold_enabled": "false"},
    }
    disk = by_name(measured(stats_doc=stats(node("es1", available=1 * GB)), settings=settings))["disk"]
    assert disk["status"] == "ok" and disk["text"] == "disk 99 % (disk watermarks disabled)"


def test_setting_parsers():
    assert es.parse_watermark("85%") == ("percent", 85.0)
    assert es.parse_watermark(" 0.9 ") == ("percent", 90.0)
    assert es.parse_watermark("500mb") == ("bytes", 500 * 1024**2)
    assert es.parse_watermark("1.5GB") == ("bytes", 1.5 * GB)
    for bad in ("85", "120%", "lots", "", "-1"):
        assert es.parse_watermark(bad) is None, bad
    assert es.parse_bytes("-1") is None and es.parse_bytes("150GB") == 150 * GB and es.parse_bytes("1b") == 1
    flat = es.flatten({"a": {"b": 1, "c.d": {"e": 2}}, "f": 3})
    assert flat == {"a.b": 1, "a.c.d.e": 2, "f": 3}
    effective, explicit = es.disk_settings(
        {
            "defaults": {"cluster.routing.allocation.disk.watermark.high": "90%", "indices.merge.disk.watermark": "x"},
            "persistent": {"cluster": {"routing": {"allocation": {"disk": {"watermark": {"high": "80%"}}}}}},
        }
    )
    assert effective == {"watermark.high": "80%"} and explicit == {"watermark.high"}


def test_nodes_that_gave_no_statistics_warn():
    probe = measured(health(number_of_nodes=2), stats(node("es1"), failed=1))
    assert by_name(probe)["node_stats"]["status"] == "warn"
    assert probe.message.endswith(", 1 node did not answer for statistics")


# --- options, secrets, plan -----------------------------------------------------------
def options(**over):
    opts = dict((name, spec.get("default")) for name, spec in dict(es.FAMILY_ARGS, **es.OPTIONS).items())
    opts.update(over)
    return opts


def test_validate():
    assert es.validate(options(login_user="u", login_password="p")) == []
    problems = es.validate(options(url="ftp://x"))
    assert problems == ["elasticsearch.url must be http:// or https:// and a host (got 'ftp://x')"]
    problems = es.validate(options(url="https://u:s3cret@es:9200/?pretty", login_password="p", api_key="k"))
    assert len(problems) == 4 and "s3cret" not in " ".join(problems)
    assert es.validate(options(expected_nodes=0)) == ["elasticsearch.expected_nodes must be 1 or more (got 0)"]
    assert es.validate(options(ca_cert="/x", ca_cert_data="PEM")) == [
        "elasticsearch.ca_cert and elasticsearch.ca_cert_data are mutually exclusive"
    ]


def test_secrets_and_the_api_key_header():
    pair = base64.b64encode(b"monitor:pa ss").decode()
    assert es.secrets(options(login_user="monitor", login_password="pa ss")) == ["pa ss", pair]
    encoded = base64.b64encode(b"id1:key1").decode()
    assert es.api_key_header(encoded) == es.api_key_header("id1:key1") == "ApiKey " + encoded
    assert es.secrets(options(api_key="id1:key1")) == ["id1:key1", encoded]


def test_the_type_in_the_module_spec_and_the_plan():
    assert registry.get("elasticsearch") is es and registry.primary_metric(es) == "heap"
    assert registry.tunable_metrics(es) == [
        "heap",
        "unassigned_shards",
        "initializing_shards",
        "relocating_shards",
        "pending_tasks",
    ]
    sub = spec.check_options()["elasticsearch"]["options"]
    assert sub["login_password"]["no_log"] and sub["api_key"]["no_log"] and sub["ca_cert_data"]["no_log"]
    check = dict(
        name=None,
        type="elasticsearch",
        timeout=5.0,
        warn=None,
        crit=None,
        thresholds={"heap": {"warn": 70}},
        labels=None,
        elasticsearch={"login_user": "m", "login_password": "pw 1"},
    )
    plans, _warnings = plan.build(dict(checks=[check], concurrency=1, overall_timeout=10))
    (one,) = plans
    assert one.name == "elasticsearch https://127.0.0.1:9200" and one.options["validate_certs"] is True
    assert one.thresholds["heap"].warn == 70 and one.thresholds["heap"].crit == 95
    assert "pw 1" in one.secrets
    with pytest.raises(plan.PlanError, match="thresholds.disk: elasticsearch checks have heap, "):
        plan.build(dict(checks=[dict(check, thresholds={"disk": {"warn": 80}})], concurrency=1, overall_timeout=10))


def test_http_failures_in_words():
    body = b'{"error":{"type":"security_exception","reason":"unable to authenticate user [m]"},"status":401}'
    assert es._http_failure(401, body, options(login_user="m")) == (
        "HTTP 401, authentication failed for user m (security_exception: unable to authenticate user [m])"
    )
    assert es._http_failure(401, b"", options(api_key="k")) == "HTTP 401, authentication failed with the API key"
    assert es._http_failure(403, b"", options(login_user="m")).endswith("needs the cluster privilege monitor")
    body = b'{"error":{"type":"master_not_discovered_exception","reason":null},"status":503}'
    assert es._http_failure(503, body, options()) == "HTTP 503: master_not_discovered_exception"
    assert es._http_failure(502, b"<html>bad gateway</html>", options()) == "HTTP 502"


def test_refused_port_is_crit_naming_the_url():
    port = free_port()
    probe = probe_for()
    with pytest.raises(CheckFailed) as failed:
        es.run(probe, options(url="https://127.0.0.1:%d/" % port, login_user="m", login_password="secret pw"))
    assert failed.value.message == "GET https://127.0.0.1:%d/_cluster/health: connection refused" % port
    assert failed.value.status == "crit" and probe.metrics == []
