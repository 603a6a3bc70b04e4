# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a cache flush run asks for (roles/cache_flush, playbooks/cache_flush.yml).

Exactly one of a named group of ``bosun_cache_groups`` and a list of patterns (a list, or a
string of comma-separated patterns as ``-e cache_patterns=a,b`` gives it) is the request; the
answer names the patterns, what they are (for messages) and the platform lock's job, or the
error that refuses the run before anything is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def _given(value):
    return value is not None and value not in ("", [])


def _patterns(value):
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, (list, tuple)):
        return [str(p) for p in value]
    return None


def flush_request(group, patterns, groups):
    """``dict(error, patterns, what, label, job)`` for a group name or patterns.

    ``error`` is empty when the request can run; ``patterns`` are then the patterns to flush.
    """
    groups = groups if isinstance(groups, dict) else {}
    names = sorted(str(name) for name in groups)
    out = dict(error="", patterns=[], what="", label="", job="cache_flush ?")
    if _given(group) == _given(patterns):
        out["error"] = (
            "Give exactly one of -e cache_group=NAME (one of: %s) and -e cache_patterns=PATTERN[,PATTERN...]."
            % ", ".join(names)
        )
        return out
    if _given(group):
        group = str(group)
        out["job"] = "cache_flush %s" % group
        if group not in groups:
            out["error"] = "Unknown cache group '%s'; bosun_cache_groups defines: %s." % (
                group,
                ", ".join(names) or "none",
            )
            return out
        found = _patterns(groups[group])
        if found is None:
            out["error"] = "Cache group '%s' of bosun_cache_groups must be a list of patterns." % group
            return out
        out.update(patterns=found, what="cache group %s" % group, label=group)
        return out
    found = _patterns(patterns)
    if found is None:
        out["error"] = "cache_patterns must be a pattern, comma-separated patterns or a list of patterns."
        return out
    out.update(patterns=found, what="cache_patterns", label="patterns", job="cache_flush %s" % ",".join(found))
    return out
