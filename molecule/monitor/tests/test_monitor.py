"""Behaviour of the monitor tier: bosun.platform.prometheus on the monitor host, scraping the
exporters of the cache host, with its alerts reaching a webhook.

Prometheus and Alertmanager are asked from the test machine on the monitor host's private
address, as an operator's tunnel or Grafana would reach them.
"""

import json
import os
import time
import urllib.parse
import urllib.request

import pytest
import testinfra
import yaml

MON = "bosun-monitor-mon1"
SVC = "bosun-monitor-svc1"
MON_ADDRESS = "172.30.219.10"
PROMETHEUS = "http://%s:9090" % MON_ADDRESS
ALERTMANAGER = "http://%s:9093" % MON_ADDRESS
POSTS = "/var/tmp/webhook-posts.jsonl"
ROLE_RULES = os.path.join(
    os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.join(os.path.dirname(__file__), "..", "..", "..")),
    "roles",
    "prometheus",
    "files",
    "rules",
)

testinfra_hosts = [MON]


def wait_for(probe, seconds, step=2):
    """Call probe until it returns something truthy or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = probe()
    return value


def api(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the scenario's own address
        return json.load(response)


def targets():
    return api(PROMETHEUS, "/api/v1/targets", state="active")["data"]["activeTargets"]


def query(expr):
    return api(PROMETHEUS, "/api/v1/query", query=expr)["data"]["result"]


def posts(host):
    f = host.file(POSTS)
    if not f.exists:
        return []
    return [json.loads(line) for line in f.content_string.splitlines() if line.strip()]


def firing(host, alertname):
    """The notifications the webhook got that carry ``alertname`` firing."""
    return [
        p
        for p in posts(host)
        if p["body"]["status"] == "firing"
        and any(a["labels"].get("alertname") == alertname and a["status"] == "firing" for a in p["body"]["alerts"])
    ]


def test_every_target_is_up():
    def all_up():
        found = targets()
        return found if found and all(t["health"] == "up" for t in found) else None

    found = wait_for(all_up, 90)
    assert found, "targets not up: %s" % [
        (t["labels"]["job"], t["labels"].get("instance"), t["health"], t["lastError"]) for t in targets()
    ]
    seen = sorted((t["labels"]["job"], t["labels"]["instance"], t["labels"]["tier"]) for t in found)
    assert seen == sorted(
        [
            ("node", MON, "monitor"),
            ("node", SVC, "cache"),
            ("redis", SVC, "cache"),
            ("prometheus", MON, "monitor"),
            ("alertmanager", MON, "monitor"),
            ("blackbox_http", "http://%s:9090/-/healthy" % MON_ADDRESS, "probe"),
        ]
    )


def test_the_exporters_report_their_services():
    assert wait_for(lambda: query('redis_up{job="redis", instance="%s"} == 1' % SVC), 30)
    assert wait_for(lambda: query('probe_success{job="blackbox_http"} == 1'), 30)
    assert query('node_uname_info{instance="%s"}' % MON)


def test_every_rule_file_is_loaded():
    groups = api(PROMETHEUS, "/api/v1/rules")["data"]["groups"]
    files = {os.path.basename(g["file"]) for g in groups}
    shipped = {f for f in os.listdir(ROLE_RULES) if f.endswith(".rules.yml")}
    assert shipped <= files
    assert "test-extra.rules.yml" in files
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"RedisDown", "HostDown", "bosun_test:up:count"} <= names
    assert all(r["health"] == "ok" for g in groups for r in g["rules"] if r.get("lastEvaluation", "").startswith("2"))


def test_retention_and_listen_address():
    flags = api(PROMETHEUS, "/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "15d"
    # Prometheus reads GB as 2^30 bytes and shows it so.
    assert flags["storage.tsdb.retention.size"] == "2GiB"
    assert flags["web.listen-address"] == "%s:9090" % MON_ADDRESS


def test_ports_listen_where_they_should(host):
    assert host.socket("tcp://%s:9090" % MON_ADDRESS).is_listening
    assert host.socket("tcp://%s:9093" % MON_ADDRESS).is_listening
    assert host.socket("tcp://127.0.0.1:9115").is_listening
    assert not host.socket("tcp://0.0.0.0:9115").is_listening
    assert not host.socket("tcp://0.0.0.0:9090").is_listening
    # One monitor host: Alertmanager's cluster port stays closed.
    assert not host.socket("tcp://0.0.0.0:9094").is_listening


def test_alertmanager_secrets_are_private(host):
    config = host.file("/etc/prometheus/alertmanager.yml")
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)
    # The service user reads it, another user does not.
    assert host.run("runuser -u prometheus -- cat /etc/prometheus/alertmanager.yml").rc == 0
    assert host.run("runuser -u nobody -- cat /etc/prometheus/alertmanager.yml").rc != 0
    # Alertmanager's API shows its configuration with the secrets masked.
    shown = api(ALERTMANAGER, "/api/v2/status")["config"]["original"]
    for secret in ("hook-secret-token", "slack-secret-token", "smtp pa'ss"):
        assert secret not in shown


def test_alertmanager_routes_and_inhibition():
    config = yaml.safe_load(api(ALERTMANAGER, "/api/v2/status")["config"]["original"])
    route = config["route"]
    assert route["group_by"] == ["alertname", "instance"]
    assert route["group_wait"] == "5s"
    assert [(r["receiver"], r["matchers"]) for r in route["routes"]] == [
        ("bosun-critical", ['severity="critical"']),
        ("bosun-warning", ['severity="warning"']),
    ]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert sorted(receivers["bosun-critical"]) == ["name", "slack_configs", "webhook_configs"]
    assert sorted(receivers["bosun-warning"]) == ["email_configs", "name", "webhook_configs"]
    assert config["inhibit_rules"][0]["source_matchers"] == ['alertname=~"HostDown"']
    assert config["inhibit_rules"][0]["equal"] == ["instance"]


@pytest.fixture()
def redis_stopped():
    svc = testinfra.get_host("docker://" + SVC)
    svc.run("systemctl stop redis-server")
    yield svc
    svc.run("systemctl start redis-server")
    wait_for(lambda: query('redis_up{instance="%s"} == 1' % SVC), 60)


def test_redis_down_reaches_the_webhook(host, redis_stopped):
    before = len(firing(host, "RedisDown"))
    # The rule's `for`, an evaluation, Alertmanager's group_wait, and some slack.
    got = wait_for(lambda: len(firing(host, "RedisDown")) > before, 150, step=3)
    assert got, "no RedisDown notification; webhook got: %s" % posts(host)[-3:]
    post = firing(host, "RedisDown")[-1]
    assert post["path"] == "/alerts"
    assert post["authorization"] == "Bearer hook-secret-token"
    alert = next(a for a in post["body"]["alerts"] if a["labels"]["alertname"] == "RedisDown")
    assert alert["labels"]["instance"] == SVC
    assert alert["labels"]["severity"] == "critical"
    assert post["body"]["receiver"] == "bosun-critical"
