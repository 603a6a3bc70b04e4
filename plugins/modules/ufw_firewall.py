#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ufw_firewall
short_description: Bring ufw to the rules, default policies and state the common role wants, in one call
version_added: 0.1.0
author: bosun.platform maintainers (@bosun-platform)
description:
  - Reads C(ufw show added), C(ufw status) and C(/etc/default/ufw) once, then adds the wanted
    rules that are missing, deletes the rules the role made that are no longer wanted, sets the
    default policies that differ and enables the firewall, in that order, so the SSH session
    that runs it is never cut off half-way.
  - A rule is recognised by its comment C(bosun:<id> <label>), where C(<id>) is derived from the
    rule's action, port, protocol and source (filter P(bosun.platform.ufw_wanted_rules#filter)
    makes them). A rule without such a comment (added by hand, a fail2ban ban) is never touched.
  - One module call replaces a task per rule, per policy and per step; on a converged host it
    runs three reads and changes nothing.
extends_documentation_fragment:
  - bosun.platform.attributes
options:
  rules:
    description: The wanted rules, as P(bosun.platform.ufw_wanted_rules#filter) returns them.
    type: list
    elements: dict
    required: true
    suboptions:
      rule:
        description: ufw rule kind.
        type: str
        choices: [allow, deny, reject, limit]
        default: allow
      port:
        description: Port or range (C(6000:6010)).
        type: str
        required: true
      proto:
        description: Protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      from:
        description: Source address or network, or C(any).
        type: str
        default: any
      comment:
        description: The rule's comment, C(bosun:<id> <label>).
        type: str
        required: true
      label:
        description: The label of the comment (reported only).
        type: str
  delete_stale:
    description: Delete the rules the role made (their comment says so) that O(rules) no longer holds.
    type: bool
    default: true
  default_policies:
    description: Default policy per direction; a direction not given is left as it is.
    type: dict
    default: {}
    suboptions:
      incoming:
        description: Incoming traffic.
        type: str
        choices: [allow, deny, reject]
      routed:
        description: Routed (forwarded) traffic.
        type: str
        choices: [allow, deny, reject]
      outgoing:
        description: Outgoing traffic.
        type: str
        choices: [allow, deny, reject]
  enabled:
    description: Enable the firewall when it is not active (C(ufw --force enable)). V(false) leaves its state alone.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Check mode reads the same state and reports every change it would make, making none.
  diff_mode:
    support: full
    details: The role's rules (by comment), the default policies and the state, before and after.
  platform:
    support: full
    platforms: debian
requirements:
  - ufw on the managed host.
notes:
  - Each ufw command runs as an argument list (no shell); a failing one fails the task naming
    the command's rule and ufw's message, after the changes made before it.
"""

EXAMPLES = r"""
- name: Configure the firewall
  bosun.platform.ufw_firewall:
    rules: "{{ ['198.51.100.0/24'] | bosun.platform.ufw_wanted_rules(22, [{'port': 443, 'comment': 'https'}]) }}"
    default_policies:
      incoming: deny
      routed: deny
      outgoing: allow
"""

RETURN = r"""
added:
  description: The comments of the rules added (or that would be).
  returned: always
  type: list
  elements: str
  sample: ["bosun:1a2b3c4d https"]
deleted:
  description: The rules deleted (or that would be), as ufw lists them, with their comments.
  returned: always
  type: list
  elements: dict
  sample: [{spec: "allow from 203.0.113.0/24 to any port 22 proto tcp", comment: "bosun:5e6f7a8b admin ssh"}]
defaults:
  description: The default policies changed, per direction, as C([before, after]).
  returned: always
  type: dict
  sample: {incoming: [allow, deny]}
enabled:
  description: Whether the firewall was (or would be) enabled by this call.
  returned: always
  type: bool
diff:
  description: The firewall's state, the role's rules (by comment) and the default policies, before and after.
  returned: when run with C(--diff)
  type: dict
  contains:
    before:
      description: C(status), one C(default <direction>) line per direction, then the role's rules' comments.
      type: str
    after:
      description: The same, after the call (or as it would be, in check mode).
      type: str
"""

from ansible_collections.bosun.platform.plugins.module_utils import _firewall
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module

DEFAULTS_FILE = "/etc/default/ufw"


def argument_spec():
    policy = dict(type="str", choices=["allow", "deny", "reject"])
    return dict(
        rules=dict(
            type="list",
            elements="dict",
            required=True,
            options={
                "rule": dict(type="str", default="allow", choices=["allow", "deny", "reject", "limit"]),
                "port": dict(type="str", required=True),
                "proto": dict(type="str", default="tcp", choices=["tcp", "udp"]),
                "from": dict(type="str", default="any"),
                "comment": dict(type="str", required=True),
                "label": dict(type="str"),
            },
        ),
        delete_stale=dict(type="bool", default=True),
        default_policies=dict(
            type="dict", default={}, options=dict(incoming=dict(policy), routed=dict(policy), outgoing=dict(policy))
        ),
        enabled=dict(type="bool", default=True),
    )


def _run(module, argv, what):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        raise ModuleFailure("ufw: %s failed (rc %d): %s" % (what, rc, (err or out).strip()[-500:]))
    return out


def _state_text(comments, defaults, active):
    lines = ["status: %s" % ("active" if active else "inactive")]
    lines += ["default %s: %s" % (d, defaults.get(d)) for d in _firewall.DIRECTIONS]
    return "\n".join(lines + comments) + "\n"


def work(module):
    p = module.params
    if module.get_bin_path("ufw") is None:
        raise ModuleFailure("ufw: the ufw command is not installed on this host")
    added_lines = _run(module, ["ufw", "show", "added"], "reading the rules").splitlines()
    active = _firewall.parse_active(_run(module, ["ufw", "status"], "reading the status"))
    try:
        with open(DEFAULTS_FILE, encoding="utf-8") as f:
            current = _firewall.parse_defaults(f.read())
    except OSError as exc:
        raise ModuleFailure("ufw: cannot read %s: %s" % (DEFAULTS_FILE, exc.strerror)) from None
    wanted = [dict(r, port=str(r["port"])) for r in p["rules"]]
    todo = _firewall.plan(wanted, added_lines, current, p["default_policies"], active, p["enabled"], p["delete_stale"])
    changed = bool(todo["add"] or todo["delete"] or todo["defaults"] or todo["enable"])
    if changed and not module.check_mode:
        for rule in todo["add"]:
            _run(module, _firewall.add_argv(rule), "adding %s" % rule["comment"])
        for stale in todo["delete"]:
            _run(module, _firewall.delete_argv(stale), "deleting %s" % stale["comment"])
        for direction, (_before, after) in todo["defaults"].items():
            _run(module, ["ufw", "default", after, direction], "setting the default %s policy" % direction)
        if todo["enable"]:
            _run(module, ["ufw", "--force", "enable"], "enabling the firewall")
    before_comments = _firewall.owned_comments(added_lines)
    deleted = set(s["comment"] for s in todo["delete"])
    after_comments = sorted([c for c in before_comments if c not in deleted] + [r["comment"] for r in todo["add"]])
    after_defaults = dict(current, **dict((d, a) for d, (_b, a) in todo["defaults"].items()))
    result = dict(
        changed=changed,
        added=[r["comment"] for r in todo["add"]],
        deleted=todo["delete"],
        defaults=dict((d, list(v)) for d, v in todo["defaults"].items()),
        enabled=todo["enable"],
    )
    if module._diff:
        result["diff"] = dict(
            before=_state_text(before_comments, current, active),
            after=_state_text(after_comments, after_defaults, active or todo["enable"]),
            before_header="ufw",
            after_header="ufw",
        )
    return result


def main():
    run_module(argument_spec(), work, supports_check_mode=True)


if __name__ == "__main__":
    main()
