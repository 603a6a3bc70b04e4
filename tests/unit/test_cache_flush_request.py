"""The request of a cache flush run (module_utils/_cache_flush.py, filter cache_flush_request)."""

import pytest
from ansible_collections.bosun.platform.plugins.filter.cache_flush import FilterModule, cache_flush_request
from ansible_collections.bosun.platform.plugins.module_utils._cache_flush import flush_request

GROUPS = {"user": ["user:${id}:*"], "business": ["business:*", "search:*"]}


def test_a_named_group():
    assert flush_request("business", None, GROUPS) == dict(
        error="",
        patterns=["business:*", "search:*"],
        what="cache group business",
        label="business",
        job="cache_flush business",
    )


@pytest.mark.parametrize("patterns", ["menu:*,search:*", ["menu:*", "search:*"]])
def test_given_patterns_string_or_list(patterns):
    got = flush_request("", patterns, GROUPS)
    assert got["error"] == ""
    assert got["patterns"] == ["menu:*", "search:*"]
    assert (got["what"], got["label"], got["job"]) == ("cache_patterns", "patterns", "cache_flush menu:*,search:*")


@pytest.mark.parametrize(("group", "patterns"), [("", None), (None, ""), ("user", "x:*"), ("", [])])
def test_exactly_one_of_group_and_patterns(group, patterns):
    got = flush_request(group, patterns, GROUPS)
    assert got["error"] == (
        "Give exactly one of -e cache_group=NAME (one of: business, user) and -e cache_patterns=PATTERN[,PATTERN...]."
    )
    assert got["patterns"] == []


def test_unknown_group_names_the_defined_ones():
    assert flush_request("menu", None, GROUPS)["error"] == (
        "Unknown cache group 'menu'; bosun_cache_groups defines: business, user."
    )
    got = flush_request("menu", None, None)
    assert got["error"] == "Unknown cache group 'menu'; bosun_cache_groups defines: none."
    assert got["job"] == "cache_flush menu"


def test_wrong_shapes_are_refused():
    assert "must be a list of patterns" in flush_request("bad", None, {"bad": {"x": 1}})["error"]
    assert "cache_patterns must be" in flush_request("", {"x": 1}, GROUPS)["error"]


def test_filter():
    assert FilterModule().filters()["cache_flush_request"] is cache_flush_request
    assert cache_flush_request("user", "", GROUPS)["patterns"] == ["user:${id}:*"]
