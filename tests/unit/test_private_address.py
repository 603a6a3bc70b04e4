"""The private address of a host (filter bosun.platform.private_address), as the postgresql,
redis and elasticsearch roles take it."""

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import private_address as flt

from tests.support.templating import render_all

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = ("postgresql", "redis", "elasticsearch")


def _facts(eth1=None, default=None):
    """ansible_facts with eth1's IPv4 and the default route's address (None: the fact is absent)."""
    facts = {"hostname": "db1", "eth0": {"device": "eth0", "ipv4": {"address": "203.0.113.10"}}}
    if eth1 is not None:
        facts["eth1"] = {"device": "eth1", "active": True, "ipv4": {"address": eth1, "netmask": "255.255.240.0"}}
    if default is not None:
        facts["default_ipv4"] = {"address": default, "interface": "eth0", "gateway": "203.0.113.1"}
    return facts


def test_eth1_private_is_taken_before_the_default_route():
    assert flt.private_address(_facts(eth1="10.110.0.5", default="192.168.1.20")) == "10.110.0.5"


def test_without_eth1_a_private_default_route_is_taken():
    assert flt.private_address(_facts(default="172.18.0.3")) == "172.18.0.3"


def test_a_public_eth1_falls_back_to_a_private_default_route():
    assert flt.private_address(_facts(eth1="198.51.100.7", default="192.168.0.9")) == "192.168.0.9"


@pytest.mark.parametrize(
    "facts",
    [
        _facts(default="203.0.113.10"),
        _facts(eth1="198.51.100.7", default="203.0.113.10"),
        _facts(),
    ],
    ids=["default-public", "both-public", "neither"],
)
def test_a_public_address_is_never_detected(facts):
    assert flt.private_address(facts) == ""


def test_the_override_wins_over_detection():
    facts = _facts(eth1="10.110.0.5", default="172.18.0.3")
    assert flt.private_address(facts, "10.9.9.9") == "10.9.9.9"
    # taken as given, even a public address and without facts
    assert flt.private_address(facts, "198.51.100.7") == "198.51.100.7"
    assert flt.private_address({}, "10.9.9.9") == "10.9.9.9"
    assert flt.private_address(None, "10.9.9.9") == "10.9.9.9"


@pytest.mark.parametrize("override", ["", None])
def test_an_empty_override_detects(override):
    assert flt.private_address(_facts(eth1="10.110.0.5"), override) == "10.110.0.5"


@pytest.mark.parametrize("facts", [{}, None], ids=["empty", "null"])
def test_no_facts_give_no_address(facts):
    assert flt.private_address(facts) == ""


@pytest.mark.parametrize(
    "facts",
    [
        {"eth1": {"device": "eth1"}},  # an interface without IPv4
        {"eth1": {"ipv4": {}}},
        {"eth1": "up", "default_ipv4": {}},
        {"eth1": {"ipv4": ["10.0.0.1"]}},
        {"default_ipv4": {"address": None}},
    ],
)
def test_missing_or_odd_facts_give_no_address(facts):
    assert flt.private_address(facts) == ""


def test_facts_that_are_not_a_dict_are_an_error():
    with pytest.raises(AnsibleFilterError, match="ansible_facts"):
        flt.private_address(["10.0.0.1"])


@pytest.mark.parametrize(
    "address, private",
    [
        ("10.0.0.1", True),
        ("10.255.255.254", True),
        ("172.16.0.1", True),
        ("172.31.255.1", True),
        ("192.168.0.1", True),
        ("172.15.0.1", False),
        ("172.32.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT: not RFC 1918
        ("127.0.0.1", False),
        ("169.254.1.1", False),
        ("110.0.0.1", False),
        ("192.169.0.1", False),
        ("203.0.113.10", False),
        ("", False),
    ],
)
def test_private_ranges(address, private):
    assert flt.is_private(address) is private
    assert flt.private_address({"eth1": {"ipv4": {"address": address}}}) == (address if private else "")


# --- As the roles use it -----------------------------------------------------------------

# The expression each role had before the filter (the same in all three), kept as the reference.
BEFORE = (
    "{{ role_private_address or bosun_private_address | default('')"
    " or [ansible_facts.get('eth1', {}).get('ipv4', {}).get('address', ''),"
    " ansible_facts.get('default_ipv4', {}).get('address', '')]"
    " | select('match', '^(10[.]|172[.](1[6-9]|2[0-9]|3[01])[.]|192[.]168[.])') | first | default('') }}"
)

CASES = [
    dict(facts=_facts(eth1="10.110.0.5", default="192.168.1.20"), want="10.110.0.5"),
    dict(facts=_facts(default="172.18.0.3"), want="172.18.0.3"),
    dict(facts=_facts(eth1="198.51.100.7", default="192.168.0.9"), want="192.168.0.9"),
    dict(facts=_facts(eth1="198.51.100.7", default="203.0.113.10"), want=""),
    dict(facts=_facts(), want=""),
    dict(facts={}, want=""),
    dict(facts=_facts(eth1="10.110.0.5"), role="10.1.1.1", want="10.1.1.1"),
    dict(facts=_facts(eth1="10.110.0.5"), bosun="10.2.2.2", want="10.2.2.2"),
    dict(facts=_facts(eth1="10.110.0.5"), role="10.1.1.1", bosun="10.2.2.2", want="10.1.1.1"),
    dict(facts=_facts(eth1="10.110.0.5"), bosun="", want="10.110.0.5"),
    dict(facts={}, bosun="10.2.2.2", want="10.2.2.2"),
]


def _role_expression(role):
    with open(os.path.join(ROOT, "roles", role, "vars", "main.yml")) as f:
        return yaml.safe_load(f)["__%s_private_address" % role]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gives_what_it_gave_before_the_filter(role):
    pairs = []
    for case in CASES:
        variables = {"ansible_facts": case["facts"], "%s_private_address" % role: case.get("role", "")}
        if "bosun" in case:
            variables["bosun_private_address"] = case["bosun"]
        pairs.append((_role_expression(role), variables))
        pairs.append((BEFORE, dict(variables, role_private_address=variables["%s_private_address" % role])))
    rendered = render_all(pairs)
    now, before = rendered[0::2], rendered[1::2]
    assert before == [case["want"] for case in CASES]
    assert now == before
