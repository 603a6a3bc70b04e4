# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check types health_check knows. A new type is one file and one line here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks import (
    command_check,
    disk_check,
    elasticsearch_check,
    http_check,
    load_check,
    memory_check,
    nginx_config_check,
    postgres_check,
    redis_check,
    systemd_check,
    tcp_check,
    tls_cert_check,
)

CHECK_TYPES = dict(
    (kind.TYPE, kind)
    for kind in (
        http_check,
        tcp_check,
        tls_cert_check,
        postgres_check,
        redis_check,
        elasticsearch_check,
        disk_check,
        memory_check,
        load_check,
        systemd_check,
        command_check,
        nginx_config_check,
    )
)


def get(type_name):
    return CHECK_TYPES[type_name]


def primary_metric(kind):
    """Name of the metric a check's warn/crit apply to (the first of METRICS)."""
    return next(iter(kind.METRICS))


def tunable_metrics(kind):
    """Metrics with numeric thresholds (those that warn/crit/thresholds may set)."""
    return [name for name, threshold in kind.METRICS.items() if threshold is not None]
