# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configuration of the monitor tier (roles/prometheus), built from the inventory.

- ``prometheus_config``: the inventory's groups, the hosts' addresses and the role's settings
  -> the dict written as ``prometheus.yml``: one scrape job per exporter on the hosts of its
  groups, Prometheus and Alertmanager themselves, blackbox probes of URLs; every host target
  labelled ``instance`` = inventory hostname and ``tier`` = its group.
- ``alertmanager_config``: the receivers and routing settings -> the dict written as
  Alertmanager's ``alertmanager.yml``: one receiver per severity gathering the receivers
  that asked for it, routes by severity, grouping and inhibition.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re
from collections.abc import Mapping

# Exporter jobs: name -> the groups whose hosts run it and its port. The ``node`` job's
# ``all`` is every host of the inventory.
DEFAULT_EXPORTERS = {
    "node": dict(groups=["all"], port=9100),
    "postgres": dict(groups=["db"], port=9187),
    "redis": dict(groups=["cache"], port=9121),
    "nginx": dict(groups=["lb"], port=9113),
    "elasticsearch": dict(groups=["search"], port=9114),
}
EXPORTER_KEYS = ("groups", "port", "enabled", "scheme", "metrics_path", "scrape_interval")

# The tier label of a host reached through a job of the ``all`` group: its first group
# in this order, else ``other``.
DEFAULT_TIERS = ("lb", "app", "db", "cache", "search", "monitor")

# The health URL of each app host, probed through the blackbox exporter.
DEFAULT_APP_HEALTH = dict(group="app", port=8000, path="/health", scheme="http")

SEVERITIES = ("critical", "warning")
RECEIVER_TYPES = ("webhook", "slack", "email")
NAME_REGEX = re.compile(r"^[A-Za-z0-9_.-]+$")
DURATION_REGEX = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class PrometheusConfigError(ValueError):
    """A setting has the wrong shape; the message names it."""


def _list(value, what):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise PrometheusConfigError("%s must be a list, got %s" % (what, type(value).__name__))
    return list(value)


def _duration(value, what):
    if not isinstance(value, str) or not DURATION_REGEX.match(value):
        raise PrometheusConfigError("%s must be a Prometheus duration such as 15s or 5m, got %r" % (what, value))
    return value


def _port(value, what):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise PrometheusConfigError("%s must be a port number, got %r" % (what, value)) from None
    if not 0 < value < 65536:
        raise PrometheusConfigError("%s must be a port number, got %r" % (what, value))
    return value


def inventory_address(name, hostvars):
    """``(variable, value)`` of the first of ``bosun_private_address`` and ``ansible_host`` the
    host ``name`` sets (blank values skipped), else ``(None, None)``. The one rule for the
    address a host is reached at on the private network (scrape targets, firewall sources)."""
    variables = hostvars.get(name) if isinstance(hostvars, Mapping) else None
    if isinstance(variables, Mapping):
        for key in ("bosun_private_address", "ansible_host"):
            value = variables.get(key)
            if value is not None and str(value).strip():
                return key, str(value).strip()
    return None, None


def host_address(name, hostvars):
    """The address Prometheus reaches ``name`` at: ``bosun_private_address``, else
    ``ansible_host``, else the inventory hostname."""
    return inventory_address(name, hostvars)[1] or str(name)


def _join(address, port):
    """``host:port``, with brackets around an IPv6 address."""
    if ":" in address and not address.startswith("["):
        address = "[%s]" % address
    return "%s:%d" % (address, port)


