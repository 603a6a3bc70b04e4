"""The monitor tier's configuration built from the inventory (filters
bosun.platform.prometheus_config and bosun.platform.prometheus_alertmanager_config)."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import prometheus_config as flt
from ansible_collections.bosun.platform.plugins.module_utils import _prometheus as mod

GROUPS = {
    "all": ["lb1", "app1", "app2", "db1", "cache1", "mon1"],
    "lb": ["lb1"],
    "app": ["app1", "app2"],
    "db": ["db1"],
    "cache": ["cache1"],
    "monitor": ["mon1"],
    "ungrouped": [],
}
HOSTVARS = {
    "lb1": {"bosun_private_address": "10.0.0.2", "ansible_host": "203.0.113.2"},
    "app1": {"bosun_private_address": "10.0.0.3"},
    "app2": {"ansible_host": "10.0.0.4"},
    "db1": {"bosun_private_address": "10.0.0.5"},
    "cache1": {"bosun_private_address": "10.0.0.6"},
    "mon1": {"bosun_private_address": "10.0.0.9"},
}


def _jobs(config):
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _targets(job):
    return [(c["targets"][0], c["labels"]["instance"], c["labels"]["tier"]) for c in job["static_configs"]]


def test_address_prefers_the_private_address_then_ansible_host_then_the_name():
    assert mod.host_address("lb1", HOSTVARS) == "10.0.0.2"
    assert mod.host_address("app2", HOSTVARS) == "10.0.0.4"
    assert mod.host_address("other", HOSTVARS) == "other"
    assert mod.host_address("x", {"x": {"bosun_private_address": "", "ansible_host": ""}}) == "x"


def test_default_jobs_follow_the_groups():
    jobs = _jobs(flt.prometheus_config_filter(GROUPS, HOSTVARS, {}))
    # No search host: no elasticsearch job.
    assert list(jobs) == ["node", "postgres", "redis", "nginx", "prometheus", "alertmanager", "blackbox_http"]
    assert _targets(jobs["node"]) == [
        ("10.0.0.2:9100", "lb1", "lb"),
        ("10.0.0.3:9100", "app1", "app"),
        ("10.0.0.4:9100", "app2", "app"),
        ("10.0.0.5:9100", "db1", "db"),
        ("10.0.0.6:9100", "cache1", "cache"),
        ("10.0.0.9:9100", "mon1", "monitor"),
    ]
    assert _targets(jobs["postgres"]) == [("10.0.0.5:9187", "db1", "db")]
    assert _targets(jobs["redis"]) == [("10.0.0.6:9121", "cache1", "cache")]
    assert _targets(jobs["nginx"]) == [("10.0.0.2:9113", "lb1", "lb")]
    assert _targets(jobs["prometheus"]) == [("10.0.0.9:9090", "mon1", "monitor")]
    assert _targets(jobs["alertmanager"]) == [("10.0.0.9:9093", "mon1", "monitor")]


def test_alerting_and_rules():
    config = flt.prometheus_config_filter(GROUPS, HOSTVARS, {"alertmanager_port": 19093, "rule_dir": "/r/"})
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["10.0.0.9:19093"]}]}]}
    assert config["rule_files"] == ["/r/*.yml"]


def test_global_settings():
    config = flt.prometheus_config_filter(
        GROUPS, HOSTVARS, {"scrape_interval": "5s", "evaluation_interval": "5s", "external_labels": {"env": "prod"}}
    )
    assert config["global"] == {
        "scrape_interval": "5s",
        "evaluation_interval": "5s",
        "external_labels": {"env": "prod"},
    }
    config = flt.prometheus_config_filter(GROUPS, HOSTVARS, {"scrape_timeout": "4s"})
    assert config["global"]["scrape_timeout"] == "4s"


def test_exporters_are_overridden_key_by_key_dropped_and_added():
    settings = {
        "exporters": {
            "redis": {"port": 9122},
            "postgres": None,
            "nginx": {"enabled": False},
            "node": {"groups": ["db", "cache"]},
            "pgbouncer": {"groups": ["db"], "port": 9127, "metrics_path": "/m", "scrape_interval": "1m"},
        }
    }
    jobs = _jobs(flt.prometheus_config_filter(GROUPS, HOSTVARS, settings))
    assert "postgres" not in jobs and "nginx" not in jobs
    assert _targets(jobs["redis"]) == [("10.0.0.6:9121".replace("9121", "9122"), "cache1", "cache")]
    assert _targets(jobs["node"]) == [("10.0.0.5:9100", "db1", "db"), ("10.0.0.6:9100", "cache1", "cache")]
    assert jobs["pgbouncer"]["metrics_path"] == "/m"
    assert jobs["pgbouncer"]["scrape_interval"] == "1m"


def test_a_host_in_two_groups_of_a_job_is_scraped_once():
    groups = dict(GROUPS, db=["db1", "cache1"])
    jobs = _jobs(flt.prometheus_config_filter(groups, HOSTVARS, {"exporters": {"node": {"groups": ["db", "cache"]}}}))
    assert _targets(jobs["node"]) == [("10.0.0.5:9100", "db1", "db"), ("10.0.0.6:9100", "cache1", "db")]


def test_ipv6_addresses_are_bracketed():
    hostvars = dict(HOSTVARS, mon1={"bosun_private_address": "fd00::9"})
    jobs = _jobs(flt.prometheus_config_filter(GROUPS, hostvars, {}))
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["[fd00::9]:9090"]


def test_blackbox_probes_the_urls_and_each_app_health():
    settings = {
        "blackbox_urls": ["https://shop.example.com/"],
        "blackbox_app_health": {"group": "app", "port": 8000, "path": "health"},
        "blackbox_address": "127.0.0.1:9115",
    }
    job = _jobs(flt.prometheus_config_filter(GROUPS, HOSTVARS, settings))["blackbox_http"]
    assert job["static_configs"][0]["targets"] == [
        "https://shop.example.com/",
        "http://10.0.0.3:8000/health",
        "http://10.0.0.4:8000/health",
    ]
    assert job["params"] == {"module": ["http_2xx"]}
    assert job["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "127.0.0.1:9115"}
    assert {"source_labels": ["__param_target"], "target_label": "instance"} in job["relabel_configs"]


def test_no_url_no_probe_job():
    groups = dict(GROUPS, app=[])
    assert "blackbox_http" not in _jobs(flt.prometheus_config_filter(groups, HOSTVARS, {}))
    settings = {"blackbox_app_health": {"group": "app", "enabled": False}}
    assert "blackbox_http" not in _jobs(flt.prometheus_config_filter(GROUPS, HOSTVARS, settings))


def test_extra_scrape_configs_are_appended_and_names_stay_unique():
    extra = {"job_name": "custom", "static_configs": [{"targets": ["10.0.0.7:9999"]}]}
    config = flt.prometheus_config_filter(GROUPS, HOSTVARS, {"extra_scrape_configs": [extra]})
    assert config["scrape_configs"][-1] == extra
    with pytest.raises(AnsibleFilterError, match="job redis already exists"):
        flt.prometheus_config_filter(GROUPS, HOSTVARS, {"extra_scrape_configs": [{"job_name": "redis"}]})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"scrape_interval": "5 s"}, "scrape_interval must be a Prometheus duration"),
        ({"exporters": {"redis": {"port": 70000}}}, "exporter job redis: port"),
        ({"exporters": {"redis": {"prot": 1}}}, "unknown setting"),
        ({"exporters": {"x y": {"groups": ["a"], "port": 1}}}, "exporter job name"),
        ({"exporters": {"new": {"groups": ["a"]}}}, "give its groups and port"),
        ({"exporters": {"redis": {"groups": "cache"}}}, "groups must be a list"),
        ({"exporters": []}, "exporters must be a dict"),
        ({"blackbox_urls": "https://x/"}, "blackbox_urls must be a list"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(AnsibleFilterError, match=message):
        flt.prometheus_config_filter(GROUPS, HOSTVARS, settings)


WEBHOOK = {"name": "hook", "type": "webhook", "url": "http://10.0.0.9:9999/alert?token=s3cret"}
SLACK = {
    "name": "chat",
    "type": "slack",
    "url": "https://hooks.example.com/T/B/X",
    "channel": "#ops",
    "severities": ["critical"],
}
EMAIL = {
    "name": "mail",
    "type": "email",
    "to": "ops@example.com",
    "from": "alerts@example.com",
    "smarthost": "smtp.example.com:587",
    "username": "alerts",
    "password": "pa'ss $word",
    "severities": ["warning"],
}


def _receivers(config):
    return {r["name"]: r for r in config["receivers"]}


def test_receivers_are_gathered_per_severity():
    config = flt.prometheus_alertmanager_config_filter([WEBHOOK, SLACK, EMAIL])
    receivers = _receivers(config)
    assert list(receivers) == ["bosun-none", "bosun-critical", "bosun-warning"]
    assert receivers["bosun-none"] == {"name": "bosun-none"}
    critical = receivers["bosun-critical"]
    assert critical["webhook_configs"] == [{"url": WEBHOOK["url"], "send_resolved": True}]
    assert critical["slack_configs"][0]["api_url"] == SLACK["url"]
    assert critical["slack_configs"][0]["channel"] == "#ops"
    assert "email_configs" not in critical
    warning = receivers["bosun-warning"]
    assert warning["webhook_configs"] == critical["webhook_configs"]
    assert "slack_configs" not in warning
    assert warning["email_configs"] == [
        {
            "to": "ops@example.com",
            "from": "alerts@example.com",
            "smarthost": "smtp.example.com:587",
            "auth_username": "alerts",
            "auth_password": "pa'ss $word",
            "require_tls": True,
            "send_resolved": True,
        }
    ]


def test_a_webhook_token_goes_in_the_authorization_header():
    receiver = dict(WEBHOOK, url="http://10.0.0.9:9999/alert", bearer_token="t0ken")
    hooks = _receivers(flt.prometheus_alertmanager_config_filter([receiver]))["bosun-critical"]["webhook_configs"]
    assert hooks == [
        {
            "url": "http://10.0.0.9:9999/alert",
            "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials": "t0ken"}},
        }
    ]


def test_routes_by_severity_and_grouping():
    config = flt.prometheus_alertmanager_config_filter([WEBHOOK], {"group_wait": "5s", "group_by": ["alertname"]})
    route = config["route"]
    assert route["receiver"] == "bosun-critical"
    assert route["group_by"] == ["alertname"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("5s", "5m", "4h")
    assert route["routes"] == [
        {"receiver": "bosun-critical", "matchers": ['severity="critical"']},
        {"receiver": "bosun-warning", "matchers": ['severity="warning"']},
    ]


def test_without_receivers_nothing_is_sent():
    config = flt.prometheus_alertmanager_config_filter([])
    assert config["route"]["receiver"] == "bosun-none"
    assert all(set(r) == {"name"} for r in config["receivers"])


def test_inhibition():
    rules = flt.prometheus_alertmanager_config_filter([], {"host_down_alerts": ["HostDown", "NodeExporterDown"]})[
        "inhibit_rules"
    ]
    assert rules == [
        {
            "source_matchers": ['alertname=~"HostDown|NodeExporterDown"'],
            "target_matchers": ['alertname!~"HostDown|NodeExporterDown"'],
            "equal": ["instance"],
        },
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "instance"],
        },
    ]
    assert len(flt.prometheus_alertmanager_config_filter([], {"host_down_alerts": []})["inhibit_rules"]) == 1


@pytest.mark.parametrize(
    "receivers, message",
    [
        ([{"type": "webhook", "url": "http://x/"}], "receiver #0: give a name"),
        ([{"name": "a", "type": "pager"}], "type must be one of"),
        ([{"name": "a", "type": "webhook"}], "a webhook needs its url"),
        ([{"name": "a", "type": "slack"}], "Slack-compatible webhook needs its url"),
        ([{"name": "a", "type": "email", "to": "x@y"}], "needs from"),
        ([WEBHOOK, WEBHOOK], "listed twice"),
        ([dict(WEBHOOK, severities=["info"])], "severities must be among"),
        ("hook", "receivers must be a list"),
    ],
)
def test_bad_receivers_are_named_without_their_secrets(receivers, message):
    with pytest.raises(AnsibleFilterError, match=message) as info:
        flt.prometheus_alertmanager_config_filter(receivers)
    assert "s3cret" not in str(info.value)
