"""bosun.platform.control: Ansible and the collection at their pins, the jobs' files root-only,
their inventory reaching hosts on private addresses with the vault opened, the timer."""

import json
import os

import yaml

ANSIBLE = "/opt/bosun/ansible/bin"
JOBS_ENV = "ANSIBLE_CONFIG=/etc/bosun/ansible.cfg"


def role_defaults():
    """The role's defaults: the converge keeps their pins."""
    path = os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", "control", "defaults", "main.yml")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


DEFAULTS = role_defaults()
VERSION = DEFAULTS["control_collection_version"]
CORE = [r.split("==")[1] for r in DEFAULTS["control_ansible_requirements"] if r.startswith("ansible-core==")][0]


def test_ansible_runs_from_the_virtualenv_at_its_pin(host):
    run = host.run("%s/ansible-playbook --version" % ANSIBLE)
    assert run.rc == 0, run.stderr
    assert "core %s]" % CORE in run.stdout.splitlines()[0]
    assert "/opt/bosun/ansible/bin/python" in run.stdout


def test_the_collection_is_installed_at_the_pinned_version(host):
    run = host.run("%s %s/ansible-galaxy collection list bosun.platform --format json" % (JOBS_ENV, ANSIBLE))
    assert run.rc == 0, run.stderr
    found = json.loads(run.stdout)
    assert found == {"/opt/bosun/collections/ansible_collections": {"bosun.platform": {"version": VERSION}}}


def test_inventory_vault_password_and_key_are_root_only(host):
    inventory = host.file("/etc/bosun/inventory")
    assert (inventory.user, inventory.group, inventory.mode) == ("root", "root", 0o700)
    listing = host.run("find /etc/bosun/inventory -printf '%y %m %u %P\\n'").stdout.split("\n")
    entries = [line.split(" ", 3) for line in listing if line]
    assert {e[3] for e in entries} == {
        "",
        "hosts.yml",
        "group_vars",
        "group_vars/all",
        "group_vars/all/main.yml",
        "group_vars/all/vault.yml",
        "zz-bosun-control.yml",
    }, "stale.yml was to be removed: %s" % entries
    for kind, mode, user, path in entries:
        assert user == "root", path
        assert mode == ("700" if kind == "d" else "600"), (path, mode)
    # copied as it is: still encrypted
    assert host.file("/etc/bosun/inventory/group_vars/all/vault.yml").content_string.startswith("$ANSIBLE_VAULT;")
    for path in ("/etc/bosun/vault-password", "/root/.ssh/bosun_jobs", "/root/.ssh/bosun_known_hosts"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), path
    assert host.file("/root/.ssh").mode == 0o700
    key = host.run("ssh-keygen -y -P '' -f /root/.ssh/bosun_jobs")
    assert key.rc == 0 and key.stdout.startswith("ssh-ed25519 "), key.stderr


def test_the_jobs_inventory_uses_private_addresses_and_opens_the_vault(host):
    run = host.run("%s %s/ansible-inventory --list" % (JOBS_ENV, ANSIBLE))
    assert run.rc == 0, run.stderr
    hostvars = json.loads(run.stdout)["_meta"]["hostvars"]
    assert hostvars["db1"]["ansible_host"] == "10.110.0.31"
    assert hostvars["mon1"]["ansible_host"] == "10.110.0.51"
    assert hostvars["edge1"]["ansible_host"] == "198.51.100.7"  # no private address: unchanged
    user = hostvars["db1"]["ansible_user"]
    assert user in ("bosun", {"__ansible_unsafe": "bosun"})
    assert hostvars["db1"]["vault_bosun_fixture_secret"] == "opened-with-the-vault-password"


def test_known_hosts_holds_the_host_keys_from_the_facts(host):
    keys = [
        host.file("/etc/ssh/ssh_host_%s_key.pub" % kind).content_string
        for kind in ("ed25519", "ecdsa", "rsa")
        if host.file("/etc/ssh/ssh_host_%s_key.pub" % kind).exists
    ]
    assert keys
    text = host.file("/root/.ssh/bosun_known_hosts").content_string
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["bosun-control-debian12 %s" % " ".join(key.split()[:2]) for key in keys]
    cfg = host.file("/etc/bosun/ansible.cfg").content_string
    assert "UserKnownHostsFile=/root/.ssh/bosun_known_hosts -o StrictHostKeyChecking=yes" in cfg
    assert "private_key_file = /root/.ssh/bosun_jobs" in cfg


def test_the_dependencies_are_installed_next_to_it(host):
    run = host.run("%s %s/ansible-galaxy collection list --format json" % (JOBS_ENV, ANSIBLE))
    found = json.loads(run.stdout)["/opt/bosun/collections/ansible_collections"]
    assert set(found) == {"bosun.platform", "ansible.posix", "community.postgresql"}


def test_the_jobs_ansible_loads_the_maintenance_playbook(host):
    run = host.run("cd / && %s %s/ansible-playbook --syntax-check bosun.platform.maintenance" % (JOBS_ENV, ANSIBLE))
    assert run.rc == 0, run.stdout + run.stderr


def test_the_maintenance_timer_runs_the_virtualenv_ansible(host):
    timer = "bosun-maintenance-host.timer"
    assert host.run("systemctl is-enabled %s" % timer).stdout.strip() == "enabled"
    assert host.run("systemctl is-active %s" % timer).stdout.strip() == "active"
    config = json.loads(host.file("/etc/bosun/maintenance/config.json").content_string)
    assert config["ansible_playbook"] == "/opt/bosun/ansible/bin/ansible-playbook"
    assert config["inventory"] == "/etc/bosun/inventory"
    assert config["collections_path"] == "/opt/bosun/collections"
    assert config["ansible_config"] == "/etc/bosun/ansible.cfg"
    assert config["vault_password_file"] == "/etc/bosun/vault-password"
