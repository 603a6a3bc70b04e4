"""Behaviour of a host converged with bosun.platform.common."""

import json
import os
import socket
import subprocess
import time

import pytest

KEY = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "admin_ed25519")


def _address(host):
    return host.interface("eth0").addresses[0]


def _ssh(host, user, *extra, key=KEY):
    return subprocess.run(
        [
            "ssh",
            "-i",
            key,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            *extra,
            "%s@%s" % (user, _address(host)),
            "id -un && sudo -n true && echo sudo-ok",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_admin_logs_in_with_key_and_sudo(host):
    proc = _ssh(host, "opsadmin")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["opsadmin", "sudo-ok"]


def test_sshd_refuses_password_authentication(host):
    proc = _ssh(
        host,
        "opsadmin",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
    )
    assert proc.returncode == 255
    # The server offers public keys only.
    assert "Permission denied (publickey)" in proc.stderr


def test_sshd_refuses_root_even_with_a_valid_key(host):
    with open(KEY + ".pub", encoding="utf-8") as f:
        pub = f.read().strip()
    host.run("install -d -m 700 /root/.ssh && echo '%s' > /root/.ssh/authorized_keys" % pub)
    try:
        proc = _ssh(host, "root")
    finally:
        host.run("rm -f /root/.ssh/authorized_keys")
    assert proc.returncode == 255
    assert "Permission denied" in proc.stderr


def test_sshd_effective_settings(host):
    settings = host.check_output("sshd -T")
    assert "passwordauthentication no" in settings
    assert "permitrootlogin no" in settings
    assert "ciphers chacha20-poly1305@openssh.com" in settings
    assert "cbc" not in settings.split("ciphers ")[1].split("\n")[0]


def test_firewall_default_deny(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "deny (incoming)" in status
    assert "5432/tcp" in status and "10.0.0.0/8" in status


def test_firewall_blocks_unlisted_port(host):
    """A listener on a port the firewall does not allow is unreachable from outside."""
    host.run("systemd-run --unit bosun-probe-8099 python3 -m http.server 8099 --bind 0.0.0.0")
    try:
        deadline = time.monotonic() + 15
        while host.run("ss -ltn 'sport = :8099'").stdout.count("LISTEN") == 0:
            assert time.monotonic() < deadline, "probe listener did not start"
            time.sleep(0.3)
        with pytest.raises(OSError):
            socket.create_connection((_address(host), 8099), timeout=3).close()
        # and the allowed SSH port answers from the same place
        socket.create_connection((_address(host), 22), timeout=5).close()
    finally:
        host.run("systemctl stop bosun-probe-8099")


def test_fail2ban_sshd_jail_active_on_journal(host):
    status = host.check_output("fail2ban-client status sshd")
    assert "Journal matches" in status
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled


def test_time_zone_is_utc(host):
    assert host.check_output("date +%Z") == "UTC"
    assert host.file("/etc/localtime").linked_to.endswith("Etc/UTC")


def test_journald_limit(host):
    limit = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=200M" in limit


def test_unattended_security_upgrades(host):
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert "-security" in host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    # dry run: the configuration parses and unattended-upgrades accepts it
    assert host.run("unattended-upgrade --dry-run").rc == 0


def test_sysctl_file_written(host):
    conf = host.file("/etc/sysctl.d/60-bosun.conf")
    assert conf.contains("net.ipv4.tcp_syncookies = 1")


def test_health_check_reads_real_systemd_units(host):
    """bosun.platform.health_check's systemd check against the host's own systemd."""
    args = {
        "fail_on": "never",
        "checks": [
            {"name": "sshd", "type": "systemd", "systemd": {"unit": "ssh"}},
            {"name": "fail2ban", "type": "systemd", "systemd": {"unit": "fail2ban"}},
            {"name": "missing", "type": "systemd", "systemd": {"unit": "bosun-no-such-unit.service"}},
        ],
    }
    result = host.ansible("bosun.platform.health_check", json.dumps(args), check=False)
    statuses = {check["name"]: check["status"] for check in result["checks"]}
    assert statuses == {"sshd": "ok", "fail2ban": "ok", "missing": "crit"}
    assert result["status"] == "crit"
