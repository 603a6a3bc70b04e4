# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of the health report for one host (roles/health, playbooks/health.yml).

A host gets the built-in checks of each of its groups that has some (lb, app, db, cache,
search), in the order of its groups, then one disk check per path, memory and load, then the
extra checks. Each built-in check is merged (recursively, as Ansible's ``combine``) with its
override; the checks that need root (``nginx -t`` reads the TLS key) are returned apart.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

# Check types that need root: nginx -t loads the TLS key, readable by root only.
ROOT_TYPES = ("nginx_config",)

# The groups that have built-in checks, each with the names of its checks (their override
# is the setting of that name).
GROUP_CHECKS = (
    ("lb", ("nginx", "lb_http", "tls")),
    ("app", ("app", "app_unit")),
    ("db", ("postgres",)),
    ("cache", ("redis",)),
    ("search", ("elasticsearch",)),
)

OVERRIDES = ("nginx", "lb_http", "tls", "app", "postgres", "redis", "elasticsearch", "disk", "memory", "load")


class HealthPlanError(ValueError):
    """A setting has the wrong shape; the message names it."""


def merge(base, override):
    """``base`` with ``override`` merged in recursively (dicts merged, anything else replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_checks(server_name, tls_ca_cert="", app_unit="", elasticsearch=None):
    """The built-in checks by name, before their overrides."""
    return dict(
        nginx=dict(name="nginx config", type="nginx_config", labels=dict(tier="lb")),
        # http://<name>/ on 127.0.0.1, then nginx's redirect to https://<name>/ on 127.0.0.1 too
        lb_http=dict(
            name="lb http",
            type="http",
            labels=dict(tier="lb"),
            http=dict(url="http://%s/" % server_name, connect_address="127.0.0.1", ca_cert_data=tls_ca_cert),
        ),
        tls=dict(
            name="TLS cert",
            type="tls_cert",
            labels=dict(tier="lb"),
            tls_cert=dict(host="127.0.0.1", port=443, server_name=server_name, ca_cert_data=tls_ca_cert),
        ),
        app=dict(
            name="app health", type="http", labels=dict(tier="app"), http=dict(url="http://127.0.0.1:8000/health")
        ),
        app_unit=dict(name="app unit", type="systemd", labels=dict(tier="app"), systemd=dict(unit=app_unit)),
        postgres=dict(name="PostgreSQL", type="postgres", labels=dict(tier="db")),
        redis=dict(name="Redis", type="redis", labels=dict(tier="cache")),
        elasticsearch=dict(
            name="Elasticsearch",
            type="elasticsearch",
            labels=dict(tier="search"),
            elasticsearch=dict(elasticsearch or {}),
        ),
    )


def _mapping(settings, name):
    value = settings.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise HealthPlanError(
            "health: %s must be a mapping merged into its check, got %r" % (name, type(value).__name__)
        )
    return value


def _list(settings, name, default):
    value = settings.get(name)
    if value is None:
        return list(default)
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise HealthPlanError("health: %s must be a list, got %r" % (name, type(value).__name__))
    return list(value)


def host_checks(group_names, settings):
    """The checks of a host in the groups ``group_names``, as ``dict(root=[...], other=[...])``.

    ``settings``: ``server_name``, ``tls_ca_cert``, ``app_unit``, ``elasticsearch`` (the search
    tier's connection), ``disk_paths`` (default ``['/']``), ``extra_checks`` and the overrides
    named in OVERRIDES (each merged into its check).
    """
    settings = dict(settings or {})
    overrides = dict((name, _mapping(settings, name)) for name in OVERRIDES)
    app_unit = settings.get("app_unit") or ""
    elasticsearch = _mapping(settings, "elasticsearch_connection")
    base = base_checks(
        server_name=str(settings.get("server_name") or ""),
        tls_ca_cert=settings.get("tls_ca_cert") or "",
        app_unit=app_unit,
        elasticsearch=elasticsearch,
    )
    by_group = dict(GROUP_CHECKS)
    checks = []
    for group in group_names or []:
        for name in by_group.get(group, ()):
            if name == "app_unit":
                if app_unit:
                    checks.append(base[name])
                continue
            checks.append(merge(base[name], overrides[name]))
    for path in _list(settings, "disk_paths", ["/"]):
        checks.append(merge(dict(disk=dict(path=path), type="disk"), overrides["disk"]))
    checks.append(merge(dict(type="memory"), overrides["memory"]))
    checks.append(merge(dict(type="load"), overrides["load"]))
    extra = _list(settings, "extra_checks", [])
    for index, check in enumerate(extra):
        if not isinstance(check, dict):
            raise HealthPlanError("health: extra_checks[%d] must be a mapping (a health_check check)" % index)
    checks.extend(copy.deepcopy(extra))
    return dict(
        root=[c for c in checks if c.get("type") in ROOT_TYPES],
        other=[c for c in checks if c.get("type") not in ROOT_TYPES],
    )
