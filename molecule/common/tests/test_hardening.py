"""Hardening of a host converged with bosun.platform.common, measured by the auditors
operators already trust (Lynis, ssh-audit) and by behaviour: Ansible still works over the
hardened sshd, and the firewall owns its rules.

The tests run in file order; the last one narrows the SSH range of both hosts.
"""

import json
import os
import socket
import subprocess
import tempfile
import threading

import pytest

SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.join(SCENARIO, "..", ".."))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
KEY = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "admin_ed25519")
LYNIS_PROFILE = os.path.join(PROJECT, "molecule", "shared", "lynis", "bosun.prf")
# molecule.yml: the hosts' fixed addresses on their network; the test machine is .1.
HOSTS = {"bosun-common-debian12": "172.30.215.130", "bosun-common-debian13": "172.30.215.131"}
GATEWAY = "172.30.215.1"
# The narrowed admin range holds the test machine (.1) and neither host (.130, .131).
NARROW_RANGE = "172.30.215.0/25"
# ssh-audit from Debian 13 (3.3) knows OpenSSH 9.2 and 10.0; Debian 12's (2.5, 2021) reports
# the servers' Terrapin countermeasure (kex-strict-*) and newer algorithms as unknown.
AUDITOR = "bosun-common-debian13"
LYNIS_MIN_INDEX = 80
SSH_OPTS = [
    "-i",
    KEY,
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=10",
]


