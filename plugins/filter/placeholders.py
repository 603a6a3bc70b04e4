# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter for the role preflights: ``placeholders``, the paths of values that are still
placeholders (``change-me``, the example inventory's SSH keys), never the values.

The logic is in module_utils/_placeholders.py, unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _placeholders


def placeholders(value, name=None, ssh_keys=False):
    """Paths of the placeholders in ``value``.

    Without ``name``, ``value`` must be a mapping of variable names to their values (each
    name is then the start of its paths).
    """
    if name is None:
        if not isinstance(value, Mapping):
            raise AnsibleFilterError("placeholders: give the variable's name, or a mapping of names to values")
        found = []
        for key, child in value.items():
            found.extend(_placeholders.find(child, str(key), ssh_keys=bool(ssh_keys)))
        return found
    if not isinstance(name, str):
        raise AnsibleFilterError("placeholders: the name must be a string, got %s" % type(name).__name__)
    return _placeholders.find(value, name, ssh_keys=bool(ssh_keys))


class FilterModule:
    def filters(self):
        return dict(placeholders=placeholders)
