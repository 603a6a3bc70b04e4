# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter of the cache flush role (roles/cache_flush): ``cache_flush_request``, the patterns a
run flushes (a named group or given patterns) or why it is refused.

The logic is in module_utils/_cache_flush.py, unit-tested there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._cache_flush import flush_request


def cache_flush_request(group, patterns=None, groups=None):
    """The request of a cache flush run: ``{error, patterns, what, label, job}``."""
    return flush_request(group, patterns, groups)


class FilterModule:
    def filters(self):
        return dict(cache_flush_request=cache_flush_request)
