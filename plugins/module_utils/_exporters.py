# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the ``exporters`` role (Prometheus exporters from Debian's packages).

- which exporters a host runs, from its inventory groups;
- the firewall rules that open each exporter's port to the monitor hosts only, in the format
  of the common role's ``common_firewall_rules``;
- the Redis ACL user the Redis exporter logs in as (read-only server state, no key);
- the environment files the Debian units read (``EnvironmentFile=/etc/default/<package>``),
  where the secrets go (never the command line);
- the PostgreSQL connection string of the PostgreSQL exporter.

Unit-tested in tests/unit/test_exporters.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import quote

from ansible_collections.bosun.platform.plugins.module_utils._prometheus import inventory_address

# In the order main.yml runs them.
EXPORTERS = ("node", "redis", "postgres", "nginx", "elasticsearch")

PORTS = {"node": 9100, "redis": 9121, "postgres": 9187, "nginx": 9113, "elasticsearch": 9114}

# The inventory group whose hosts run each exporter ("" = every host).
GROUPS = {"node": "", "redis": "cache", "postgres": "db", "nginx": "lb", "elasticsearch": "search"}

# What the Redis exporter sends with its default options (no key checks, no client list, no
# Lua script): CLIENT SETNAME, INFO, LATENCY LATEST, SLOWLOG LEN and GET, CLUSTER INFO (only
# on a cluster), PING (only with ping-on-connect). CONFIG GET is left out on purpose: it
# would show every setting (masterauth among them); the exporter logs its refusal at debug
# level only and takes maxmemory from INFO. No key pattern: the user reads no key.
REDIS_ACL_RULES = (
    "resetkeys",
    "resetchannels",
    "-@all",
    "+client|setname",
    "+info",
    "+ping",
    "+latency|latest",
    "+slowlog|len",
    "+slowlog|get",
    "+cluster|info",
)

_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_ACL_RULE = re.compile(r"\A\S+\Z")


class ExportersError(ValueError):
    """A request the role refuses; the message names the filter and the culprit."""


def _names(value, what):
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set)):
        raise ExportersError("%s must be a list, got %r" % (what, value))
    return [str(v) for v in value]


def _group_map(exporter_groups):
    groups = dict(GROUPS)
    if exporter_groups is None:
        return groups
    if not isinstance(exporter_groups, Mapping):
        raise ExportersError("exporter_groups must be a dict {exporter: group}, got %r" % (exporter_groups,))
    for name, group in exporter_groups.items():
        if name not in GROUPS:
            raise ExportersError("unknown exporter %r (known: %s)" % (name, ", ".join(EXPORTERS)))
        groups[name] = "" if group is None else str(group)
    return groups


def select(group_names, exporter_groups=None):
    """The exporters a host in ``group_names`` runs, in the order of ``EXPORTERS``.

    ``exporter_groups`` overrides the group of an exporter (``""``: every host; ``"-"``: none).
    """
    names = set(_names(group_names, "group_names"))
    groups = _group_map(exporter_groups)
    out = []
    for name in EXPORTERS:
        group = groups[name]
        if group == "-":
            continue
        if group == "" or group in names:
            out.append(name)
    return out


def _ports(ports):
    merged = dict(PORTS)
    for name, port in (ports or {}).items():
        if name not in PORTS:
            raise ExportersError("unknown exporter %r in ports (known: %s)" % (name, ", ".join(EXPORTERS)))
        try:
            number = int(port)
        except (TypeError, ValueError):
            raise ExportersError("the port of %s must be a number, got %r" % (name, port)) from None
        if not 0 < number < 65536:
            raise ExportersError("the port of %s is out of range: %r" % (name, port))
        merged[name] = number
    return merged


def host_address(host, hostvars):
    """A host's address for firewall rules, by the rule Prometheus reaches hosts with
    (``_prometheus.inventory_address``: bosun_private_address, else ansible_host).

    It must be an IP address (ufw takes addresses, not names); ExportersError otherwise.
    """
    if not isinstance(hostvars, Mapping) or not isinstance(hostvars.get(host), Mapping):
        raise ExportersError("monitor host %r is not in hostvars" % (host,))
    key, text = inventory_address(host, hostvars)
    if key is None:
        raise ExportersError("monitor host %r has neither bosun_private_address nor ansible_host" % (host,))
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ExportersError(
            "monitor host %r: %s %r is not an IP address; give it a bosun_private_address" % (host, key, text)
        ) from None
    return text


def firewall_rules(group_names, monitor_hosts, hostvars, exporter_groups=None, ports=None, proto="tcp"):
    """Entries for ``common_firewall_rules``: each exporter port of this host, from each monitor host.

    One rule per (exporter, monitor address), addresses deduplicated, in the order of the
    exporters then of the monitor hosts. No monitor host: no rule (the ports stay closed).
    """
    selected = select(group_names, exporter_groups)
    port_of = _ports(ports)
    addresses = []
    for host in _names(monitor_hosts, "monitor_hosts"):
        address = host_address(host, hostvars)
        if address not in addresses:
            addresses.append(address)
    rules = []
    for name in selected:
        for address in addresses:
            rules.append(
                {
                    "port": port_of[name],
                    "proto": proto,
                    "from": address,
                    "comment": "%s exporter from monitor" % name,
                }
            )
    return rules


