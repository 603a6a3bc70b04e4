#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_host_keys
short_description: Offer exactly the SSH host key types asked for, in one call
version_added: 0.1.0
author: bosun.platform maintainers (@bosun-platform)
description:
  - Removes the host keys of the types not offered (of C(ecdsa), C(dsa) and C(rsa)), removes an
    RSA host key shorter than O(rsa_bits) and makes it again, and makes every missing key of
    O(types) with C(ssh-keygen) (no passphrase, no comment).
  - One module call replaces a task per key file; on a converged host it lists one directory
    and measures the RSA key, if one is offered.
  - Reload sshd when it reports a change (the common role's handler does).
extends_documentation_fragment:
  - bosun.platform.attributes
options:
  types:
    description: The host key types to offer.
    type: list
    elements: str
    required: true
    choices: [ed25519, rsa, ecdsa]
  rsa_bits:
    description: The size of an RSA host key; a shorter one is replaced.
    type: int
    default: 4096
  directory:
    description: Where the host keys are.
    type: path
    default: /etc/ssh
attributes:
  check_mode:
    support: full
    details: Check mode lists and measures the keys as a real run does and reports what it would remove and make.
  diff_mode:
    support: none
    details: No diff; RV(removed) and RV(created) say what changed.
  platform:
    support: full
    platforms: posix
requirements:
  - ssh-keygen (openssh-client) on the managed host; in check mode without it, every missing
    offered key is reported as to be made.
"""

EXAMPLES = r"""
- name: Offer ed25519 and a 4096-bit RSA key only
  bosun.platform.ssh_host_keys:
    types: [ed25519, rsa]
    rsa_bits: 4096
  notify: Reload sshd
"""

RETURN = r"""
removed:
  description: The key files removed (or that would be).
  returned: always
  type: list
  elements: path
  sample: [/etc/ssh/ssh_host_ecdsa_key, /etc/ssh/ssh_host_ecdsa_key.pub]
created:
  description: The key types made (or that would be).
  returned: always
  type: list
  elements: str
  sample: [ed25519]
short_rsa_bits:
  description: The size of the RSA key replaced for being shorter than O(rsa_bits); null when none was.
  returned: always
  type: int
"""

import os

from ansible_collections.bosun.platform.plugins.module_utils import _ssh_host_keys
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module


def argument_spec():
    return dict(
        types=dict(type="list", elements="str", required=True, choices=list(_ssh_host_keys.OFFERED_TYPES)),
        rsa_bits=dict(type="int", default=4096),
        directory=dict(type="path", default="/etc/ssh"),
    )


def work(module):
    p = module.params
    directory = p["directory"]
    keygen = module.get_bin_path("ssh-keygen")
    if keygen is None and not module.check_mode:
        raise ModuleFailure("ssh_host_keys: ssh-keygen is not installed on this host (package openssh-client)")
    try:
        existing = set(os.listdir(directory))
    except FileNotFoundError:
        existing = set()
    except OSError as exc:
        raise ModuleFailure("ssh_host_keys: cannot list %s: %s" % (directory, exc.strerror)) from None
    measured = None
    public = _ssh_host_keys.key_path(directory, "rsa") + ".pub"
    if "rsa" in p["types"] and keygen and os.path.exists(public):
        rc, out, _err = module.run_command([keygen, "-l", "-f", public])
        measured = _ssh_host_keys.rsa_bits(out) if rc == 0 else None
    try:
        todo = _ssh_host_keys.plan(p["types"], directory, existing, measured, p["rsa_bits"])
    except ValueError as exc:
        raise ModuleFailure("ssh_host_keys: %s" % exc) from None
    changed = bool(todo["remove"] or todo["create"])
    if changed and not module.check_mode:
        for path in todo["remove"]:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ModuleFailure("ssh_host_keys: cannot remove %s: %s" % (path, exc.strerror)) from None
        for key_type in todo["create"]:
            argv = _ssh_host_keys.keygen_argv(key_type, directory, p["rsa_bits"])
            rc, out, err = module.run_command([keygen] + argv[1:])
            if rc != 0:
                raise ModuleFailure(
                    "ssh_host_keys: making the %s host key failed (rc %d): %s" % (key_type, rc, (err or out).strip())
                )
    return dict(changed=changed, removed=todo["remove"], created=todo["create"], short_rsa_bits=todo["short_rsa"])


def main():
    run_module(argument_spec(), work, supports_check_mode=True)


if __name__ == "__main__":
    main()
