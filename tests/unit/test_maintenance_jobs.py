"""The maintenance jobs as the playbooks define them, checked without running them.

- the catalogue's known tags (roles/maintenance_schedule) are exactly the jobs of
  playbooks/maintenance.yml (each the entry point of the same name of the role
  bosun.platform.maintenance), and the example inventory's catalogue validates against them;
- every database task of the backup, restore and PITR playbooks and of the database
  maintenance jobs runs as the postgres system user (become), so peer authentication over the
  socket works with no login set and the 0700 backup directories are writable, whatever user
  Ansible connects as; the platform lock and root-owned files stay with root.
"""

import os

import pytest
import yaml
from ansible_collections.bosun.platform.plugins.filter import maintenance_catalogue as mc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOKS = os.path.join(ROOT, "playbooks")
ROLE_INCLUDES = ("ansible.builtin.import_role", "ansible.builtin.include_role")


def load(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


def maintenance_job_tags():
    tags = []
    for play in load("playbooks", "maintenance.yml"):
        tags.extend(t for t in play.get("tags", []) if t != "always")
    return tags


def test_each_job_is_the_role_entry_point_of_its_tag():
    for play in load("playbooks", "maintenance.yml")[1:]:
        (tag,) = play["tags"]
        (task,) = play["tasks"]
        assert task["ansible.builtin.include_role"] == {"name": "bosun.platform.maintenance", "tasks_from": tag}
        assert os.path.exists(os.path.join(ROOT, "roles", "maintenance", "tasks", tag + ".yml"))


def known_tags():
    return load("roles", "maintenance_schedule", "vars", "main.yml")["__maintenance_schedule_known_tags"]


def test_the_catalogue_knows_exactly_the_jobs_of_the_playbook():
    assert sorted(known_tags()) == sorted(maintenance_job_tags())
    assert {"basebackup", "pitr_drill"} <= set(known_tags())


def test_the_example_catalogue_validates_and_schedules_base_backups_and_pitr_drills():
    jobs = mc.maintenance_catalogue(
        load("inventories", "example", "group_vars", "all", "main.yml")["bosun_maintenance_jobs"],
        known_tags=known_tags(),
    )
    by_tag = {t: j for j in jobs for t in j["tags"]}
    assert {"backup", "basebackup", "restore_drill", "pitr_drill"} <= set(by_tag)
    base, dump = by_tag["basebackup"], by_tag["backup"]
    # The base backup runs before the nightly dump's window opens and its own window ends by then.
    assert base["schedule"]["on_calendar"] < dump["schedule"]["on_calendar"] or base["schedule"]["kind"] == "weekly"
    assert base["window"] and base["window"].split("-")[1] <= dump["window"].split("-")[0]
    assert by_tag["pitr_drill"]["schedule"]["kind"] == "monthly"


# --- who each task runs as --------------------------------------------------------------------

DB_ACTIONS = (
    "bosun.platform.postgresql_dump",
    "bosun.platform.postgresql_restore",
    "bosun.platform.postgresql_maintenance",
    "bosun.platform.postgresql_basebackup",
    "community.postgresql.",
)
ROOT_ACTIONS = ("bosun.platform.platform_lock", "ansible.posix.acl", "ansible.builtin.systemd_service")
TASK_KEYS = ("block", "rescue", "always")


def action_of(task):
    for key in task:
        if "." in key and key.count(".") >= 2:
            return key
    return None


def walk(tasks, inherited, here):
    """(task, action, effective become and become_user, file) for every task; imports and the
    entry points (tasks_from) of this collection's roles followed."""
    for task in tasks or []:
        ctx = dict(inherited)
        for key in ("become", "become_user"):
            if key in task:
                ctx[key] = task[key]
        if any(k in task for k in TASK_KEYS):
            for key in TASK_KEYS:
                yield from walk(task.get(key), ctx, here)
            continue
        action = action_of(task)
        if action in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            path = os.path.join(os.path.dirname(here), task[action])
            if not os.path.exists(path):
                path = os.path.join(PLAYBOOKS, task[action])
            with open(path, encoding="utf-8") as f:
                yield from walk(yaml.safe_load(f), ctx, path)
            continue
        if action in ROLE_INCLUDES and str(task[action].get("name", "")).startswith("bosun.platform."):
            role = task[action]["name"].rsplit(".", 1)[1]
            path = os.path.join(ROOT, "roles", role, "tasks", "%s.yml" % task[action].get("tasks_from", "main"))
            with open(path, encoding="utf-8") as f:
                yield from walk(yaml.safe_load(f), ctx, path)
            continue
        yield task, action, ctx, here


def resolved(value, play_vars):
    """A become_user given as "{{ var }}" of the play's vars or of the maintenance or backup
    role's defaults, resolved one level."""
    text = str(value)
    name = text.strip("{} ")
    if text.startswith("{{") and name in play_vars:
        return str(play_vars[name])
    return text


def plays_tasks(name):
    path = os.path.join(PLAYBOOKS, name)
    for play in load("playbooks", name):
        ctx = {k: play[k] for k in ("become", "become_user") if k in play}
        for task, action, found, where in walk(play.get("tasks"), ctx, path):
            eff = dict(found)
            if "become_user" in eff:
                known = dict(
                    load("roles", "maintenance", "defaults", "main.yml"),
                    **load("roles", "backup", "defaults", "main.yml"),
                    **(play.get("vars") or {}),
                )
                eff["become_user"] = resolved(eff["become_user"], known)
            yield play, task, action, eff, where


def runs_as_postgres(eff):
    become = str(eff.get("become", False))
    return become not in ("False", "false", "no") and "postgres" in str(eff.get("become_user", ""))


OWN_PLAYBOOKS = ["backup.yml", "restore.yml", "restore_drill.yml", "pitr_drill.yml", "restore_pitr.yml"]
DB_PLAYBOOKS = OWN_PLAYBOOKS + ["maintenance.yml"]


@pytest.mark.parametrize("name", DB_PLAYBOOKS)
def test_database_tasks_run_as_the_postgres_system_user(name):
    seen = 0
    for play, task, action, eff, _where in plays_tasks(name):
        if action and action.startswith(DB_ACTIONS):
            seen += 1
            assert runs_as_postgres(eff), "%s (%s): %r runs as %r" % (name, play["name"], task.get("name"), eff)
    assert seen > 0


@pytest.mark.parametrize("name", DB_PLAYBOOKS)
def test_the_lock_and_root_owned_files_stay_with_root(name):
    for _play, task, action, eff, _where in plays_tasks(name):
        if action in ROOT_ACTIONS or (
            action in ("ansible.builtin.copy", "ansible.builtin.file") and not task.get("delegate_to")
        ):
            assert "postgres" not in str(eff.get("become_user", "")), "%s: %r runs as %r" % (
                name,
                task.get("name"),
                eff,
            )


@pytest.mark.parametrize("name", OWN_PLAYBOOKS)
def test_the_playbooks_become_root_for_their_own_files(name):
    for play in load("playbooks", name):
        assert "become" in play and "true" in str(play["become"]).lower(), name


def test_the_jobs_of_maintenance_yml_include_basebackup_and_pitr_drill():
    actions = {}
    for play, _task, action, _eff, _where in plays_tasks("maintenance.yml"):
        actions.setdefault(tuple(play.get("tags", [])), set()).add(action)
    assert "bosun.platform.postgresql_basebackup" in actions[("basebackup",)]
    assert "community.postgresql.postgresql_query" in actions[("pitr_drill",)]