def exporter_jobs(overrides=None):
    """The exporter jobs: the built-in ones merged key by key with ``overrides`` (a job set to
    ``None`` or with ``enabled: false`` is dropped; a new name adds a job)."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise PrometheusConfigError("exporters must be a dict of job name -> settings")
    jobs = {}
    for name in list(DEFAULT_EXPORTERS) + [n for n in overrides if n not in DEFAULT_EXPORTERS]:
        if not NAME_REGEX.match(str(name)):
            raise PrometheusConfigError("exporter job name %r: use letters, digits, '_', '.' or '-'" % name)
        job = copy.deepcopy(DEFAULT_EXPORTERS.get(name, {}))
        override = overrides.get(name, {})
        if override is None:
            continue
        if not isinstance(override, Mapping):
            raise PrometheusConfigError("exporter job %s: settings must be a dict" % name)
        unknown = sorted(set(override) - set(EXPORTER_KEYS))
        if unknown:
            raise PrometheusConfigError("exporter job %s: unknown setting(s) %s" % (name, ", ".join(unknown)))
        job.update(override)
        if not job.get("enabled", True):
            continue
        if "groups" not in job or "port" not in job:
            raise PrometheusConfigError("exporter job %s: give its groups and port" % name)
        job["groups"] = [str(g) for g in _list(job["groups"], "exporter job %s: groups" % name)]
        job["port"] = _port(job["port"], "exporter job %s: port" % name)
        jobs[name] = job
    return jobs


def host_tier(name, groups, tiers=DEFAULT_TIERS):
    """The first of ``tiers`` whose group holds ``name``, else ``other``."""
    for tier in tiers:
        if name in (groups.get(tier) or []):
            return tier
    return "other"


def group_targets(group_list, groups, hostvars, port, tiers=DEFAULT_TIERS):
    """One static config per host of ``group_list`` (each host once, first group wins), with
    labels ``instance`` (inventory hostname) and ``tier``."""
    seen = set()
    out = []
    for group in group_list:
        for host in groups.get(group) or []:
            if host in seen:
                continue
            seen.add(host)
            tier = host_tier(host, groups, tiers) if group == "all" else group
            out.append(
                dict(
                    targets=[_join(host_address(host, hostvars), port)],
                    labels=dict(instance=str(host), tier=tier),
                )
            )
    return out


def blackbox_urls(settings, groups, hostvars):
    """The URLs to probe: ``blackbox_urls`` as given, then each app host's health URL."""
    urls = [str(u) for u in _list(settings.get("blackbox_urls"), "blackbox_urls")]
    app = settings.get("blackbox_app_health", DEFAULT_APP_HEALTH) or {}
    if not isinstance(app, Mapping):
        raise PrometheusConfigError("blackbox_app_health must be a dict")
    if app.get("enabled", True) and app.get("group"):
        port = _port(app.get("port", 8000), "blackbox_app_health: port")
        path = str(app.get("path", "/health"))
        if not path.startswith("/"):
            path = "/" + path
        scheme = str(app.get("scheme", "http"))
        for host in groups.get(app["group"]) or []:
            url = "%s://%s%s" % (scheme, _join(host_address(host, hostvars), port), path)
            if url not in urls:
                urls.append(url)
    return urls