def redis_acl_user(name, password, extra_rules=None):
    """An entry of the redis role's ``redis_acl_users`` for the Redis exporter's user."""
    if not isinstance(name, str) or not _ACL_RULE.match(name):
        raise ExportersError("the Redis user name must be one word, got %r" % (name,))
    if not isinstance(password, str) or password == "":
        raise ExportersError("the Redis exporter user %r needs a password" % name)
    extra = _names(extra_rules, "extra_rules")
    for rule in extra:
        if not _ACL_RULE.match(rule):
            raise ExportersError("ACL rule %r has blanks (one rule per entry)" % rule)
    return {"name": name, "password": password, "rules": list(REDIS_ACL_RULES) + extra}


def _quote_env(value):
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ExportersError("an environment value cannot hold a line break or NUL")
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")


def env_file(variables, args=None):
    """The content of /etc/default/<package>: ``NAME="value"`` lines, then ``ARGS``.

    Values are double-quoted with backslash escapes (systemd's EnvironmentFile and a POSIX
    shell, which the package's init script uses, read them the same way). Empty values are
    left out. ``args`` are the command-line arguments, which hold no secret; each must be one
    word, since the unit splits ``$ARGS`` on blanks.
    """
    if not isinstance(variables, Mapping):
        raise ExportersError("the environment must be a dict, got %r" % (type(variables).__name__,))
    lines = []
    for name in variables:
        if not _ENV_NAME.match(str(name)):
            raise ExportersError("%r is not an environment variable name" % (name,))
        value = variables[name]
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append("%s=%s" % (name, _quote_env(value)))
    words = _names(args, "args")
    for word in words:
        if word == "" or re.search(r"[\s\"'\\$`]", word):
            raise ExportersError("argument %r must be one word without quotes, blanks, $ or backslashes" % word)
    lines.append("ARGS=%s" % _quote_env(" ".join(words)))
    return "# Written by bosun.platform.exporters: changes here are overwritten.\n" + "\n".join(lines) + "\n"


def listen(address, port):
    """``address:port`` for a listen flag, the address bracketed when it is IPv6."""
    text = str(address or "").strip()
    if text == "":
        raise ExportersError("no listen address")
    if ":" in text and not text.startswith("["):
        text = "[%s]" % text
    return "%s:%d" % (text, int(port))


def pick_address(candidates):
    """The first candidate that is an IP address (blanks and names are skipped), else ``""``.

    The exporters listen on the host's private address: the explicit one, the collection-wide
    bosun_private_address, the detected private address, then ansible_host when it is an
    address (a container's inventory name is not).
    """
    for candidate in _names(candidates, "candidates"):
        text = candidate.strip()
        if not text:
            continue
        try:
            ipaddress.ip_address(text)
        except ValueError:
            continue
        return text
    return ""


def postgres_dsn(
    user, password, host="/var/run/postgresql", port=5432, dbname="postgres", sslmode="disable", sslrootcert=""
):
    """A ``postgresql://`` URL for the PostgreSQL exporter, user and password percent-encoded.

    The exporter (0.11) parses a key/value string by splitting on blanks, without quoting,
    and turns a URL into such a string before it parses it: a user, password or database
    name with blanks is refused here, since the exporter would fail and log it. A unix
    socket directory goes in the ``host`` query parameter (the URL's host stays empty).
    """
    if not user:
        raise ExportersError("the PostgreSQL exporter needs a login user")
    if not password:
        raise ExportersError("the PostgreSQL exporter's user %r needs a password" % user)
    if sslmode not in ("disable", "require", "verify-ca", "verify-full"):
        raise ExportersError("sslmode must be disable, require, verify-ca or verify-full, got %r" % (sslmode,))
    for what, value in (("user", user), ("password", password), ("database", dbname)):
        if re.search(r"\s", str(value)):
            # 0.11 turns the URL into key/value pairs and splits them on blanks: it fails and
            # logs the whole connection string, password included.
            raise ExportersError("the PostgreSQL exporter cannot take a %s with blanks" % what)
    host = str(host or "")
    if not host:
        raise ExportersError("the PostgreSQL exporter needs a host (an address or the socket directory)")
    port = int(port)
    userinfo = "%s:%s" % (quote(str(user), safe=""), quote(str(password), safe=""))
    query = []
    if host.startswith("/"):
        authority = ""
        query += [("host", host), ("port", str(port))]
    else:
        authority = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    query.append(("sslmode", sslmode))
    if sslrootcert:
        query.append(("sslrootcert", sslrootcert))
    return "postgresql://%s@%s/%s?%s" % (
        userinfo,
        authority,
        quote(str(dbname), safe=""),
        "&".join("%s=%s" % (k, quote(v, safe="")) for k, v in query),
    )
