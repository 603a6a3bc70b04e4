"""Module ssh_host_keys: its plan, and the module against the real ssh-keygen in a directory."""

import os
import subprocess

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _ssh_host_keys

from tests.support.modules import run_module


def _names(*types):
    return set(n for t in types for n in ("ssh_host_%s_key" % t, "ssh_host_%s_key.pub" % t))


def test_a_host_offering_what_is_asked_needs_nothing():
    todo = _ssh_host_keys.plan(["ed25519", "rsa"], "/etc/ssh", _names("ed25519", "rsa") | {"sshd_config"}, 4096, 4096)
    assert todo == {"remove": [], "create": [], "short_rsa": None}


def test_other_types_are_removed_and_missing_ones_made():
    todo = _ssh_host_keys.plan(["ed25519"], "/k", _names("rsa", "ecdsa") | {"ssh_host_dsa_key"}, 3072, 4096)
    assert todo["remove"] == [
        "/k/ssh_host_rsa_key",
        "/k/ssh_host_rsa_key.pub",
        "/k/ssh_host_ecdsa_key",
        "/k/ssh_host_ecdsa_key.pub",
        "/k/ssh_host_dsa_key",
    ]
    assert todo["create"] == ["ed25519"] and todo["short_rsa"] is None  # an RSA key not offered is not "short"


def test_a_short_rsa_key_is_replaced():
    todo = _ssh_host_keys.plan(["ed25519", "rsa"], "/k", _names("ed25519", "rsa"), 2048, 4096)
    assert todo == {"remove": ["/k/ssh_host_rsa_key", "/k/ssh_host_rsa_key.pub"], "create": ["rsa"], "short_rsa": 2048}


def test_an_unknown_type_is_refused_by_name():
    with pytest.raises(ValueError, match="host key types dsa are not offered"):
        _ssh_host_keys.plan(["dsa"], "/k", set(), None, 4096)


@pytest.mark.parametrize("line, bits", [("4096 SHA256:abc no comment (RSA)", 4096), ("", None), ("x y", None)])
def test_the_rsa_size_is_read_from_ssh_keygen(line, bits):
    assert _ssh_host_keys.rsa_bits(line) == bits


def _keygen(directory, key_type, bits=None):
    argv = [
        "ssh-keygen",
        "-q",
        "-N",
        "",
        "-C",
        "",
        "-t",
        key_type,
        "-f",
        str(directory / ("ssh_host_%s_key" % key_type)),
    ]
    subprocess.run(argv + (["-b", str(bits)] if bits else []), check=True)


def test_the_module_converges_a_directory_and_then_changes_nothing(tmp_path):
    _keygen(tmp_path, "ecdsa")
    _keygen(tmp_path, "rsa", 1024)
    args = dict(types=["ed25519", "rsa"], rsa_bits=2048, directory=str(tmp_path))
    predicted = run_module("ssh_host_keys", args, check_mode=True)
    assert predicted["changed"] and predicted["created"] == ["ed25519", "rsa"] and predicted["short_rsa_bits"] == 1024
    assert sorted(os.listdir(tmp_path)) == sorted(_names("ecdsa", "rsa")), "check mode changed the directory"
    done = run_module("ssh_host_keys", args)
    assert done["changed"] and done["removed"] == predicted["removed"] and done["created"] == ["ed25519", "rsa"]
    assert sorted(os.listdir(tmp_path)) == sorted(_names("ed25519", "rsa"))
    measured = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(tmp_path / "ssh_host_rsa_key.pub")], capture_output=True, text=True, check=True
    ).stdout
    assert measured.startswith("2048 ")
    again = run_module("ssh_host_keys", args)
    assert again["changed"] is False and again["removed"] == [] and again["created"] == []
    assert run_module("ssh_host_keys", args, check_mode=True)["changed"] is False
