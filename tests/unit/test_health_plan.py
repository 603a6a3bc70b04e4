"""health_check: from parameters to runnable checks (validation, defaults, secrets)."""

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.bosun.platform.plugins.module_utils._checks import plan, registry, spec


def params(checks, **top):
    """Module parameters as AnsibleModule would hand them over (defaults filled in)."""
    raw = dict(checks=checks, **top)
    result = ArgumentSpecValidator(spec.argument_spec()).validate(raw)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def build(checks, **top):
    return plan.build(params(checks, **top))


def test_every_registered_type_has_the_interface():
    for name, kind in registry.CHECK_TYPES.items():
        assert kind.TYPE == name
        assert callable(kind.run)
        assert isinstance(kind.OPTIONS, dict)
        assert kind.METRICS, name
    assert sorted(registry.CHECK_TYPES) == spec.check_options()["type"]["choices"]


def test_default_names_and_defaults_filled():
    plans, warnings = build([{"type": "disk"}, {"type": "memory"}, {"type": "tcp", "tcp": {"port": 5432}}])
    assert [p.name for p in plans] == ["disk /", "memory", "tcp 127.0.0.1:5432"]
    assert plans[0].options == {"path": "/"}
    assert plans[0].timeout == 5.0
    assert plans[0].thresholds["used"].warn == 70 and plans[0].thresholds["used"].crit == 85
    assert warnings == []


def test_warn_crit_apply_to_primary_metric_and_thresholds_to_others():
    (p,), _warnings = build([{"type": "disk", "warn": 80, "crit": 95, "thresholds": {"inodes": {"crit": 99}}}])
    assert (p.thresholds["used"].warn, p.thresholds["used"].crit) == (80, 95)
    assert (p.thresholds["inodes"].warn, p.thresholds["inodes"].crit) == (70, 99)


def test_problems_are_reported_together_naming_each_check():
    with pytest.raises(plan.PlanError) as err:
        build(
            [
                {"name": "api", "type": "http"},  # no http options
                {"name": "db", "type": "postgres", "redis": {"login_port": 1}},
                {"name": "dup", "type": "memory"},
                {"name": "dup", "type": "load"},
                {"name": "t", "type": "disk", "thresholds": {"latency": {"warn": 1}}},
                {"name": "w", "type": "disk", "warn": 90, "crit": 80},
                {"name": "cert", "type": "tls_cert", "tls_cert": {"host": "a", "path": "/x.pem"}},
                {"name": "unit", "type": "systemd", "systemd": {"unit": "x"}, "warn": 1},
                {"name": "url", "type": "http", "http": {"url": "file:///etc/passwd"}},
                {"name": "rx", "type": "http", "http": {"url": "http://x/", "body_regex": "("}},
            ]
        )
    msg = str(err.value)
    assert "checks[0] (api): http checks need their options under the key http" in msg
    assert "checks[1] (db): type is postgres but options are given for redis" in msg
    assert "checks[3] (dup): the name 'dup' is already used by checks[2]" in msg
    assert "checks[4] (t): thresholds.latency: disk checks have used, inodes" in msg
    assert "checks[5] (w): used: warn (90.0) must not be above crit (80.0)" in msg
    assert "checks[6] (cert): tls_cert needs exactly one of" in msg
    assert "checks[7] (unit): warn/crit do not apply to systemd checks" in msg
    assert "checks[8] (url): http.url must start with http:// or https://" in msg
    assert "checks[9] (rx): http.body_regex is not a valid regular expression" in msg


def test_lower_is_worse_threshold_order_is_checked():
    with pytest.raises(plan.PlanError, match="lower values are worse"):
        build([{"type": "tls_cert", "tls_cert": {"path": "/x.pem"}, "warn": 5, "crit": 10}])


def test_nested_connection_options_fall_back_to_toplevel_then_family_default():
    checks = [{"type": "postgres", "postgres": {"login_port": 6543}}, {"name": "p2", "type": "postgres"}]
    plans, warnings = build(checks, login_host="db1", login_password="from-defaults", ssl_mode="verify-full")
    first, second = (p.options for p in plans)
    assert first["login_port"] == 6543 and second["login_port"] == 5432  # given, else family default
    assert first["login_host"] == second["login_host"] == "db1"  # top-level
    assert first["ssl_mode"] == "verify-full"
    assert first["login_user"] == "postgres" and first["dbname"] == "postgres"
    assert plans[0].secrets == ["from-defaults"]
    assert warnings == []


def test_shared_toplevel_options_are_not_guessed_between_families():
    checks = [
        {"name": "pg", "type": "postgres", "postgres": {"login_password": "pg-own"}},
        {"name": "cache", "type": "redis"},
    ]
    plans, warnings = build(checks, login_host="db1", login_password="meant-for-one", tls=True, ssl_mode="require")
    pg, cache = (p.options for p in plans)
    assert pg["login_host"] == "" and cache["login_host"] == "127.0.0.1"  # not applied: ambiguous
    assert cache["login_password"] is None and pg["login_password"] == "pg-own"
    assert cache["tls"] is True and pg["ssl_mode"] == "require"  # family-specific ones still apply
    assert len(warnings) == 1
    assert "login_host, login_password" in warnings[0]
    assert "meant-for-one" not in warnings[0]


def test_postgres_connect_timeout_stays_an_int():
    (p,), _warnings = build([{"type": "postgres"}], connect_timeout=3.0)
    assert p.options["connect_timeout"] == 3 and isinstance(p.options["connect_timeout"], int)


def test_secrets_cover_url_credentials_and_sensitive_headers():
    (p,), _warnings = build(
        [
            {
                "type": "http",
                "http": {
                    "url": "https://ops:url-pass-123@example.org/health",
                    "headers": {"Authorization": "Bearer tok-abcdef", "Accept": "application/json"},
                },
            }
        ]
    )
    assert "url-pass-123" in p.secrets
    assert "Bearer tok-abcdef" in p.secrets and "tok-abcdef" in p.secrets
    assert "application/json" not in p.secrets
    assert "url-pass-123" not in p.name


def test_empty_and_bad_module_options():
    with pytest.raises(plan.PlanError) as err:
        plan.build(params([], concurrency=0, overall_timeout=0))
    assert "checks is empty" in str(err.value)
    assert "concurrency must be at least 1" in str(err.value)
    assert "overall_timeout must be more than 0" in str(err.value)
