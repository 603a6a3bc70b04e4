# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the cache flush playbook (playbooks/cache_flush.yml).

- ``redis_pattern_params``: the values of the ``${name}`` placeholders of pattern templates,
  taken from the play's variables, for ``bosun.platform.redis_flush``'s ``pattern_params``
  (the module escapes them; a value can never widen a pattern).
- ``redis_uncovered_patterns``: the patterns of a cache group that a Redis user's ACL key
  patterns do not cover, so a flush can be refused before it deletes anything (instead of
  failing with NOPERM part-way through).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils._flush import template_names, uncovered_patterns


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


def _pattern_list(value, what):
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise AnsibleFilterError("redis_uncovered_patterns: %s must be a list of strings, got %r" % (what, value))
    return list(value)


def redis_uncovered_patterns(patterns, allowed):
    """The patterns of ``patterns`` that no key pattern of ``allowed`` covers (matches every
    key they can match), in order. Conservative: when containment cannot be shown, uncovered.
    """
    return uncovered_patterns(_pattern_list(patterns, "patterns"), _pattern_list(allowed, "allowed"))


class FilterModule:
    def filters(self):
        return dict(redis_pattern_params=redis_pattern_params, redis_uncovered_patterns=redis_uncovered_patterns)
