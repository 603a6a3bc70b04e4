"""One meaning per option name across the collection's modules.

A name means one thing wherever a module of the collection takes it, so that a playbook's
``module_defaults`` for an action group, or one playbook calling several modules, never gives
one value two meanings. A renamed option keeps its former name as a deprecated alias, listed
under ``aliases`` in its documentation, until ``_module.REMOVED_IN``.
"""

import importlib
import os

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.bosun.platform.plugins.module_utils import _module
from ansible_collections.bosun.platform.plugins.module_utils._backup import basebackup

from tests.support.modules import run_module as run_real_module

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
MODULES_DIR = os.path.join(ROOT, "plugins", "modules")
MODULES = sorted(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith(".py") and name != "__init__.py")
PACKAGE = "ansible_collections.bosun.platform.plugins"

# (module, option, former name): renamed because the former name meant something else in
# another module of the same action group or of the same playbook.
RENAMES = [
    ("postgresql_dump", "dir_lock_timeout", "lock_timeout"),
    ("postgresql_basebackup", "dir_lock_timeout", "lock_timeout"),
    ("postgresql_restore", "replace_existing", "force"),
    ("platform_lock", "break_lock", "force"),
    ("redis_flush", "allow_delete_all", "force"),
    ("elasticsearch_maintenance", "allow_delete_all", "force"),
    ("postgresql_basebackup", "take_backup", "backup"),
    ("redis_flush", "whole_db", "db"),
    ("platform_lock", "taken_by", "owner"),
    ("platform_lock", "job_timeout", "timeout"),
    ("platform_lock", "wait_for_lock", "wait"),
]

# The names that had several meanings, and the only modules that now take each (deprecated
# aliases not counted). A new module that wants one of these names means the same thing.
OWNERS = {
    # act although nothing makes it due (as community.crypto's acme_certificate force)
    "force": {"acme_renewal"},
    # PostgreSQL's lock_timeout setting, per statement
    "lock_timeout": {"postgresql_maintenance"},
    # seconds to wait for the lock of a backup directory
    "dir_lock_timeout": {"postgresql_dump", "postgresql_basebackup"},
    # replace the target database when it exists
    "replace_existing": {"postgresql_restore"},
    # break (or remove) the platform lock another job holds
    "break_lock": {"platform_lock"},
    # lift the guard against deleting everything a pattern, database or server holds
    "allow_delete_all": {"redis_flush", "elasticsearch_maintenance"},
    # how a new backup is checked before it is published: list, full, none
    "verify": {"postgresql_dump", "postgresql_basebackup"},
    # which backup to restore (latest, a label's newest, an id or a path)
    "backup": {"postgresql_restore"},
    # take a base backup (false: retention only)
    "take_backup": {"postgresql_basebackup"},
    # a PostgreSQL database's name
    "db": {"postgresql_dump", "postgresql_maintenance", "postgresql_restore"},
    # FLUSHDB of the selected Redis database
    "whole_db": {"redis_flush"},
    # the owner role of a PostgreSQL database (as community.postgresql's postgresql_db owner)
    "owner": {"postgresql_restore"},
    # who takes the platform lock
    "taken_by": {"platform_lock"},
    # one request's timeout, in seconds
    "timeout": {"elasticsearch_maintenance"},
    # the longest a job holding the platform lock runs, in seconds
    "job_timeout": {"platform_lock"},
    # wait for the drained server's connections to end (nginx_upstream)
    "wait": {"nginx_upstream"},
    # seconds to wait for a held platform lock
    "wait_for_lock": {"platform_lock"},
}

# Names that two modules still use with two meanings: none are left; a new one fails the
# test below until it is renamed.
DIFFERENT_MEANINGS = set()

# The same meaning in another representation (a path is a str, seconds are int or float).
SAME_KIND = {"path": "str", "float": "number", "int": "number"}

# Options a module requires, for validating a spec with one option given.
REQUIRED = {
    "postgresql_dump": {"backup_dir": "/b", "db": "app"},
    "postgresql_basebackup": {"backup_dir": "/b"},
    "elasticsearch_maintenance": {"action": "shard_report"},
}


def spec_of(name):
    return importlib.import_module("%s.modules.%s" % (PACKAGE, name)).argument_spec()


def _fragment(ref):
    parts = ref.split(".")
    if parts[:2] == ["bosun", "platform"]:
        package, parts = PACKAGE + ".doc_fragments", parts[2:]
    else:
        assert parts[:2] == ["ansible", "builtin"], ref
        package, parts = "ansible.plugins.doc_fragments", parts[2:]
    cls = importlib.import_module("%s.%s" % (package, parts[0])).ModuleDocFragment
    return yaml.safe_load(getattr(cls, parts[1].upper() if len(parts) > 1 else "DOCUMENTATION"))


def documented_options(name):
    """The options of a module's documentation, its doc fragments' included."""
    doc = yaml.safe_load(importlib.import_module("%s.modules.%s" % (PACKAGE, name)).DOCUMENTATION)
    options = {}
    for ref in doc.get("extends_documentation_fragment") or []:
        options.update(_fragment(ref).get("options") or {})
    options.update(doc.get("options") or {})
    return options


def _owners():
    owners = {}
    for name in MODULES:
        for option in spec_of(name):
            owners.setdefault(option, set()).add(name)
    return owners


def _value(spec):
    return {"bool": True, "int": 7, "float": 7.0}.get(spec.get("type", "str"), "x")


