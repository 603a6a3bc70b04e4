# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for every play that talks to PostgreSQL, Redis or Elasticsearch: ``connection``, a
host's connection to a service as the module options of its action group
(``group/bosun.platform.postgres``, ``group/bosun.platform.redis`` or
``group/bosun.platform.elasticsearch``).

One rule for every play:

1. the dict ``bosun_<service>`` (``bosun_postgres``, ``bosun_redis``, ``bosun_elasticsearch``)
   when the host has it: it is the whole connection, the older variables are then not read;
2. else, option by option, the older variables the playbooks read before the dict existed:
   postgres ``bosun_maintenance_login_<x>``, then ``bosun_backup_login_<x>``; redis
   ``bosun_redis_login_<x>``, ``bosun_redis_tls``, ``bosun_redis_ca_cert``,
   ``bosun_redis_client_cert``, ``bosun_redis_client_key``; elasticsearch has none.

Options that are not set (absent, null or Ansible's ``omit``) are left out, so the module's
defaults apply. Error messages name variables and options, never their values.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._elasticsearch import (
    CONNECTION_OPTIONS as ELASTICSEARCH_ARGS,
)
from ansible_collections.bosun.platform.plugins.module_utils._postgres import POSTGRES_COMMON_ARGS
from ansible_collections.bosun.platform.plugins.module_utils._redis import REDIS_COMMON_ARGS

# Option -> the older variables that set it, first found wins.
POSTGRES_LEGACY = dict(
    (option, ("bosun_maintenance_login_" + suffix, "bosun_backup_login_" + suffix))
    for option, suffix in (
        ("login_host", "host"),
        ("login_port", "port"),
        ("login_user", "user"),
        ("login_password", "password"),
        ("login_unix_socket", "unix_socket"),
        ("ssl_mode", "ssl_mode"),
        ("ca_cert", "ca_cert"),
    )
)

REDIS_LEGACY = dict(
    login_host=("bosun_redis_login_host",),
    login_port=("bosun_redis_login_port",),
    login_unix_socket=("bosun_redis_login_unix_socket",),
    login_user=("bosun_redis_login_user",),
    login_password=("bosun_redis_login_password",),
    login_db=("bosun_redis_login_db",),
    tls=("bosun_redis_tls",),
    ca_cert=("bosun_redis_ca_cert",),
    client_cert=("bosun_redis_client_cert",),
    client_key=("bosun_redis_client_key",),
)

SERVICES = dict(
    postgres=dict(variable="bosun_postgres", options=POSTGRES_COMMON_ARGS, legacy=POSTGRES_LEGACY),
    redis=dict(variable="bosun_redis", options=REDIS_COMMON_ARGS, legacy=REDIS_LEGACY),
    elasticsearch=dict(variable="bosun_elasticsearch", options=ELASTICSEARCH_ARGS, legacy={}),
)


def _is_unset(value):
    """None, or Ansible's omit placeholder (a sentinel since ansible-core 2.19, a marker string before)."""
    if value is None or type(value).__name__ == "_OmitType":
        return True
    return isinstance(value, str) and value.startswith("__omit_place_holder__")


def _aliases(options):
    """alias -> option name, from the argument spec."""
    return dict((alias, name) for name, spec in options.items() for alias in spec.get("aliases", ()))


def _from_dict(given, variable, options):
    if not isinstance(given, Mapping):
        raise AnsibleFilterError(
            "connection: %s must be a dict of module options, got %s" % (variable, type(given).__name__)
        )
    aliases = _aliases(options)
    result = {}
    seen = {}
    unknown = []
    for key in given:
        name = aliases.get(key, key)
        if name not in options:
            unknown.append(str(key))
            continue
        if name in seen:
            raise AnsibleFilterError(
                "connection: %s sets %s twice (%s)" % (variable, name, " and ".join(sorted((seen[name], key))))
            )
        seen[name] = key
        value = given[key]
        if _is_unset(value):
            continue
        result[name] = value
    if unknown:
        raise AnsibleFilterError(
            "connection: %s has unknown options %s; it takes %s"
            % (variable, ", ".join(sorted(unknown)), ", ".join(sorted(options)))
        )
    return result


def _from_legacy(variables, legacy):
    result = {}
    for option, names in legacy.items():
        for name in names:
            value = variables.get(name)
            if not _is_unset(value):
                result[option] = value
                break
    return result


def connection(variables, service):
    """The module options of the ``service`` connection of the host whose variables are given."""
    if not isinstance(service, str) or service not in SERVICES:
        raise AnsibleFilterError(
            "connection: unknown service %s; choose one of %s"
            % (repr(service) if isinstance(service, str) else type(service).__name__, ", ".join(sorted(SERVICES)))
        )
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError(
            "connection: give a host's variables (hostvars[inventory_hostname] or hostvars[item]), got %s"
            % type(variables).__name__
        )
    what = SERVICES[service]
    given = variables.get(what["variable"])
    if not _is_unset(given):
        return _from_dict(given, what["variable"], what["options"])
    return _from_legacy(variables, what["legacy"])


class FilterModule:
    def filters(self):
        return dict(connection=connection)
