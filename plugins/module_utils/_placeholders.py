# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placeholders left from an example inventory: which values still hold one.

The role preflights refuse to run with them (a ``change-me`` password would become the
real password; an example SSH key would lock the admins out once root login is off).
Only the paths of the offending values are returned (``postgresql_roles[shop].password``),
never the values: they are secrets.

A value is a placeholder when it contains ``change me`` or ``replace me`` as words, in any
case and joined by nothing, ``-``, ``_``, ``.``, ``/`` or a blank (``change-me``,
``CHANGEME``, ``https://hooks.slack.com/services/change/me``). An SSH public key (any value
under an ``ssh_keys``/``ssh_key`` field, or every value when asked) must be a real one:
a key type followed by the base64 of a key blob of that type (the example's
``ssh-ed25519 AAAA...replace-me alice@laptop`` is not).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import re
import struct
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"(?<![a-z])(?:change|replace)[-_./ ]?me(?![a-z])", re.I)

# Fields whose values are SSH public keys.
SSH_KEY_FIELDS = ("ssh_keys", "ssh_key")


def is_placeholder(value):
    """Whether the string ``value`` holds a placeholder word."""
    return bool(PLACEHOLDER.search(value))


def _key_blob_type(text):
    """The key type named inside a base64 key blob, or None when it is not one."""
    if "." in text or not re.match(r"\A[A-Za-z0-9+/]+={0,2}\Z", text):
        return None
    try:
        blob = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    # the type name, then at least one more field (the key itself)
    if length == 0 or len(blob) < 4 + length + 4:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def is_ssh_public_key(value):
    """Whether ``value`` is an authorized_keys line with a real key.

    Options may come first (``from="10.0.0.1",no-pty ssh-ed25519 AAAA...``) and a comment
    last; the key is a type followed by the base64 of a blob that names the same type.
    """
    words = value.split()
    for i, word in enumerate(words[:-1]):
        blob = words[i + 1]
        if PLACEHOLDER.search(blob):
            return False
        if _key_blob_type(blob) == word:
            return True
    return False


def _child(path, key):
    key = str(key)
    if re.match(r"\A[A-Za-z_][A-Za-z0-9_]*\Z", key):
        return "%s.%s" % (path, key)
    return "%s[%s]" % (path, key)


def _item(path, index, item):
    """``name[alice]`` for an item with a name, ``name[2]`` otherwise."""
    if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item.get("name"):
        return "%s[%s]" % (path, item["name"])
    return "%s[%d]" % (path, index)


def find(value, name, ssh_keys=False):
    """The paths under ``name`` of the placeholders in ``value``, in order.

    ``value`` may be a string, a mapping or a list, nested. Strings under an ``ssh_keys``
    or ``ssh_key`` field (every string, with ``ssh_keys=True``) must be real SSH public keys.
    Other scalars (numbers, booleans, None) are never placeholders.
    """
    found = []
    _walk(value, name, ssh_keys, found)
    return found


def _walk(value, path, ssh_keys, found):
    if isinstance(value, str):
        bad = not is_ssh_public_key(value) if ssh_keys else is_placeholder(value)
        if bad:
            found.append(path)
    elif isinstance(value, Mapping):
        for key, child in value.items():
            _walk(child, _child(path, key), ssh_keys or key in SSH_KEY_FIELDS, found)
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            _walk(child, _item(path, index, child), ssh_keys, found)
