"""roles/control's pins agree with the collection, and the collections the maintenance
playbook needs on a control host are the collection's declared dependencies.

The control role installs what the jobs run with on the control host: ansible-core and
jinja2 pinned (within requirements.txt's ranges), this collection at galaxy.yml's version,
and the dependency collections the maintenance playbook uses (from tarballs offline, or
resolved by ansible-galaxy from galaxy.yml). A pin outside the ranges, a version behind
galaxy.yml or a playbook using a collection galaxy.yml does not declare would only show on
the control host.
"""

import os
import re

import yaml
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FQCN = re.compile(r"\A(?:group/)?([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+\Z")
# Filters and tests by their full name inside Jinja: `| ns.name.filter`, `is ns.name.test`
JINJA_FQCN = re.compile(
    r"(?:\||\bis\s+(?:not\s+)?|map\(\s*['\"]|select\(\s*['\"])\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"
)
OWN = {"ansible.builtin", "bosun.platform"}


def load(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


def defaults():
    return load("roles", "control", "defaults", "main.yml")


def requirements_txt():
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        lines = [line.split("#")[0].strip() for line in f]
    return {Requirement(line).name.lower(): Requirement(line) for line in lines if line}


def pins():
    found = {}
    for entry in defaults()["control_ansible_requirements"]:
        req = Requirement(entry)
        (spec,) = req.specifier
        assert spec.operator == "==", "%s is not pinned to one version" % entry
        found[req.name.lower()] = spec.version
    return found


def test_the_pinned_ansible_core_and_jinja2_are_within_requirements_txt():
    ranges = requirements_txt()
    pinned = pins()
    assert set(pinned) == {"ansible-core", "jinja2"}
    for name, version in pinned.items():
        assert ranges[name].specifier.contains(version), "%s==%s is outside requirements.txt's %s" % (
            name,
            version,
            ranges[name].specifier,
        )


def test_the_pinned_collection_version_is_galaxy_yml_version():
    assert defaults()["control_collection_version"] == load("galaxy.yml")["version"]


def collections_used(node, found):
    """Collections named by module keys, module_defaults groups and Jinja filters/tests."""
    if isinstance(node, dict):
        for key, value in node.items():
            match = FQCN.match(str(key))
            if match:
                found.add(match.group(1))
            collections_used(value, found)
    elif isinstance(node, list):
        for item in node:
            collections_used(item, found)
    elif isinstance(node, str):
        found.update(JINJA_FQCN.findall(node))
    return found


def imported_files(node, base, found):
    """Task files a playbook imports or includes (static paths only, and the entry points
    tasks_from of this collection's roles), recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            role_entry = None
            if key.endswith(("import_role", "include_role")) and isinstance(value, dict):
                name = str(value.get("name", ""))
                if name.startswith("bosun.platform."):
                    role = name.rsplit(".", 1)[1]
                    role_entry = os.path.join(ROOT, "roles", role, "tasks", "%s.yml" % value.get("tasks_from", "main"))
            if role_entry or (
                key.endswith(("import_tasks", "include_tasks")) and isinstance(value, str) and "{{" not in value
            ):
                path = role_entry or os.path.normpath(os.path.join(base, value))
                if path not in found:
                    found.add(path)
                    imported_files(load(path), os.path.dirname(path), found)
            else:
                imported_files(value, base, found)
    elif isinstance(node, list):
        for item in node:
            imported_files(item, base, found)
    return found


def test_the_collections_the_maintenance_jobs_use_are_declared_dependencies():
    playbook = os.path.join(ROOT, "playbooks", "maintenance.yml")
    files = {playbook} | imported_files(load(playbook), os.path.dirname(playbook), set())
    used = set()
    for path in files:
        collections_used(load(path), used)
    declared = set(load("galaxy.yml")["dependencies"])
    assert used - OWN <= declared, "used but not in galaxy.yml's dependencies: %s" % sorted(used - OWN - declared)


def test_the_scan_sees_module_keys_groups_and_filters():
    tasks = [
        {"name": "a", "ansible.posix.acl": {"path": "/x"}},
        {"module_defaults": {"group/community.postgresql.all": {}}},
        {"debug": {"msg": "{{ x | community.general.dict_kv('a') }} {{ y is ansible.utils.ipaddr }}"}},
        {"set_fact": {"z": "{{ item.item.item }}"}},
    ]
    expected = {"ansible.posix", "community.postgresql", "community.general", "ansible.utils"}
    assert collections_used(tasks, set()) == expected


# --- The role's input checks, run by ansible-playbook on localhost (checks only) -----------

# One play per case (vars given literally), each with the role's checks in a block whose
# rescue records the refusal; the last play writes what each case gave.
CASE_PLAY = """
- name: Case {name}
  hosts: localhost
  connection: local
  gather_facts: false
  vars: {vars}
  tasks:
    - name: One case
      block:
        - name: The role's checks
          ansible.builtin.include_role:
            name: bosun.platform.control
            tasks_from: preflight
        - name: Passed
          ansible.builtin.set_fact:
            outcomes: "{{{{ outcomes | default({{}}) | combine({{'{name}': 'ok'}}) }}}}"
      rescue:
        - name: Refused
          ansible.builtin.set_fact:
            outcomes: "{{{{ outcomes | default({{}}) | combine({{'{name}': ansible_failed_result.msg}}) }}}}"
"""

WRITE_PLAY = """
- name: Write the outcomes
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Write them
      ansible.builtin.copy:
        content: "{{{{ outcomes | to_json }}}}"
        dest: {out}
        mode: "0600"
"""

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
PLACEHOLDER_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nreplace-me\n-----END OPENSSH PRIVATE KEY-----\n"


def run_preflight(tmp_path, cases):
    import json
    import subprocess
    import sys

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from support.collection import collections_path

    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text("all: {}\n")
    tarball = tmp_path / "bosun-platform-0.1.0.tar.gz"
    tarball.write_bytes(b"")
    base = {
        "control_inventory_source": str(tmp_path / "inventory"),
        "control_vault_password": "s3cret vault pass",
        "control_ssh_private_key": KEY,
        "control_collection_source": str(tarball),
    }
    out = tmp_path / "outcomes.json"
    plays = [CASE_PLAY.format(name=name, vars=json.dumps(dict(base, **override))) for name, override in cases.items()]
    (tmp_path / "play.yml").write_text("".join(plays) + WRITE_PLAY.format(out=json.dumps(str(out))))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_ROLES_PATH=os.path.join(ROOT, "roles"))
    env.pop("ANSIBLE_CONFIG", None)
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    interpreter = "ansible_python_interpreter=" + sys.executable
    run = subprocess.run(
        [playbook, "-i", "localhost,", "-e", interpreter, str(tmp_path / "play.yml")],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "s3cret" not in run.stdout + run.stderr
    return json.loads(out.read_text())


def test_the_input_checks_refuse_placeholders_ranges_and_mismatched_tarballs(tmp_path):
    outcomes = run_preflight(
        tmp_path,
        {
            "good": {},
            "vault_placeholder": {"control_vault_password": "change-me"},
            "key_placeholder": {"control_ssh_private_key": PLACEHOLDER_KEY},
            "no_key": {"control_ssh_private_key": ""},
            "not_a_private_key": {"control_ssh_private_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@laptop"},
            "range": {"control_ansible_requirements": ["ansible-core>=2.17,<2.20", "jinja2==3.1.6"]},
            "no_core": {"control_ansible_requirements": ["jinja2==3.1.6"]},
            "other_version": {"control_collection_version": "0.2.0"},
            "missing_inventory": {"control_inventory_source": str(tmp_path / "nowhere")},
            "bad_dependency": {"control_collection_dependencies": [str(tmp_path / "inventory" / "hosts.yml")]},
        },
    )
    assert outcomes.pop("good") == "ok"
    assert "control_vault_password" in outcomes["vault_placeholder"]
    assert "placeholder" in outcomes["key_placeholder"]
    assert "control_ssh_private_key" in outcomes["key_placeholder"]
    assert "replace-me" not in outcomes["key_placeholder"]
    assert "control_ssh_private_key" in outcomes["no_key"]
    assert "control_ssh_private_key" in outcomes["not_a_private_key"]
    assert "ansible-core>=2.17,<2.20" in outcomes["range"]
    assert "ansible-core" in outcomes["no_core"]
    assert "bosun-platform-0.2.0.tar.gz" in outcomes["other_version"]
    assert "control_inventory_source" in outcomes["missing_inventory"]
    assert "hosts.yml" in outcomes["bad_dependency"]
    assert all(value != "ok" for value in outcomes.values()), outcomes
