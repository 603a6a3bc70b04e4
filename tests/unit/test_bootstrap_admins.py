"""The admins the bootstrap creates and the ones whose login and sudo it proves."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import bootstrap_admins as ba

USERS = [
    {"name": "carol", "state": "present"},
    {"name": "alice"},
    {"name": "dave", "state": "absent"},
    {"name": "bob"},
]


def test_present_admins_stateless_first_then_present():
    assert ba.bootstrap_admins(USERS) == ["alice", "bob", "carol"]


@pytest.mark.parametrize("users", [[], None, [{"name": "dave", "state": "absent"}]])
def test_no_present_admins(users):
    assert ba.bootstrap_admins(users) == []


def test_admins_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        ba.bootstrap_admins("alice")


@pytest.mark.parametrize(
    "login_users, remote_user, expected",
    [
        (None, "", ["alice", "bob"]),
        (None, "bob", ["bob"]),
        (None, "root", ["alice", "bob"]),
        (["alice"], "bob", ["alice"]),
        ([], "bob", []),
        (["mallory"], "", ["mallory"]),
    ],
)
def test_login_users(login_users, remote_user, expected):
    assert ba.bootstrap_login_users(["alice", "bob"], login_users, remote_user) == expected


def test_login_users_default_to_every_admin():
    assert ba.bootstrap_login_users(["alice", "bob"]) == ["alice", "bob"]
