# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH host keys a host offers (module ssh_host_keys): which to remove and which to make.

A host offers the key types it is given (ed25519, rsa, ecdsa); the files of the other types
OpenSSH knows (ecdsa, dsa, rsa) are removed, an RSA key shorter than asked for is removed and
made again, and a missing key is made with ssh-keygen.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

# The host key types this module manages, and the ones it may be asked to offer.
KNOWN_TYPES = ("ed25519", "rsa", "ecdsa", "dsa")
OFFERED_TYPES = ("ed25519", "rsa", "ecdsa")


def key_path(directory, key_type):
    return os.path.join(directory, "ssh_host_%s_key" % key_type)


def rsa_bits(fingerprint_line):
    """The bits of ``ssh-keygen -l`` output (``4096 SHA256:... (RSA)``), or None."""
    first = (fingerprint_line or "").split(None, 1)
    try:
        return int(first[0]) if first else None
    except ValueError:
        return None


def plan(types, directory, existing, rsa_key_bits, wanted_rsa_bits):
    """``{remove: [paths], create: [types], short_rsa: bits or None}``.

    ``existing`` is the set of file names present in ``directory``; ``rsa_key_bits`` the
    measured size of the RSA key (None when it could not be measured or there is none).
    """
    unknown = [t for t in types if t not in OFFERED_TYPES]
    if unknown:
        raise ValueError(
            "host key types %s are not offered; choose from %s" % (", ".join(unknown), ", ".join(OFFERED_TYPES))
        )
    remove, create, short = [], [], None
    for key_type in KNOWN_TYPES:
        names = ["ssh_host_%s_key" % key_type, "ssh_host_%s_key.pub" % key_type]
        present = [n for n in names if n in existing]
        if key_type not in types:
            remove += [os.path.join(directory, n) for n in present]
            continue
        too_short = key_type == "rsa" and rsa_key_bits is not None and rsa_key_bits < wanted_rsa_bits
        if too_short:
            short = rsa_key_bits
            remove += [os.path.join(directory, n) for n in present]
        if too_short or names[0] not in existing:
            create.append(key_type)
    return dict(remove=remove, create=create, short_rsa=short)


def keygen_argv(key_type, directory, wanted_rsa_bits):
    argv = ["ssh-keygen", "-q", "-N", "", "-C", "", "-t", key_type, "-f", key_path(directory, key_type)]
    if key_type == "rsa":
        argv += ["-b", str(wanted_rsa_bits)]
    return argv
