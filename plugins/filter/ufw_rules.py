# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the common role's firewall (roles/common/tasks/firewall.yml).

- ``ufw_wanted_rules``: the rules the role wants (SSH from the admin ranges and the control hosts,
  the tier's rules), each with the comment that marks it as the role's.
- ``ufw_stale_rules``: the rules of ``ufw show added`` that the role made and no longer wants.

The logic is in module_utils/_firewall.py, unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _firewall


def ufw_wanted_rules(admin_cidrs, ssh_port, rules, control_addresses=None):
    try:
        return _firewall.wanted_rules(list(admin_cidrs), ssh_port, list(rules), list(control_addresses or []))
    except ValueError as exc:
        raise AnsibleFilterError(
            "ufw_wanted_rules: %s; give the control hosts a bosun_private_address (an IP address)" % exc
        ) from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError("ufw_wanted_rules: a firewall rule is malformed (%s): %r" % (exc, rules)) from None


def ufw_stale_rules(added_lines, wanted):
    if isinstance(added_lines, str):
        added_lines = added_lines.splitlines()
    return _firewall.stale_rules(list(added_lines), list(wanted))


class FilterModule:
    def filters(self):
        return dict(ufw_wanted_rules=ufw_wanted_rules, ufw_stale_rules=ufw_stale_rules)
