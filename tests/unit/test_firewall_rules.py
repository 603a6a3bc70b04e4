"""The common role's firewall decisions (module_utils/_firewall.py, filters ufw_*_rules)."""

import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import ufw_rules
from ansible_collections.bosun.platform.plugins.module_utils import _firewall


def _id(text):
    return hashlib.sha1(text.encode()).hexdigest()[:8]  # noqa: S324 (the rule id scheme)


def test_wanted_rules_mark_each_rule_with_an_id_of_its_own():
    wanted = _firewall.wanted_rules(
        ["198.51.100.0/24"],
        22,
        [
            {"port": 443, "comment": "https"},
            {"port": "6000:6010", "proto": "udp", "from": "10.0.0.0/8", "rule": "allow"},
            {"port": 80, "state": "absent"},
        ],
    )
    assert [w["comment"] for w in wanted] == [
        "bosun:%s admin ssh" % _id("allow 22 tcp 198.51.100.0/24"),
        "bosun:%s https" % _id("allow 443 tcp any"),
        "bosun:%s rule" % _id("allow 6000:6010 udp 10.0.0.0/8"),
    ]
    assert wanted[1] == {
        "rule": "allow",
        "port": "443",
        "proto": "tcp",
        "from": "any",
        "label": "https",
        "comment": wanted[1]["comment"],
    }


def test_a_narrowed_admin_range_makes_the_old_rule_stale_and_nothing_else():
    old = _firewall.wanted_rules(["any"], 22, [{"port": 443}])
    new = _firewall.wanted_rules(["172.30.215.0/25"], 22, [{"port": 443}])
    added = ["ufw allow 22/tcp comment '%s'" % old[0]["comment"]]
    added += ["ufw allow from 172.30.215.0/25 to any port 22 proto tcp comment '%s'" % new[0]["comment"]]
    added += ["ufw allow 443/tcp comment '%s'" % new[1]["comment"]]
    added += [
        "ufw allow 8080/tcp comment 'opened by hand'",  # not the role's
        "ufw deny from 203.0.113.9",  # a ban without a comment
        "ufw allow 9100/tcp comment 'bosunx'",  # looks alike, is not the role's
        "Added user rules (see 'ufw status' for running firewall):",
    ]
    assert _firewall.stale_rules(added, new) == [{"spec": "allow 22/tcp", "comment": old[0]["comment"]}]
    assert _firewall.stale_rules(added, old + new) == []


def test_rules_an_earlier_version_marked_are_the_roles_own():
    added = ["ufw allow 22/tcp comment 'bosun admin ssh'", "ufw allow 5432/tcp comment 'bosun'"]
    assert [r["comment"] for r in _firewall.stale_rules(added, [])] == ["bosun admin ssh", "bosun"]


def test_a_comment_with_a_newline_is_never_taken_for_the_roles():
    assert not _firewall.OWNED_COMMENT.match("bosun admin ssh\nx")
    assert _firewall.OWNED_COMMENT.match("bosun:0123abcd admin ssh")


def test_the_filters_take_ufw_output_as_text_or_lines():
    wanted = ufw_rules.ufw_wanted_rules(["10.0.0.0/24"], 22, [])
    stale_line = "ufw allow 443/tcp comment 'bosun:%s https'" % _id("allow 443 tcp any")
    assert ufw_rules.ufw_stale_rules(stale_line + "\n", wanted) == ufw_rules.ufw_stale_rules([stale_line], wanted)
    assert len(ufw_rules.ufw_stale_rules([stale_line], wanted)) == 1


def test_ssh_is_allowed_from_each_control_host():
    wanted = _firewall.wanted_rules(["198.51.100.0/24"], 2222, [{"port": 443}], ["10.110.0.51", "10.110.0.52"])
    control = [w for w in wanted if w["label"] == "control ssh"]
    assert [(w["from"], w["port"], w["proto"]) for w in control] == [
        ("10.110.0.51", "2222", "tcp"),
        ("10.110.0.52", "2222", "tcp"),
    ]
    assert control[0]["comment"] == "bosun:%s control ssh" % _id("allow 2222 tcp 10.110.0.51")
    # admin rules first, the tier's rules last
    assert [w["label"] for w in wanted] == ["admin ssh", "control ssh", "control ssh", "rule"]


def test_control_hosts_already_inside_an_admin_range_get_no_rule_of_their_own():
    wanted = _firewall.wanted_rules(
        ["10.110.0.0/20", "10.110.0.51/32"], 22, [], ["10.110.0.51", "10.110.0.51", "fd00::5"]
    )
    assert [(w["label"], w["from"]) for w in wanted] == [
        ("admin ssh", "10.110.0.0/20"),
        ("admin ssh", "10.110.0.51/32"),
        ("control ssh", "fd00::5"),
    ]
    # "any" lets everything in today, but the rule keeps the control host in when the range narrows
    assert [w["from"] for w in _firewall.wanted_rules(["any"], 22, [], ["10.0.0.5"])] == ["any", "10.0.0.5"]


