"""The health report's checks per host (module_utils/_health_plan.py, filter health_checks)."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import health_report as hr
from ansible_collections.bosun.platform.plugins.module_utils import _health_plan as hp


def names(plan):
    return [c.get("name", c["type"]) for c in plan["root"]], [c.get("name", c["type"]) for c in plan["other"]]


def test_a_host_in_no_tier_gets_disk_memory_and_load():
    plan = hp.host_checks([], {})
    assert plan["root"] == []
    assert plan["other"] == [{"type": "disk", "disk": {"path": "/"}}, {"type": "memory"}, {"type": "load"}]


def test_checks_follow_the_host_groups_and_root_checks_are_apart():
    plan = hp.host_checks(["app", "cache", "db", "lb", "monitor", "web"], {"server_name": "shop.example.com"})
    root, other = names(plan)
    assert root == ["nginx config"]
    assert other == ["app health", "Redis", "PostgreSQL", "lb http", "TLS cert", "disk", "memory", "load"]


def test_lb_checks_use_the_public_name_on_loopback_and_the_ca():
    plan = hp.host_checks(["lb"], {"server_name": "shop.example.com", "tls_ca_cert": "PEM"})
    http, tls = plan["other"][:2]
    assert http["http"] == {"url": "http://shop.example.com/", "connect_address": "127.0.0.1", "ca_cert_data": "PEM"}
    assert tls["tls_cert"] == {
        "host": "127.0.0.1",
        "port": 443,
        "server_name": "shop.example.com",
        "ca_cert_data": "PEM",
    }


def test_overrides_merge_recursively_and_do_not_touch_the_base():
    settings = {
        "server_name": "a.test",
        "tls": {"tls_cert": {"port": 8443}},
        "redis": {"redis": {"login_password": "x"}, "thresholds": {"hit_rate": {"warn": 0}}},
    }
    plan = hp.host_checks(["lb", "cache"], settings)
    tls = next(c for c in plan["other"] if c["type"] == "tls_cert")
    assert tls["tls_cert"] == {"host": "127.0.0.1", "port": 8443, "server_name": "a.test", "ca_cert_data": ""}
    redis = next(c for c in plan["other"] if c["type"] == "redis")
    assert redis == {
        "name": "Redis",
        "type": "redis",
        "labels": {"tier": "cache"},
        "redis": {"login_password": "x"},
        "thresholds": {"hit_rate": {"warn": 0}},
    }
    settings["redis"]["redis"]["login_password"] = "changed"
    assert redis["redis"]["login_password"] == "x"


def test_app_unit_only_when_named():
    assert names(hp.host_checks(["app"], {}))[1][:1] == ["app health"]
    plan = hp.host_checks(["app"], {"app_unit": "app.service", "app": {"http": {"url": "http://x/health"}}})
    assert plan["other"][0]["http"]["url"] == "http://x/health"
    assert plan["other"][1] == {
        "name": "app unit",
        "type": "systemd",
        "labels": {"tier": "app"},
        "systemd": {"unit": "app.service"},
    }


def test_search_takes_the_connection_then_its_override():
    plan = hp.host_checks(
        ["search"],
        {
            "elasticsearch_connection": {"url": "https://es:9200", "login_user": "u"},
            "elasticsearch": {"elasticsearch": {"login_user": "v"}},
        },
    )
    assert plan["other"][0]["elasticsearch"] == {"url": "https://es:9200", "login_user": "v"}


def test_disk_paths_host_overrides_and_extra_checks():
    extra = {"name": "ssh", "type": "tcp", "tcp": {"port": 22}}
    plan = hp.host_checks(
        [],
        {
            "disk_paths": ["/", "/var/lib/postgresql"],
            "disk": {"warn": 90, "disk": {"inodes": True}},
            "memory": {"crit": 99},
            "load": None,
            "extra_checks": [extra],
        },
    )
    assert plan["other"] == [
        {"type": "disk", "disk": {"path": "/", "inodes": True}, "warn": 90},
        {"type": "disk", "disk": {"path": "/var/lib/postgresql", "inodes": True}, "warn": 90},
        {"type": "memory", "crit": 99},
        {"type": "load"},
        extra,
    ]


def test_an_extra_root_check_runs_with_root():
    plan = hp.host_checks([], {"extra_checks": [{"type": "nginx_config", "name": "other nginx"}]})
    assert names(plan)[0] == ["other nginx"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"redis": ["x"]}, "redis must be a mapping"),
        ({"disk_paths": "/"}, "disk_paths must be a list"),
        ({"extra_checks": ["tcp"]}, "extra_checks[0] must be a mapping"),
    ],
)
def test_wrong_shapes_are_named(settings, message):
    with pytest.raises(hp.HealthPlanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        hp.host_checks([], settings)
    with pytest.raises(AnsibleFilterError, match="health: "):
        hr.health_checks([], settings)


def test_filter_input_checks():
    with pytest.raises(AnsibleFilterError, match="group_names"):
        hr.health_checks("lb", {})
    with pytest.raises(AnsibleFilterError, match="settings must be a mapping"):
        hr.health_checks(["lb"], "x")
    assert "health_checks" in hr.FilterModule().filters()