@pytest.mark.parametrize("module, option, former", RENAMES)
def test_a_renamed_option_keeps_its_former_name_as_a_deprecated_alias(module, option, former):
    spec = spec_of(module)
    assert former not in spec
    assert spec[option]["aliases"] == [former]
    assert spec[option]["deprecated_aliases"] == [
        dict(name=former, version=_module.REMOVED_IN, collection_name="bosun.platform")
    ]
    assert documented_options(module)[option]["aliases"] == [former]


@pytest.mark.parametrize("module, option, former", RENAMES)
def test_the_former_name_sets_the_option_and_warns_that_it_is_deprecated(module, option, former):
    spec = spec_of(module)
    value = _value(spec[option])
    result = ArgumentSpecValidator(spec).validate(dict(REQUIRED.get(module, {}), **{former: value}))
    assert not result.error_messages, result.error_messages
    assert result.validated_parameters[option] == value
    assert [(d["version"], d["collection_name"]) for d in result._deprecations] == [
        (_module.REMOVED_IN, "bosun.platform")
    ]
    assert "'%s'" % former in result._deprecations[0]["msg"]


@pytest.mark.parametrize("name", MODULES)
def test_aliases_types_and_choices_are_documented_as_the_spec_says(name):
    documented = documented_options(name)
    for option, spec in spec_of(name).items():
        doc = documented[option]
        assert (doc.get("aliases") or []) == (spec.get("aliases") or []), (name, option)
        assert doc.get("type", "str") == spec.get("type", "str"), (name, option)
        assert sorted(doc.get("choices") or []) == sorted(spec.get("choices") or []), (name, option)


def test_deprecated_names_go_in_a_later_major_release():
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        version = tuple(int(part) for part in yaml.safe_load(f)["version"].split("."))
    removed_in = tuple(int(part) for part in _module.REMOVED_IN.split("."))
    assert removed_in[1:] == (0, 0) and removed_in > version


@pytest.mark.parametrize("option", sorted(OWNERS))
def test_each_of_these_names_has_its_one_meaning(option):
    assert _owners().get(option, set()) == OWNERS[option]


def test_a_name_several_modules_take_has_one_kind_of_value():
    kinds = {}
    for name in MODULES:
        for option, spec in spec_of(name).items():
            kind = spec.get("type", "str")
            kinds.setdefault(option, {})[name] = SAME_KIND.get(kind, kind)
    differing = sorted(option for option, by in kinds.items() if len(set(by.values())) > 1)
    assert set(differing) <= DIFFERENT_MEANINGS, [(o, kinds[o]) for o in differing]


def test_verify_is_a_level_of_checking_in_both_backup_modules():
    dump, base = spec_of("postgresql_dump")["verify"], spec_of("postgresql_basebackup")["verify"]
    assert dump["type"] == base["type"] == "str"
    assert "full" in dump["choices"] and "full" in base["choices"]
    # the former boolean's spellings, and only those, are accepted besides the levels
    assert base["choices"] == basebackup.VERIFY_CHOICES + ["true", "false"]
    assert basebackup.VERIFY_FORMER == {"true": "full", "false": "none"}


class FakeModule:
    def __init__(self, **params):
        self.params = params
        self.deprecations = []

    def deprecate(self, msg, version=None, collection_name=None):
        self.deprecations.append((msg, version, collection_name))


@pytest.mark.parametrize("former, value", [("true", "full"), ("false", "none")])
def test_a_former_value_is_replaced_with_a_deprecation_naming_the_new_one(former, value):
    module = FakeModule(verify=former, other="true")
    _module.replace_deprecated_values(module, dict(verify=basebackup.VERIFY_FORMER))
    assert module.params == dict(verify=value, other="true")
    assert module.deprecations == [
        ("verify=%s is deprecated: write verify=%s (the same behaviour)" % (former, value), "2.0.0", "bosun.platform")
    ]


def test_a_current_value_is_left_alone():
    module = FakeModule(verify="none")
    _module.replace_deprecated_values(module, dict(verify=basebackup.VERIFY_FORMER))
    assert module.params == dict(verify="none") and module.deprecations == []
    assert _module.REMOVED_IN == "2.0.0"  # the literal replace_deprecated_values passes


def test_the_basebackup_module_maps_a_boolean_verify_and_says_so(tmp_path):
    """Through Ansible's own argument handling: YAML's true reaches the work as full."""
    result = run_real_module(
        "postgresql_basebackup",
        dict(backup_dir=str(tmp_path / "base"), verify=True, login_host="127.0.0.1", login_port=1, connect_timeout=1),
        check_mode=True,
    )
    # ansible-core 2.19 nests the message in an event; earlier releases do not
    messages = [d.get("msg") or d.get("event", {}).get("msg") for d in result.get("deprecations", [])]
    assert "verify=true is deprecated: write verify=full (the same behaviour)" in messages, result


def test_a_module_run_with_a_former_name_behaves_as_before_and_warns(tmp_path):
    path = str(tmp_path / "platform.lock")
    taken = run_real_module("platform_lock", dict(path=path, owner="a", job="first"))
    assert taken["changed"] is True, taken
    refused = run_real_module("platform_lock", dict(path=path, state="released"))
    assert refused["failed"] and "break_lock=true" in refused["msg"], refused
    released = run_real_module("platform_lock", dict(path=path, state="released", force=True))
    assert released["changed"] is True and not os.path.exists(path), released
    messages = [d.get("msg") or d.get("event", {}).get("msg") for d in released.get("deprecations", [])]
    assert any("'force'" in m for m in messages), released


def test_basebackup_refuses_a_verify_it_does_not_know():
    params = dict((k, v.get("default")) for k, v in spec_of("postgresql_basebackup").items())
    params.update(backup_dir="/nonexistent", verify=True)
    with pytest.raises(basebackup.BackupError, match="verify must be one of full, none"):
        basebackup.validate(params)
