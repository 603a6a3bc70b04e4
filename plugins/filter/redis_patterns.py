# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the cache flush playbook (playbooks/cache_flush.yml).

- ``redis_pattern_params``: the values of the ``${name}`` placeholders of pattern templates,
  taken from the play's variables, for ``bosun.platform.redis_flush``'s ``pattern_params``
  (the module escapes them; a value can never widen a pattern).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._flush import template_names


def redis_pattern_params(patterns, variables):
    """{name: value} for each placeholder of ``patterns`` that ``variables`` defines.

    A placeholder with no variable is left out: the module then names it in its error.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, (list, tuple)):
        raise AnsibleFilterError("redis_pattern_params: patterns must be a list of strings, got %r" % (patterns,))
    out = {}
    for pattern in patterns:
        for name in template_names(str(pattern)):
            if name not in out and name in variables:
                out[name] = variables[name]
    return out


class FilterModule:
    def filters(self):
        return dict(redis_pattern_params=redis_pattern_params)
