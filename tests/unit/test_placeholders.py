"""Placeholder refusal (module_utils/_placeholders.py, filter bosun.platform.placeholders)."""

import base64
import struct

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import placeholders as flt
from ansible_collections.bosun.platform.plugins.module_utils import _placeholders


def _key(key_type="ssh-ed25519", comment="alice@laptop"):
    """A well-formed public key line (the blob: type name, then a 32-byte key)."""
    name = key_type.encode()
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + bytes(range(32))
    return "%s %s %s" % (key_type, base64.b64encode(blob).decode(), comment)


REAL_KEY = _key()


@pytest.mark.parametrize(
    "value",
    [
        "change-me",
        "changeme",
        "CHANGEME",
        "Change_Me",
        "replace-me",
        "replaceme",
        "  change-me  ",
        "change-me-before-use",
        "https://hooks.slack.com/services/change/me",
        "https://hooks.slack.com/services/T000/replace-me",
    ],
)
def test_placeholder_words_are_found(value):
    assert _placeholders.is_placeholder(value)
    assert _placeholders.find(value, "vault_x") == ["vault_x"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "s3cret'$ with spaces",
        "exchange-medal",  # "change" inside a word, "me" inside a word
        "replacement",
        "https://hooks.slack.com/services/T0001/B0002/xYz",
        "http://127.0.0.1:8765/services/T000/B000/secret-hook-token",
    ],
)
def test_real_values_are_not_placeholders(value):
    assert not _placeholders.is_placeholder(value)
    assert _placeholders.find(value, "vault_x") == []


@pytest.mark.parametrize(
    "key",
    [
        "ssh-ed25519 AAAA...replace-me alice@laptop",  # the example inventory's
        "ssh-ed25519 AAAA...replace-me bosun@mon1",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop",  # shortened in a doc
        "ssh-ed25519 replace-me",
        "replace-me",
        "ssh-ed25519",
        "",
        "ssh-ed25519 bm90IGEga2V5 alice@laptop",  # base64, but not a key blob
        "ssh-rsa %s alice@laptop" % REAL_KEY.split()[1],  # blob of another type
        "ssh-ed25519 %s!! alice" % REAL_KEY.split()[1],  # not base64
    ],
)
def test_keys_that_are_not_real_public_keys_are_refused(key):
    assert not _placeholders.is_ssh_public_key(key)


@pytest.mark.parametrize(
    "key",
    [
        REAL_KEY,
        _key(comment=""),
        _key("ssh-rsa"),
        _key("sk-ssh-ed25519@openssh.com"),
        'from="10.0.0.1",no-pty ' + REAL_KEY,
        # a comment is not the key: it may say anything
        _key(comment="replace-me-later"),
    ],
)
def test_real_public_keys_pass(key):
    assert _placeholders.is_ssh_public_key(key)


def test_admin_users_name_the_user_and_key_never_the_value():
    users = [
        {"name": "alice", "ssh_keys": ["ssh-ed25519 AAAA...replace-me alice@laptop", REAL_KEY]},
        {"name": "bob", "ssh_keys": [REAL_KEY]},
        {"name": "carol", "ssh_keys": ["replace-me"], "state": "absent"},
    ]
    assert _placeholders.find(users, "common_admin_users") == [
        "common_admin_users[alice].ssh_keys[0]",
        "common_admin_users[carol].ssh_keys[0]",
    ]


def test_roles_name_the_role_and_field():
    roles = [
        {"name": "shop", "password": "change-me"},
        {"name": "monitor", "password": "xK3-real"},
        {"password": "CHANGEME"},
    ]
    assert _placeholders.find(roles, "postgresql_roles") == [
        "postgresql_roles[shop].password",
        "postgresql_roles[2].password",
    ]


def test_nested_dicts_and_non_strings():
    value = {"a": {"b": "changeme", "n": 3, "t": True, "none": None}, "list": [1, "ok"]}
    assert _placeholders.find(value, "x") == ["x.a.b"]


def test_filter_returns_paths_and_never_values():
    secret = "changeme"
    out = flt.placeholders({"redis_admin_password": secret, "redis_app_password": "s3cret"})
    assert out == ["redis_admin_password"]
    assert all(secret not in p for p in out)


def test_filter_checks_a_list_of_keys_as_keys():
    assert flt.placeholders(["ssh-ed25519 AAAA...replace-me a@b", REAL_KEY], "keys", ssh_keys=True) == ["keys[0]"]
    assert flt.placeholders("not a key", "key", ssh_keys=True) == ["key"]


def test_filter_refuses_a_bad_name():
    with pytest.raises(AnsibleFilterError):
        flt.placeholders("x", 3)