def prometheus_config(groups, hostvars, settings):
    """The dict of ``prometheus.yml``.

    ``groups``: the inventory's groups (Ansible's ``groups``); ``hostvars``: host -> variables
    (``bosun_private_address``, ``ansible_host`` are read); ``settings``: ``monitor_group``,
    ``port``, ``alertmanager_port``, ``blackbox_address``, ``scrape_interval``,
    ``evaluation_interval``, ``scrape_timeout``, ``external_labels``, ``exporters``, ``tiers``,
    ``blackbox_module``, ``blackbox_urls``, ``blackbox_app_health``, ``rule_dir``,
    ``extra_scrape_configs``.
    """
    if not isinstance(groups, Mapping):
        raise PrometheusConfigError("give the inventory's groups (a dict)")
    if not isinstance(settings, Mapping):
        raise PrometheusConfigError("settings must be a dict")
    hostvars = hostvars if isinstance(hostvars, Mapping) else {}
    tiers = tuple(_list(settings.get("tiers", list(DEFAULT_TIERS)), "tiers"))
    monitor = [str(settings.get("monitor_group") or "monitor")]
    port = _port(settings.get("port", 9090), "port")
    am_port = _port(settings.get("alertmanager_port", 9093), "alertmanager_port")

    config = {
        "global": dict(
            scrape_interval=_duration(settings.get("scrape_interval", "30s"), "scrape_interval"),
            evaluation_interval=_duration(settings.get("evaluation_interval", "30s"), "evaluation_interval"),
        )
    }
    if settings.get("scrape_timeout"):
        # Unset, Prometheus takes 10s, or the scrape interval when that is shorter.
        config["global"]["scrape_timeout"] = _duration(settings["scrape_timeout"], "scrape_timeout")
    labels = settings.get("external_labels") or {}
    if not isinstance(labels, Mapping):
        raise PrometheusConfigError("external_labels must be a dict")
    if labels:
        config["global"]["external_labels"] = {str(k): str(v) for k, v in labels.items()}

    alertmanagers = [_join(host_address(h, hostvars), am_port) for g in monitor for h in (groups.get(g) or [])]
    config["alerting"] = dict(alertmanagers=[dict(static_configs=[dict(targets=alertmanagers)])])
    rule_dir = str(settings.get("rule_dir", "/etc/prometheus/rules")).rstrip("/")
    config["rule_files"] = ["%s/*.yml" % rule_dir]

    scrapes = []
    for name, job in exporter_jobs(settings.get("exporters")).items():
        targets = group_targets(job["groups"], groups, hostvars, job["port"], tiers)
        if not targets:
            continue
        scrape = dict(job_name=name, static_configs=targets)
        for key in ("scheme", "metrics_path"):
            if job.get(key):
                scrape[key] = str(job[key])
        if job.get("scrape_interval"):
            scrape["scrape_interval"] = _duration(job["scrape_interval"], "exporter job %s: scrape_interval" % name)
        scrapes.append(scrape)
    for name, self_port in (("prometheus", port), ("alertmanager", am_port)):
        targets = group_targets(monitor, groups, hostvars, self_port, tiers)
        if targets:
            scrapes.append(dict(job_name=name, static_configs=targets))

    urls = blackbox_urls(settings, groups, hostvars)
    blackbox = str(settings.get("blackbox_address", "127.0.0.1:9115"))
    if urls and blackbox:
        scrapes.append(
            dict(
                job_name="blackbox_http",
                metrics_path="/probe",
                params=dict(module=[str(settings.get("blackbox_module", "http_2xx"))]),
                static_configs=[dict(targets=urls, labels=dict(tier="probe"))],
                relabel_configs=[
                    dict(source_labels=["__address__"], target_label="__param_target"),
                    dict(source_labels=["__param_target"], target_label="instance"),
                    dict(target_label="__address__", replacement=blackbox),
                ],
            )
        )
    extra = _list(settings.get("extra_scrape_configs"), "extra_scrape_configs")
    names = {s["job_name"] for s in scrapes}
    for scrape in extra:
        if not isinstance(scrape, Mapping) or not scrape.get("job_name"):
            raise PrometheusConfigError("extra_scrape_configs: each entry must be a dict with a job_name")
        if scrape["job_name"] in names:
            raise PrometheusConfigError("extra_scrape_configs: job %s already exists" % scrape["job_name"])
        names.add(scrape["job_name"])
        scrapes.append(copy.deepcopy(dict(scrape)))
    config["scrape_configs"] = scrapes
    return config


def _receiver_configs(receiver, index):
    """Alertmanager's ``<type>_configs`` entry for one receiver of the role's list."""
    what = "receiver %s" % (receiver.get("name") or "#%d" % index)
    rtype = receiver.get("type")
    if rtype not in RECEIVER_TYPES:
        raise PrometheusConfigError("%s: type must be one of %s, got %r" % (what, ", ".join(RECEIVER_TYPES), rtype))
    resolved = bool(receiver.get("send_resolved", True))
    if rtype == "webhook":
        if not receiver.get("url"):
            raise PrometheusConfigError("%s: a webhook needs its url" % what)
        entry = dict(url=str(receiver["url"]), send_resolved=resolved)
        if receiver.get("bearer_token"):
            # Alertmanager's API shows a webhook's URL but masks these credentials.
            entry["http_config"] = dict(authorization=dict(type="Bearer", credentials=str(receiver["bearer_token"])))
        return "webhook_configs", entry
    if rtype == "slack":
        if not receiver.get("url"):
            raise PrometheusConfigError("%s: a Slack-compatible webhook needs its url" % what)
        entry = dict(api_url=str(receiver["url"]), send_resolved=resolved)
        if receiver.get("channel"):
            entry["channel"] = str(receiver["channel"])
        entry["title"] = "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})"
        entry["text"] = '{{ range .Alerts }}{{ .Labels.instance }}: {{ .Annotations.summary }}{{ "\\n" }}{{ end }}'
        return "slack_configs", entry
    for key in ("to", "from", "smarthost"):
        if not receiver.get(key):
            raise PrometheusConfigError("%s: an email receiver needs %s" % (what, key))
    entry = dict(to=str(receiver["to"]), send_resolved=resolved, smarthost=str(receiver["smarthost"]))
    entry["from"] = str(receiver["from"])
    if receiver.get("username"):
        entry["auth_username"] = str(receiver["username"])
    if receiver.get("password"):
        entry["auth_password"] = str(receiver["password"])
    entry["require_tls"] = bool(receiver.get("require_tls", True))
    return "email_configs", entry


