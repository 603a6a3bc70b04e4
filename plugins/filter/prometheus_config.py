# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the monitor tier (roles/prometheus).

- ``prometheus_config``: the inventory's groups, the hosts' variables and the role's settings
  -> the dict of ``prometheus.yml`` (the logic is in module_utils/_prometheus.py).
- ``prometheus_alertmanager_config``: the receivers and the routing settings -> the dict of
  Alertmanager's ``alertmanager.yml``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._prometheus import (
    PrometheusConfigError,
    alertmanager_config,
    prometheus_config,
)


def prometheus_config_filter(groups, hostvars, settings):
    """The dict of ``prometheus.yml`` for these inventory groups and settings."""
    try:
        return prometheus_config(groups, hostvars, settings)
    except PrometheusConfigError as exc:
        raise AnsibleFilterError("prometheus_config: %s" % exc) from None


def prometheus_alertmanager_config_filter(receivers, settings=None):
    """The dict of ``alertmanager.yml`` for these receivers and routing settings."""
    try:
        return alertmanager_config(receivers, settings)
    except PrometheusConfigError as exc:
        raise AnsibleFilterError("prometheus_alertmanager_config: %s" % exc) from None


class FilterModule:
    def filters(self):
        return dict(
            prometheus_config=prometheus_config_filter,
            prometheus_alertmanager_config=prometheus_alertmanager_config_filter,
        )
