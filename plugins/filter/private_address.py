# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for the tiers on the private network (postgresql, redis, elasticsearch roles).

- ``private_address``: the host's address on the private network: the explicit one when
  given, else the IPv4 of ``eth1`` (a Droplet's VPC interface) when it is private, else the
  default route's IPv4 when it is private, else ``''``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (a prefix match on the dotted address).
PRIVATE_REGEX = re.compile(r"^(10[.]|172[.](1[6-9]|2[0-9]|3[01])[.]|192[.]168[.])")


def _get(mapping, *keys):
    """The value at ``keys`` in nested mappings, ``''`` where one is missing or not a mapping."""
    value = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(key)
    return value if isinstance(value, str) else ""


def is_private(address):
    """Whether ``address`` is in one of the RFC 1918 ranges."""
    return isinstance(address, str) and PRIVATE_REGEX.match(address) is not None


def private_address(facts, override=""):
    """The private address of the host whose ``ansible_facts`` are ``facts``."""
    if override:
        return str(override)
    if facts is None:
        return ""
    if not isinstance(facts, Mapping):
        raise AnsibleFilterError(
            "private_address: give the host's ansible_facts (a dict), got %s" % type(facts).__name__
        )
    for address in (_get(facts, "eth1", "ipv4", "address"), _get(facts, "default_ipv4", "address")):
        if is_private(address):
            return address
    return ""


class FilterModule:
    def filters(self):
        return dict(private_address=private_address)
