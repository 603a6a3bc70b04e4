"""Which flush patterns a Redis user's ACL key patterns cover (before anything is flushed).

A group pattern is covered when one of the user's key patterns matches every key the group
pattern can match (glob containment, Redis' glob rules). The answer is conservative: "not
covered" when containment cannot be shown, never "covered" for a pattern that can reach a
key outside the user's patterns.
"""

import fnmatch
import itertools

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter.redis_patterns import redis_uncovered_patterns
from ansible_collections.bosun.platform.plugins.module_utils._flush import pattern_covers, uncovered_patterns


@pytest.mark.parametrize(
    ("allowed", "pattern"),
    [
        ("*", "anything:*"),
        ("*", "*"),
        ("business:*", "business:*"),
        ("business:*", "business:42:*"),
        ("business:*", "business:??"),
        ("business:*", "business:[0-9]*"),
        ("business:*", "business:\\*"),
        ("b*", "business:*"),
        ("*:items", "bosun-example:items"),
        ("user:*:*", "user:${id}:*"),
        ("user:*", "user:${id}:*"),
        ("bosun-example:*", "bosun-example:items"),
        ("a?c", "abc"),
        ("a[bc]d", "abd"),
        ("a[a-z]d", "a[b-y]d"),
        ("a[^0-9]d", "a[x-z]d"),
        ("a[^0-9]d", "a[^0-9]d"),
        ("a[^5]d", "a[^0-9]d"),
        ("**x", "*x"),
        ("*a*b*", "xaybz"),
        ("*a*b*", "*ab*"),
    ],
)
def test_covered(allowed, pattern):
    assert pattern_covers(allowed, pattern)


@pytest.mark.parametrize(
    ("allowed", "pattern"),
    [
        ("business:*", "search:*"),
        ("business:*", "*"),
        ("business:*", "busines*"),
        ("business:*", "business"),
        ("business:*", "?usiness:*"),
        ("business:\\*", "business:*"),
        ("user:*:*", "user:${id}"),
        ("user:?:*", "user:${id}:*"),
        ("*:items", "*"),
        ("a?c", "a*c"),
        ("a[bc]d", "a?d"),
        ("a[bc]d", "a[b-d]d"),
        ("a[0-9]d", "a[^x]d"),
        ("a[^0-9]d", "a[^5]d"),
        ("a[^0-9]d", "a5d"),
        ("*a*b*", "*b*a*"),
        ("cache:*", ""),
    ],
)
def test_not_covered(allowed, pattern):
    assert not pattern_covers(allowed, pattern)


def _redis_glob(pattern, key):
    """Redis' matcher for the subset used below (no escapes): fnmatch with [^...] as [!...]."""
    return fnmatch.fnmatchcase(key, pattern.replace("[^", "[!"))


def test_covered_means_every_key_matches_on_small_alphabets():
    """Soundness by brute force: wherever pattern_covers says yes, every key up to length 4
    over a small alphabet that the pattern matches is matched by the allowed pattern."""
    alphabet = "ab:"
    keys = ["".join(p) for n in range(5) for p in itertools.product(alphabet, repeat=n)]
    atoms = ["a", "b", ":", "?", "*", "[ab]", "[^a]"]
    patterns = ["".join(p) for n in range(1, 4) for p in itertools.product(atoms, repeat=n)]
    checked = 0
    for allowed in patterns[:120]:
        for pattern in patterns:
            if pattern_covers(allowed, pattern):
                checked += 1
                for key in keys:
                    if _redis_glob(pattern, key):
                        assert _redis_glob(allowed, key), (allowed, pattern, key)
    assert checked > 200


def test_uncovered_patterns_and_the_filter():
    allowed = ["cache:*", "menu:*", "business:*"]
    assert uncovered_patterns(["business:*", "search:*"], allowed) == ["search:*"]
    assert uncovered_patterns(["menu:*"], allowed) == []
    assert redis_uncovered_patterns(["business:*", "search:*"], allowed) == ["search:*"]
    assert redis_uncovered_patterns("search:*", "search:*") == []
    assert redis_uncovered_patterns(["x:*"], []) == ["x:*"]
    with pytest.raises(AnsibleFilterError, match="patterns"):
        redis_uncovered_patterns({"a": 1}, allowed)


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_the_inventories_cache_groups_are_within_the_maintenance_users_patterns(inventory):
    import os

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "..", "inventories", inventory, "group_vars", "cache.yml")
    with open(path) as f:
        cache = yaml.safe_load(f)
    allowed = cache["redis_maintenance_key_patterns"]
    assert dict((g, uncovered_patterns(p, allowed)) for g, p in cache["bosun_cache_groups"].items()) == dict(
        (g, []) for g in cache["bosun_cache_groups"]
    )
