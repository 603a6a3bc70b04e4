"""The elasticsearch type of bosun.platform.health_check against a real Elasticsearch node.

One node for the session (tests/support/elasticsearch.py): TLS on HTTP with the test CA, the
check logs in as a file-realm user with the cluster privilege ``monitor`` only. Each test
that changes the cluster (an index, a setting) undoes the change before it ends. Outcomes
are compared with independent probes: the cluster's own health as the superuser, statvfs of
the node's data directory.
"""

import base64
import contextlib
import json
import os
import secrets
import time

from ansible_collections.bosun.platform.plugins.filter.health_report import health_report, health_report_text

from tests.support.servers import free_port


def es_check(run_module, elasticsearch, name="search", fail_on="never", **over):
    """Run one elasticsearch check (plus top-level keys such as thresholds/warn)."""
    top = dict((k, over.pop(k)) for k in ("thresholds", "warn", "crit", "timeout") if k in over)
    check = dict(name=name, type="elasticsearch", elasticsearch=elasticsearch.conn_args(**over), **top)
    return run_module("health_check", dict(checks=[check], fail_on=fail_on))


def metrics(check):
    return dict((m["name"], m) for m in check["metrics"])


def wait_for_status(elasticsearch, wanted, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = elasticsearch.health()
        if health["status"] == wanted:
            return health
        time.sleep(0.5)
    raise AssertionError("cluster not %s within %s s: %s" % (wanted, seconds, elasticsearch.health()))


@contextlib.contextmanager
def index(elasticsearch, name, settings, wait_for_active_shards=None):
    """An index that exists for the with-block only."""
    if wait_for_active_shards is not None:  # 0: do not wait for a primary that cannot be allocated
        path = "/%s?wait_for_active_shards=%s" % (name, wait_for_active_shards)
    else:
        path = "/" + name
    elasticsearch.request("PUT", path, {"settings": settings})
    try:
        yield name
    finally:
        elasticsearch.request("DELETE", "/" + name)
        wait_for_status(elasticsearch, "green")


@contextlib.contextmanager
def cluster_settings(elasticsearch, values):
    """Persistent cluster settings for the with-block only."""
    elasticsearch.request("PUT", "/_cluster/settings", {"persistent": values})
    try:
        yield
    finally:
        elasticsearch.request("PUT", "/_cluster/settings", {"persistent": dict.fromkeys(values)})


def expected_disk(elasticsearch):
    """(used %, high watermark %) of the data directory by statvfs, as Elasticsearch counts
    them: space not available to it is used; the default high watermark is 90 % of the disk
    but never more than 150 GB of free space."""
    st = os.statvfs(elasticsearch.data)
    total, available = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    need = min(total * 0.10, 150 * 1024**3)
    return 100.0 * (total - available) / total, 100.0 * (total - need) / total


# --- healthy ------------------------------------------------------------------------------
def test_green_single_node_is_ok_and_reads_well_in_the_report(elasticsearch, run_module):
    result = es_check(run_module, elasticsearch, fail_on="crit", expected_nodes=1)
    assert result["rc"] == 0 and result["changed"] is False, result
    (check,) = result["checks"]
    got = metrics(check)
    assert check["status"] == "ok", check["message"]
    truth = elasticsearch.health()
    assert truth["status"] == got["status"]["value"] == "green"
    assert got["nodes"]["value"] == truth["number_of_nodes"] == 1
    assert got["unassigned_shards"]["value"] == truth["unassigned_shards"] == 0
    assert check["message"].startswith("green, 1/1 nodes, 0 unassigned shards, heap ")

    # the check's value is the JVM memory pressure (old generation of the 256 MB heap)
    assert check["unit"] == "%" and 0 < check["value"] < 85 and got["heap"]["status"] == "ok"
    assert got["heap"]["text"].startswith("Elasticsearch heap ") and "memory pressure" in got["heap"]["text"]

    used, high = expected_disk(elasticsearch)
    assert abs(got["disk"]["value"] - used) <= 1, (got["disk"], used)
    assert got["disk"]["text"].endswith("(high watermark %s %%)" % ("%.1f" % high).rstrip("0").rstrip("."))
    assert got["disk"]["status"] == ("ok" if used < high else "warn")

    # the health report's Search line (the check labelled with its tier, as playbooks/health.yml does)
    labelled = dict(result, checks=[dict(check, labels={"tier": "search"})])
    report = health_report(["search1"], {"search1": {"group_names": ["search"], "r": labelled}}, result_var="r")
    line = health_report_text(report).splitlines()[1]
    assert line.startswith("Search:         \u2705 Elasticsearch heap ")
    assert "\u2705 cluster green, 1/1 nodes, 0 unassigned shards  \u2705 disk " in line


# --- cluster status -----------------------------------------------------------------------
def test_a_replica_on_a_single_node_is_yellow_and_warns(elasticsearch, run_module):
    with index(elasticsearch, "bosun-yellow", {"number_of_shards": 1, "number_of_replicas": 1}):
        truth = wait_for_status(elasticsearch, "yellow")
        result = es_check(run_module, elasticsearch, fail_on="warn")
        (check,) = result["checks"]
        got = metrics(check)
        assert result["failed"] is True and check["status"] == "warn", check["message"]
        assert got["status"]["value"] == "yellow" and got["status"]["status"] == "warn"
        assert got["unassigned_shards"]["value"] == truth["unassigned_shards"] == 1
        assert check["message"].startswith("yellow, 1 node, 1 unassigned shard, heap ")
    result = es_check(run_module, elasticsearch)  # the index is gone: green again
    assert result["checks"][0]["status"] == "ok", result["checks"][0]["message"]


def test_a_primary_that_cannot_be_allocated_is_red_and_crit(elasticsearch, run_module):
    settings = {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "routing.allocation.require._name": "no-such-node",
    }
    with index(elasticsearch, "bosun-red", settings, wait_for_active_shards=0):
        truth = wait_for_status(elasticsearch, "red")
        result = es_check(run_module, elasticsearch, fail_on="crit")
        (check,) = result["checks"]
        assert result["failed"] is True and result["rc"] != 0
        assert check["status"] == "crit" and metrics(check)["status"]["value"] == "red"
        assert truth["unassigned_primary_shards"] == 1
        assert check["message"].startswith("red, 1 node, 1 unassigned shard (1 primary), heap ")
        assert "search crit: red, 1 node" in result["msg"]


def test_fewer_nodes_than_expected_is_crit(elasticsearch, run_module):
    result = es_check(run_module, elasticsearch, expected_nodes=2)
    (check,) = result["checks"]
    got = metrics(check)
    assert check["status"] == "crit"
    assert got["status"]["status"] == "ok"  # green, but a node is missing
    assert got["nodes"]["status"] == "crit" and got["nodes"]["text"] == "1 of 2 expected nodes in the cluster"
    assert check["message"].startswith("green, 1/2 nodes, ")


# --- thresholds ---------------------------------------------------------------------------
def test_heap_thresholds_warn_and_crit(elasticsearch, run_module):
    result = es_check(run_module, elasticsearch, warn=0.01, crit=99)
    (check,) = result["checks"]
    assert check["status"] == "warn" and metrics(check)["heap"]["status"] == "warn", check["message"]
    result = es_check(run_module, elasticsearch, thresholds={"heap": {"warn": 0.005, "crit": 0.01}})
    assert result["checks"][0]["status"] == "crit"
    result = es_check(run_module, elasticsearch, thresholds={"disk": {"warn": 1}})
    assert result["rc"] != 0 and "thresholds.disk: elasticsearch checks have heap, " in result["msg"]


def test_disk_above_the_high_watermark_warns(elasticsearch, run_module):
    used, _high = expected_disk(elasticsearch)
    assert used > 3, "this test needs a disk more than 3 % used"
    watermarks = {
        "cluster.routing.allocation.disk.watermark.low": "1%",
        "cluster.routing.allocation.disk.watermark.high": "2%",
        "cluster.routing.allocation.disk.watermark.flood_stage": "99%",
    }
    with cluster_settings(elasticsearch, watermarks):
        result = es_check(run_module, elasticsearch)
    (check,) = result["checks"]
    disk = metrics(check)["disk"]
    assert check["status"] == "warn" and disk["status"] == "warn", check["message"]
    assert "above the high watermark 2 % (no new shards there, shards move away)" in disk["text"]
    result = es_check(run_module, elasticsearch)  # the defaults are back
    assert metrics(result["checks"][0])["disk"]["text"].endswith(
        "(high watermark %s %%)" % (("%.1f" % expected_disk(elasticsearch)[1]).rstrip("0").rstrip("."))
    )


# --- failures -----------------------------------------------------------------------------
def test_wrong_password_and_api_key_are_crit_without_the_secret(elasticsearch, run_module):
    wrong = "wr0ng 'pa$$' word " + secrets.token_hex(3)
    key = base64.b64encode(("id%s:k3y" % secrets.token_hex(3)).encode()).decode()
    checks = [
        dict(name="password", type="elasticsearch", elasticsearch=elasticsearch.conn_args(login_password=wrong)),
        dict(
            name="api key",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(login_user=None, login_password=None, api_key=key),
        ),
        dict(
            name="anonymous",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(login_user=None, login_password=None),
        ),
    ]
    result = run_module("health_check", dict(checks=checks, fail_on="crit"))
    assert result["failed"] is True
    got = dict((c["name"], c) for c in result["checks"])
    url = "https://localhost:%d/_cluster/health" % elasticsearch.port
    assert got["password"]["status"] == got["api key"]["status"] == got["anonymous"]["status"] == "crit"
    assert got["password"]["message"].startswith(
        "GET %s: HTTP 401, authentication failed for user bosun_monitor (security_exception: " % url
    )
    assert got["api key"]["message"].startswith("GET %s: HTTP 401, authentication failed with the API key" % url)
    assert (
        got["anonymous"]["message"] == "GET %s: HTTP 401, authentication required: give login_user and "
        "login_password or api_key" % url
    )
    everything = json.dumps(result) + result["_stderr"]
    basic = base64.b64encode(("bosun_monitor:" + wrong).encode()).decode()
    for secret in (wrong, basic, key, elasticsearch.monitor_password, elasticsearch.password):
        assert secret not in everything
    assert "Traceback" not in everything


def test_tls_and_connection_failures_name_the_url_and_the_cause(elasticsearch, test_ca, run_module):
    with open(test_ca.ca_cert, encoding="ascii") as f:
        ca_pem = f.read()
    refused = free_port()
    checks = [
        dict(name="system CAs", type="elasticsearch", elasticsearch=elasticsearch.conn_args(ca_cert=None)),
        dict(
            name="CA as text",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(ca_cert=None, ca_cert_data=ca_pem),
        ),
        dict(
            name="no verification",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(ca_cert=None, validate_certs=False),
        ),
        dict(
            name="plain http",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(url="http://localhost:%d" % elasticsearch.port),
        ),
        dict(
            name="refused",
            type="elasticsearch",
            elasticsearch=elasticsearch.conn_args(url="https://localhost:%d" % refused),
        ),
    ]
    # all in one task: the checks run concurrently, each with its own TLS settings
    result = run_module("health_check", dict(checks=checks, fail_on="never"))
    got = dict((c["name"], c) for c in result["checks"])
    assert got["CA as text"]["status"] == got["no verification"]["status"] == "ok", result["checks"]
    url = "https://localhost:%d/_cluster/health" % elasticsearch.port
    assert got["system CAs"]["status"] == "crit"
    assert got["system CAs"]["message"].startswith("GET %s: TLS certificate verify failed" % url)
    assert got["plain http"]["status"] == "crit"
    assert got["plain http"]["message"].endswith("(does the node require https?)"), got["plain http"]["message"]
    assert got["refused"]["message"] == "GET https://localhost:%d/_cluster/health: connection refused" % refused