def alertmanager_config(receivers, settings=None):
    """The dict of ``alertmanager.yml``.

    ``receivers``: a list of ``name``, ``type`` (webhook, slack, email), ``severities`` (default
    both), and per type ``url`` / ``channel`` / ``to``, ``from``, ``smarthost``, ``username``,
    ``password``, ``require_tls``; ``bearer_token`` (webhook); ``send_resolved``. ``settings``: ``group_by``,
    ``group_wait``, ``group_interval``, ``repeat_interval``, ``host_down_alerts`` (the alert
    names that mute the other alerts of their instance).
    """
    settings = settings or {}
    if not isinstance(settings, Mapping):
        raise PrometheusConfigError("settings must be a dict")
    by_severity = {s: {} for s in SEVERITIES}
    names = set()
    for index, receiver in enumerate(_list(receivers, "receivers")):
        if not isinstance(receiver, Mapping):
            raise PrometheusConfigError("receiver #%d must be a dict" % index)
        name = receiver.get("name")
        if not name or not NAME_REGEX.match(str(name)):
            raise PrometheusConfigError("receiver #%d: give a name of letters, digits, '_', '.' or '-'" % index)
        if name in names:
            raise PrometheusConfigError("receiver %s is listed twice" % name)
        names.add(name)
        key, entry = _receiver_configs(receiver, index)
        severities = _list(receiver.get("severities", list(SEVERITIES)), "receiver %s: severities" % name)
        for severity in severities:
            if severity not in SEVERITIES:
                raise PrometheusConfigError(
                    "receiver %s: severities must be among %s, got %r" % (name, ", ".join(SEVERITIES), severity)
                )
            by_severity[severity].setdefault(key, []).append(entry)

    group_by = [str(g) for g in _list(settings.get("group_by", ["alertname", "instance"]), "group_by")]
    route = dict(
        receiver="bosun-none",
        group_by=group_by,
        group_wait=_duration(settings.get("group_wait", "30s"), "group_wait"),
        group_interval=_duration(settings.get("group_interval", "5m"), "group_interval"),
        repeat_interval=_duration(settings.get("repeat_interval", "4h"), "repeat_interval"),
        routes=[dict(receiver="bosun-%s" % severity, matchers=['severity="%s"' % severity]) for severity in SEVERITIES],
    )
    if by_severity["critical"]:
        # A warning goes to the warning receivers; anything without a known severity is
        # not dropped silently: it goes where the critical alerts go.
        route["receiver"] = "bosun-critical"
    out_receivers = [dict(name="bosun-none")]
    for severity in SEVERITIES:
        receiver = dict(name="bosun-%s" % severity)
        receiver.update(by_severity[severity])
        out_receivers.append(receiver)

    down = [str(a) for a in _list(settings.get("host_down_alerts", ["HostDown"]), "host_down_alerts")]
    inhibit = []
    if down:
        alternatives = "|".join(re.escape(a) for a in down)
        inhibit.append(
            dict(
                source_matchers=['alertname=~"%s"' % alternatives],
                target_matchers=['alertname!~"%s"' % alternatives],
                equal=["instance"],
            )
        )
    inhibit.append(
        dict(
            source_matchers=['severity="critical"'],
            target_matchers=['severity="warning"'],
            equal=["alertname", "instance"],
        )
    )
    return dict(route=route, receivers=out_receivers, inhibit_rules=inhibit)
