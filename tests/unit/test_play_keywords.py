"""Every bosun_* variable a playbook reads has a specification.

The ones read in play keywords (hosts, serial, gather_facts, become, the bootstrap's
ansible_user) are specified in playbooks/vars/play_keywords.yml, with the default each
playbook writes inline; every other one a playbook reads is an option of a role's argument
spec (by its own name, or as the variable a role option's default reads).
"""

import glob
import os
import re

import pytest
import yaml

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
SPEC_FILE = os.path.join(ROOT, "playbooks", "vars", "play_keywords.yml")
PLAYBOOKS = sorted(glob.glob(os.path.join(ROOT, "playbooks", "*.yml")))
KEYWORDS = ("hosts", "serial", "gather_facts", "become")
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "roles")
NAME = re.compile(r"\bbosun_[a-z0-9_]*[a-z0-9]\b")
INLINE_DEFAULT = re.compile(r"\b(bosun_[a-z0-9_]+) \| default\(([^()]*(?:\([^()]*\))?[^()]*)\)")


def _spec():
    with open(SPEC_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)["bosun_play_keywords"]


def _plays():
    for path in PLAYBOOKS:
        with open(path, encoding="utf-8") as f:
            for play in yaml.safe_load(f) or []:
                yield os.path.basename(path), play


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _keyword_reads():
    """{variable: {(playbook, keyword)}} for the bosun_* names read by play keywords."""
    reads = {}
    for playbook, play in _plays():
        for keyword in KEYWORDS:
            for text in _strings(play.get(keyword)):
                for name in NAME.findall(text):
                    reads.setdefault(name, set()).add((playbook, keyword))
        for text in _strings((play.get("vars") or {}).get("ansible_user")):
            for name in NAME.findall(text):
                reads.setdefault(name, set()).add((playbook, "ansible_user"))
    return reads


def _other_reads():
    """The bosun_* names read anywhere else in the plays (not in comments: YAML drops them)."""
    names = set()
    for _playbook, play in _plays():
        rest = dict((key, value) for key, value in play.items() if key not in KEYWORDS)
        rest["vars"] = dict((k, v) for k, v in (play.get("vars") or {}).items() if k != "ansible_user")
        for text in _strings(rest):
            names.update(NAME.findall(text))
        for key in rest["vars"]:
            names.update(NAME.findall(key))
        for key in _keys(play.get("tasks")):
            names.update(NAME.findall(key))
    return names


def _keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def _role_options():
    """Role options, and the bosun_* variables their defaults read."""
    options = set()
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")):
        with open(path, encoding="utf-8") as f:
            for entry in (yaml.safe_load(f).get("argument_specs") or {}).values():
                options.update((entry.get("options") or {}).keys())
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "defaults", "main.yml")):
        with open(path, encoding="utf-8") as f:
            options.update(NAME.findall(f.read()))
    return options


def test_every_play_keyword_variable_is_specified_where_it_is_read():
    spec, reads = _spec(), _keyword_reads()
    assert sorted(reads) == sorted(spec)
    for name, where in reads.items():
        assert sorted({place[0] for place in where}) == sorted(spec[name]["playbooks"]), name
        assert {place[1] for place in where} == {spec[name]["keyword"]}, name


@pytest.mark.parametrize("name", sorted(_spec()))
def test_each_entry_is_complete(name):
    entry = _spec()[name]
    assert entry["description"].endswith(".") and entry["type"] in ("str", "bool", "int", "raw")
    assert ("default" in entry) != ("default_from" in entry), name
    if "default_from" in entry:
        assert entry["default_from"] in _spec()


def test_the_playbooks_write_the_specified_defaults():
    spec, seen = _spec(), set()
    for path in PLAYBOOKS:
        with open(path, encoding="utf-8") as f:
            text = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("#"))
        for name, given in INLINE_DEFAULT.findall(text):
            if name not in spec:
                continue
            seen.add(name)
            entry = spec[name]
            if "default_from" in entry:
                assert given.startswith(entry["default_from"] + " | default("), (path, name, given)
            else:
                assert yaml.safe_load(given) == entry["default"], (path, name, given)
    assert seen == set(spec)


def test_every_other_variable_a_playbook_reads_is_a_role_option():
    unknown = sorted(_other_reads() - _role_options() - set(_spec()))
    assert unknown == []