def _docker(container, *argv, timeout=600, stdin=None):
    return subprocess.run(
        ["docker", "exec", "-i", container, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ssh(address, command, *extra):
    return subprocess.run(
        ["ssh", *SSH_OPTS, *extra, "opsadmin@%s" % address, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _reachable(container, address, port=22, timeout=3):
    """Whether `container` can open a TCP connection to address:port."""
    probe = "import socket; socket.create_connection((%r, %d), %d).close()" % (address, port, timeout)
    return _docker(container, "python3", "-c", probe, timeout=30).returncode == 0


def _apt_install(container, *packages):
    proc = _docker(
        container,
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s >/dev/null" % " ".join(packages),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def _parallel(function, items):
    results, threads = {}, []
    for item in items:
        thread = threading.Thread(target=lambda i=item: results.__setitem__(i, function(i)))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=900)
    return results


# --- sshd ---------------------------------------------------------------------------


def test_sshd_settings_lynis_and_ssh_audit_ask_for(host):
    settings = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
    expected = {
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "x11forwarding": "no",
        "permittunnel": "no",
        "gatewayports": "no",
        "clientalivecountmax": "2",
        "loglevel": "VERBOSE",
        "maxauthtries": "3",
        "maxsessions": "2",
        "tcpkeepalive": "no",
        "compression": "no",
        "banner": "/etc/issue.net",
        "hostkeyalgorithms": "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519",
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert "diffie-hellman-group-exchange" not in settings["kexalgorithms"]
    assert "nistp" not in settings["kexalgorithms"] + settings["hostkeyalgorithms"]
    assert host.file("/etc/ssh/sshd_config").mode == 0o600


def test_only_an_ed25519_host_key_is_offered(host):
    address = HOSTS[host.backend.get_hostname()]
    scan = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "rsa,ecdsa,ed25519", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert [line.split()[1] for line in scan.stdout.splitlines() if line and not line.startswith("#")] == [
        "ssh-ed25519"
    ]
    for key_type in ("ecdsa", "rsa", "dsa"):
        assert not host.file("/etc/ssh/ssh_host_%s_key" % key_type).exists


def test_legal_banner_before_login(host):
    proc = _ssh(HOSTS[host.backend.get_hostname()], "true")
    assert proc.returncode == 0, proc.stderr
    assert "Authorized access only" in proc.stderr
    assert host.file("/etc/issue").contains("Authorized access only")


def test_login_session_limits(host):
    """What an admin's SSH session gets: no core files, a private TMPDIR, the umask."""
    proc = _ssh(HOSTS[host.backend.get_hostname()], "ulimit -Hc; echo $TMPDIR; sudo -n sh -c umask")
    assert proc.returncode == 0, proc.stderr
    core, tmpdir, root_umask = proc.stdout.split()
    assert core == "0"
    assert tmpdir == "/tmp/user/%d" % host.user("opsadmin").uid
    login_defs = host.file("/etc/login.defs")
    assert login_defs.contains("^UMASK\t027$")
    assert login_defs.contains("^SHA_CRYPT_MIN_ROUNDS\t65536$")
    if host.system_info.release.startswith("13"):
        # Debian 13 applies login.defs' UMASK to every PAM session (pam_umask).
        assert root_umask == "0027"
    assert "Storage=none" in host.check_output("systemd-analyze cat-config systemd/coredump.conf")


def test_uncommon_protocols_and_removable_storage_blacklisted(host):
    conf = host.file("/etc/modprobe.d/bosun-blacklist.conf")
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert conf.contains("^install %s /bin/true$" % module)


def test_process_accounting_records_commands(host):
    assert host.service("acct").is_running
    host.run("/bin/sleep 0")
    assert "sleep" in host.check_output("lastcomm --command sleep")


def test_needrestart_and_package_audit_tools(host):
    assert host.file("/etc/needrestart/conf.d/50-bosun.conf").contains("restart} = 'l'")
    assert host.run("needrestart -r l -b").rc == 0
    assert host.file("/etc/default/debsums").contains("^CRON_CHECK=weekly$")
    assert host.run("debsums -s openssh-server").rc == 0
    assert host.run("apt-show-versions openssh-server").rc == 0


def test_fail2ban_configured_in_jail_local(host):
    assert host.file("/etc/fail2ban/jail.local").contains("^backend = systemd$")
    assert not host.file("/etc/fail2ban/jail.d/bosun.local").exists


def test_no_security_update_left_after_provisioning(host):
    simulation = host.check_output("LC_ALL=C apt-get --simulate upgrade")
    due = [line for line in simulation.splitlines() if line.startswith("Inst ") and "-security" in line]
    assert due == []


# --- Ansible over the hardened sshd -------------------------------------------------


def test_ansible_over_ssh_with_controlpersist_and_an_operator_shell(tmp_path):
    """MaxSessions 2: Ansible (pipelining and not, ControlPersist) works while an operator's
    shell holds a second session on the same master connection."""
    control = tempfile.mkdtemp(prefix="bosun-cm-", dir="/tmp")  # short: socket paths are limited
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {name: {"ansible_host": address} for name, address in HOSTS.items()},
                    "vars": {
                        "ansible_user": "opsadmin",
                        "ansible_ssh_private_key_file": KEY,
                        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                    },
                }
            }
        )
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        """
- hosts: all
  become: true
  gather_facts: true
  tasks:
    - ansible.builtin.command: id -un
      changed_when: false
    - ansible.builtin.copy: {content: "bosun\\n", dest: /root/bosun-ssh-probe, mode: "0600"}
    - ansible.builtin.command: sleep 2
      async: 30
      poll: 1
      changed_when: false
    - ansible.builtin.command: id -un
      become_user: nobody
      changed_when: false
      tags: [unprivileged]  # needs pipelining (or setfacl) to hand the module to nobody
    - ansible.builtin.file: {path: /root/bosun-ssh-probe, state: absent}
"""
    )
    ssh_args = "-o ControlMaster=auto -o ControlPersist=60s -o ControlPath=%s/%%h" % control
    env = dict(os.environ, ANSIBLE_SSH_ARGS=ssh_args, ANSIBLE_HOST_KEY_CHECKING="False")
    env.pop("ANSIBLE_CONNECTION", None)
    shells = []
    try:
        # The first run opens the master connections; an operator's shell then joins each.
        for pipelining in ("True", "False"):
            env["ANSIBLE_PIPELINING"] = pipelining
            skip = [] if pipelining == "True" else ["--skip-tags", "unprivileged"]
            proc = subprocess.run(
                ["ansible-playbook", "-i", str(inventory), "-c", "ssh", *skip, str(playbook)],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
                check=False,
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
            if not shells:
                for address in HOSTS.values():
                    shells.append(
                        subprocess.Popen(
                            ["ssh", *SSH_OPTS, "-o", "ControlPath=%s/%s" % (control, address)]
                            + ["-o", "ControlMaster=no", "opsadmin@%s" % address, "sleep 60"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
        assert all(shell.poll() is None for shell in shells), "the operator's shells were cut"
    finally:
        for shell in shells:
            shell.kill()
            shell.wait(timeout=30)
        for address in HOSTS.values():
            subprocess.run(
                ["ssh", "-o", "ControlPath=%s/%s" % (control, address), "-O", "exit", address],
                capture_output=True,
                timeout=30,
                check=False,
            )


# --- The auditors -------------------------------------------------------------------


def _lynis(container):
    _apt_install(container, "lynis")
    with open(LYNIS_PROFILE, encoding="utf-8") as handle:
        profile = handle.read()
    # /root, not /tmp: /tmp is a tmpfs of its own on Debian 13.
    _docker(container, "sh", "-c", "cat > /root/bosun.prf", stdin=profile)
    proc = _docker(container, "lynis", "audit", "system", "--quick", "--no-colors", "--profile", "/root/bosun.prf")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = _docker(container, "cat", "/var/log/lynis-report.dat").stdout.splitlines()
    values = {}
    for line in report:
        key, _sep, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return {
        "version": values["lynis_version"][0],
        "index": int(values["hardening_index"][0]),
        "tests": int(values["lynis_tests_done"][0]),
        "warnings": values.get("warning[]", []),
        "suggestions": values.get("suggestion[]", []),
    }


def test_lynis_hardening_index_and_no_warning():
    results = _parallel(_lynis, sorted(HOSTS))
    for name in sorted(HOSTS):
        result = results[name]
        print(
            "\nLynis %s on %s: hardening index %d (target %d), %d tests, %d warnings, %d suggestions"
            % (
                result["version"],
                name,
                result["index"],
                LYNIS_MIN_INDEX,
                result["tests"],
                len(result["warnings"]),
                len(result["suggestions"]),
            )
        )
        for line in result["warnings"]:
            print("  warning    " + line)
        for line in result["suggestions"]:
            print("  suggestion " + line)
    assert {name: results[name]["warnings"] for name in HOSTS} == {name: [] for name in HOSTS}
    assert all(results[name]["index"] >= LYNIS_MIN_INDEX for name in HOSTS), {
        name: results[name]["index"] for name in HOSTS
    }


def _ssh_audit(auditor, address):
    """ssh-audit's text report (its JSON differs between versions): version, server, compression, findings."""
    proc = _docker(auditor, "ssh-audit", "--no-colors", address, timeout=120)
    findings = {"fail": [], "warn": []}
    software = compression = ""
    for line in proc.stdout.splitlines():
        text = line.strip()
        if text.startswith("(gen) software:"):
            software = text.split(":", 1)[1].strip()
        elif text.startswith("(gen) compression:"):
            compression = text.split(":", 1)[1].strip()
        elif "[fail]" in text or text.startswith("(cve)"):
            findings["fail"].append(text)
        elif "[warn]" in text:
            findings["warn"].append(text)
    assert software, "ssh-audit did not reach %s: %s" % (address, proc.stdout[-1000:] + proc.stderr[-1000:])
    version = _docker(auditor, "dpkg-query", "-W", "-f", "${Version}", "ssh-audit").stdout
    return version, software, compression, findings


def test_ssh_audit_no_fail_no_warn():
    for name in HOSTS:
        _apt_install(name, "ssh-audit")
    failures = {}
    for auditor in sorted(HOSTS):
        for name, address in sorted(HOSTS.items()):
            version, software, compression, findings = _ssh_audit(auditor, address)
            print(
                "\nssh-audit %s (from %s) on %s (%s): %d fail, %d warn, compression %s"
                % (version, auditor, name, software, len(findings["fail"]), len(findings["warn"]), compression)
            )
            for level in ("fail", "warn"):
                for finding in findings[level]:
                    print("  %s %s" % (level, finding))
            if auditor == AUDITOR and (compression != "disabled" or findings["fail"] or findings["warn"]):
                failures[name] = dict(findings, compression=compression)
    assert failures == {}


# --- Firewall: the role owns its rules (last: it narrows the SSH range) -------------


def _added_rules(container):
    return _docker(container, "ufw", "show", "added").stdout


def test_narrowed_admin_range_removes_the_rule_for_every_address():
    """Converged with [any], then with a narrower range: SSH from every address is gone and
    port 22 is refused to an address outside the range, open to one inside it."""
    for name in HOSTS:
        assert "ufw allow 22/tcp comment" in _added_rules(name), "converge.yml opens SSH to any first"
    for name, address in HOSTS.items():
        other = next(n for n in HOSTS if n != name)
        assert _reachable(other, address), "%s should reach %s:22 before narrowing" % (other, name)

    proc = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            INVENTORY,
            os.path.join(SCENARIO, "converge.yml"),
            "--extra-vars",
            json.dumps({"common_firewall_admin_cidrs": [NARROW_RANGE]}),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "lets SSH in from every address" not in proc.stdout

    for name, address in HOSTS.items():
        added = _added_rules(name)
        assert "ufw allow 22/tcp" not in added, added
        assert "ufw allow from %s to any port 22 proto tcp comment 'bosun:" % NARROW_RANGE in added, added
        status = _docker(name, "ufw", "status").stdout
        assert not [line for line in status.splitlines() if line.startswith("22/tcp") and "Anywhere" in line], status
        # Outside the range: the other host. Inside it: the test machine.
        other = next(n for n in HOSTS if n != name)
        assert not _reachable(other, address), "%s still reaches %s:22" % (other, name)
        socket.create_connection((address, 22), timeout=5).close()
        # The tier's rules stayed.
        assert "port 5432 proto tcp comment 'bosun:" in added, added


@pytest.fixture(scope="module", autouse=True)
def _key_exists():
    assert os.path.isfile(KEY), "converge.yml makes the admin key in " + KEY
