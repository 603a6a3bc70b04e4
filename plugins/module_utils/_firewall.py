# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ufw rules the common role owns: which it wants and which it must delete.

Every rule the role adds carries the comment ``bosun:<id> <label>``, where ``<id>`` is the
first 8 hex digits of the sha1 of ``"<rule> <port> <proto> <from>"``: the comment is how a
later run recognises the rules it made. A rule with such a comment (or one of the two an
earlier version of the role wrote, ``bosun admin ssh`` and ``bosun``) that is no longer
wanted is stale; a rule without the mark (added by hand, a fail2ban ban) is never touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import re

# Comments of rules this role made.
OWNED_COMMENT = re.compile(r"\Abosun(:[0-9a-f]{8}( .*)?| admin ssh)?\Z", re.S)


def rule_id(rule, port, proto, source):
    text = " ".join([str(rule), str(port), str(proto), str(source)])
    # an identifier, not a protection: sha1 keeps the ids of rules already on hosts
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]  # noqa: S324


def _networks(cidrs):
    """The admin ranges that are networks ("any" and the like let everything in)."""
    out = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:
            out.append(net)
    return out


def control_sources(admin_cidrs, control_addresses):
    """The control hosts' addresses that need an SSH rule of their own.

    Empty entries are ignored, duplicates dropped, and an address inside an admin range is
    already let in by that range's rule. ``any`` (or 0.0.0.0/0) covers nothing here: it lets
    everything in today, and the control host's own rule keeps it in once the range narrows.
    An entry that is not an IP address raises ValueError naming it (ufw takes addresses only).
    """
    networks = _networks(admin_cidrs)
    out = []
    for entry in control_addresses:
        text = str(entry).strip()
        if not text:
            continue
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError("control host address %r is not an IP address" % text) from None
        if str(address) in out or any(address.version == n.version and address in n for n in networks):
            continue
        out.append(str(address))
    return out


def wanted_rules(admin_cidrs, ssh_port, rules, control_addresses=()):
    """SSH from each admin range and each control host, then each present tier rule, each
    with its owned comment."""
    wanted = [
        dict(rule="allow", port=str(ssh_port), proto="tcp", source=cidr, label="admin ssh") for cidr in admin_cidrs
    ]
    wanted += [
        dict(rule="allow", port=str(ssh_port), proto="tcp", source=address, label="control ssh")
        for address in control_sources(admin_cidrs, control_addresses)
    ]
    for item in rules:
        if item.get("state", "present") != "present":
            continue
        wanted.append(
            dict(
                rule=item.get("rule", "allow"),
                port=str(item["port"]),
                proto=item.get("proto", "tcp"),
                source=item.get("from", "any"),
                label=item.get("comment", "rule"),
            )
        )
    out = []
    for w in wanted:
        out.append(
            {
                "rule": w["rule"],
                "port": w["port"],
                "proto": w["proto"],
                "from": w["source"],
                "label": w["label"],
                "comment": "bosun:%s %s" % (rule_id(w["rule"], w["port"], w["proto"], w["source"]), w["label"]),
            }
        )
    return out


def parse_added(lines):
    """(spec, comment) of each commented rule in ``ufw show added`` output."""
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.startswith("ufw ") or " comment '" not in line or not line.endswith("'"):
            continue
        spec, comment = line[4:-1].split(" comment '", 1)
        yield spec, comment


def stale_rules(added_lines, wanted):
    """The rules this role made that ``wanted`` no longer holds: [{spec, comment}]."""
    keep = set(w["comment"] for w in wanted)
    return [
        dict(spec=spec, comment=comment)
        for spec, comment in parse_added(added_lines)
        if OWNED_COMMENT.match(comment) and comment not in keep
    ]


# --- one call that brings ufw to what the role wants (module ufw_firewall) ------------------

# /etc/default/ufw's policy keys per direction, and its policy words in ufw's own terms.
POLICY_KEYS = dict(incoming="DEFAULT_INPUT_POLICY", outgoing="DEFAULT_OUTPUT_POLICY", routed="DEFAULT_FORWARD_POLICY")
POLICY_WORDS = dict(DROP="deny", ACCEPT="allow", REJECT="reject")
DIRECTIONS = ("incoming", "routed", "outgoing")


def parse_defaults(text):
    """{direction: policy} from /etc/default/ufw (``deny``, ``allow``, ``reject``; None if unset)."""
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if "=" not in line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("\"'")
    return dict((d, POLICY_WORDS.get(values.get(key, ""), None)) for d, key in POLICY_KEYS.items())


def parse_active(status_text):
    """Whether ``ufw status`` says the firewall is active."""
    for line in status_text.splitlines():
        if line.strip().lower().startswith("status:"):
            return line.split(":", 1)[1].strip().lower() == "active"
    return False


def add_argv(rule):
    """The ufw command that adds a wanted rule (argv: the comment is one argument)."""
    return [
        "ufw",
        rule["rule"],
        "from",
        rule["from"],
        "to",
        "any",
        "port",
        rule["port"],
        "proto",
        rule["proto"],
        "comment",
        rule["comment"],
    ]


def delete_argv(stale):
    """The ufw command that deletes a rule of ``ufw show added`` (spec as ufw printed it)."""
    return ["ufw", "delete"] + stale["spec"].split() + ["comment", stale["comment"]]


def plan(wanted, added_lines, current_defaults, wanted_defaults, active, enable=True, delete_stale=True):
    """What to change: ``{add, delete, defaults, enable}``, in the order they are applied.

    A wanted rule is there when a rule of ``ufw show added`` carries its comment (the comment
    holds the id derived from the rule's action, port, protocol and source). Stale rules are
    the role's own rules no longer wanted. ``defaults`` maps each direction whose policy
    differs to ``(before, after)``; ``enable`` is true when the firewall must be turned on.
    """
    present = set(comment for _spec, comment in parse_added(added_lines))
    add = [w for w in wanted if w["comment"] not in present]
    delete = stale_rules(added_lines, wanted) if delete_stale else []
    defaults = {}
    for direction in DIRECTIONS:
        want = (wanted_defaults or {}).get(direction)
        if want and current_defaults.get(direction) != want:
            defaults[direction] = (current_defaults.get(direction), want)
    return dict(add=add, delete=delete, defaults=defaults, enable=bool(enable and not active))


def owned_comments(added_lines):
    """The comments of the role's rules in ``ufw show added``, sorted (for a diff)."""
    return sorted(c for _s, c in parse_added(added_lines) if OWNED_COMMENT.match(c))