def test_a_control_address_that_is_not_an_ip_address_is_refused_by_name():
    with pytest.raises(ValueError, match="mon1.example.com"):
        _firewall.wanted_rules([], 22, [], ["mon1.example.com"])
    with pytest.raises(AnsibleFilterError, match="bosun_private_address"):
        ufw_rules.ufw_wanted_rules([], 22, [], ["mon1.example.com"])
    assert ufw_rules.ufw_wanted_rules(["10.0.0.0/8"], 22, []) == _firewall.wanted_rules(["10.0.0.0/8"], 22, [], [""])


# --- module ufw_firewall: one call, its plan --------------------------------------------------

UFW_DEFAULTS = """# /etc/default/ufw
IPV6=yes
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
DEFAULT_FORWARD_POLICY="DROP"
"""


def test_the_default_policies_are_read_in_ufws_own_words():
    assert _firewall.parse_defaults(UFW_DEFAULTS) == {"incoming": "deny", "outgoing": "allow", "routed": "deny"}
    fresh = UFW_DEFAULTS.replace('INPUT_POLICY="DROP"', "INPUT_POLICY=ACCEPT").replace("DEFAULT_FORWARD_POLICY", "#X")
    assert _firewall.parse_defaults(fresh) == {"incoming": "allow", "outgoing": "allow", "routed": None}


@pytest.mark.parametrize(
    "text, active",
    [("Status: active\n\nTo  Action  From\n", True), ("Status: inactive\n", False), ("", False)],
)
def test_the_status_line_says_whether_ufw_is_active(text, active):
    assert _firewall.parse_active(text) is active


POLICIES = {"incoming": "deny", "routed": "deny", "outgoing": "allow"}


def _wanted():
    return _firewall.wanted_rules(["198.51.100.0/24"], 22, [{"port": 443, "comment": "https"}])


def _added(rules, extra=()):
    lines = ["Added user rules (see 'ufw status' for running firewall):"]
    lines += [
        "ufw %s from %s to any port %s proto %s comment '%s'"
        % (r["rule"], r["from"], r["port"], r["proto"], r["comment"])
        for r in rules
    ]
    return lines + list(extra)


def test_a_converged_firewall_needs_nothing():
    wanted = _wanted()
    todo = _firewall.plan(wanted, _added(wanted), POLICIES, POLICIES, active=True)
    assert todo == {"add": [], "delete": [], "defaults": {}, "enable": False}


def test_a_fresh_firewall_gets_every_rule_then_its_policies_then_is_enabled():
    wanted = _wanted()
    current = {"incoming": "allow", "routed": "deny", "outgoing": "allow"}
    todo = _firewall.plan(
        wanted, ["Added user rules (see 'ufw status' for running firewall):", "(None)"], current, POLICIES, active=False
    )
    assert todo["add"] == wanted and todo["delete"] == []
    assert todo["defaults"] == {"incoming": ("allow", "deny")} and todo["enable"] is True


def test_a_narrowed_range_adds_the_new_rule_and_deletes_the_old_one_only():
    old = _firewall.wanted_rules(["any"], 22, [{"port": 443, "comment": "https"}])
    by_hand = "ufw allow 8080/tcp comment 'opened by hand'"
    todo = _firewall.plan(_wanted(), _added(old, [by_hand, "ufw deny from 203.0.113.9"]), POLICIES, POLICIES, True)
    assert [r["label"] for r in todo["add"]] == ["admin ssh"]
    assert [d["comment"] for d in todo["delete"]] == [old[0]["comment"]]
    assert _firewall.delete_argv(todo["delete"][0]) == (
        ["ufw", "delete", "allow", "from", "any", "to", "any", "port", "22", "proto", "tcp", "comment"]
        + [old[0]["comment"]]
    )


def test_stale_rules_are_kept_when_asked_and_unset_policies_are_left_alone():
    old = _firewall.wanted_rules(["any"], 22, [])
    todo = _firewall.plan(
        _wanted(), _added(old), {"incoming": "allow"}, {"outgoing": "allow"}, True, enable=False, delete_stale=False
    )
    assert todo["delete"] == [] and todo["enable"] is False
    assert todo["defaults"] == {"outgoing": (None, "allow")}


def test_the_add_command_is_an_argument_list_with_the_comment_as_one_argument():
    rule = _wanted()[1]
    assert _firewall.add_argv(rule) == [
        "ufw",
        "allow",
        "from",
        "any",
        "to",
        "any",
        "port",
        "443",
        "proto",
        "tcp",
        "comment",
        rule["comment"],
    ]


def test_the_role_rules_comments_are_listed_for_the_diff():
    wanted = _wanted()
    lines = _added(wanted, ["ufw allow 8080/tcp comment 'opened by hand'"])
    assert _firewall.owned_comments(lines) == sorted(w["comment"] for w in wanted)
