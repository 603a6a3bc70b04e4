# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the ``exporters`` role (roles/exporters) and of the inventories that open its ports.

- ``exporters_select``: the exporters a host runs, from its groups.
- ``exporters_firewall_rules``: ``common_firewall_rules`` entries opening them to the monitor hosts.
- ``exporters_redis_acl_user``: the ``redis_acl_users`` entry of the Redis exporter's user.
- ``exporters_env_file``: the content of an exporter's /etc/default file.
- ``exporters_address``: the first candidate that is an IP address.
- ``exporters_listen``: ``address:port`` for a listen flag.
- ``exporters_postgres_dsn``: the PostgreSQL exporter's connection string.

The logic is in module_utils/_exporters.py, unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _exporters


def _wrap(name, func):
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except _exporters.ExportersError as exc:
            raise AnsibleFilterError("%s: %s" % (name, exc)) from None

    wrapper.__name__ = name
    wrapper.__doc__ = func.__doc__
    return wrapper


class FilterModule:
    def filters(self):
        return {
            "exporters_select": _wrap("exporters_select", _exporters.select),
            "exporters_firewall_rules": _wrap("exporters_firewall_rules", _exporters.firewall_rules),
            "exporters_redis_acl_user": _wrap("exporters_redis_acl_user", _exporters.redis_acl_user),
            "exporters_env_file": _wrap("exporters_env_file", _exporters.env_file),
            "exporters_address": _wrap("exporters_address", _exporters.pick_address),
            "exporters_listen": _wrap("exporters_listen", _exporters.listen),
            "exporters_postgres_dsn": _wrap("exporters_postgres_dsn", _exporters.postgres_dsn),
        }
