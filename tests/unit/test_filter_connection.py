"""One connection per service (filter bosun.platform.connection): the dict bosun_postgres /
bosun_redis when set, else the older variables, as every postgres and redis play passes it
to its action group's module_defaults."""

import os
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter.connection import connection
from ansible_collections.bosun.platform.plugins.module_utils._elasticsearch import (
    CONNECTION_OPTIONS as ELASTICSEARCH_ARGS,
)
from ansible_collections.bosun.platform.plugins.module_utils._postgres import POSTGRES_COMMON_ARGS
from ansible_collections.bosun.platform.plugins.module_utils._redis import REDIS_COMMON_ARGS

from tests.support.collection import collections_path
from tests.support.templating import render_all

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "s3cr'et $pw with spaces"
OLD_OMIT = "__omit_place_holder__0123456789abcdef"  # ansible-core before 2.19


# --- the dict wins -------------------------------------------------------------------------------


def test_the_postgres_dict_is_the_whole_connection():
    variables = dict(
        bosun_postgres=dict(login_host="10.0.0.5", login_user="backup", login_password=SECRET, ssl_mode="verify-full"),
        bosun_backup_login_port=6432,
        bosun_backup_login_ca_cert="/etc/ca.pem",
        bosun_maintenance_login_user="maint",
    )
    assert connection(variables, "postgres") == dict(
        login_host="10.0.0.5", login_user="backup", login_password=SECRET, ssl_mode="verify-full"
    )


def test_the_redis_dict_is_the_whole_connection():
    variables = dict(
        bosun_redis=dict(login_port=6380, tls=True, ca_cert="/etc/ca.pem", login_db=2),
        bosun_redis_login_user="cache-maint",
        bosun_redis_client_cert="/etc/client.pem",
    )
    assert connection(variables, "redis") == dict(login_port=6380, tls=True, ca_cert="/etc/ca.pem", login_db=2)


def test_the_elasticsearch_dict_is_the_whole_connection_and_has_no_older_variables():
    given = dict(url="https://10.0.0.5:9200", login_user="maint", login_password=SECRET, ca_cert="/etc/ca.crt")
    assert connection(dict(bosun_elasticsearch=given), "elasticsearch") == given
    assert connection(dict(bosun_backup_login_user="backup", bosun_redis_login_user="c"), "elasticsearch") == {}
    with pytest.raises(AnsibleFilterError) as err:
        connection(dict(bosun_elasticsearch=dict(given, password=SECRET)), "elasticsearch")
    assert "bosun_elasticsearch has unknown options password" in str(err.value) and SECRET not in str(err.value)


@pytest.mark.parametrize("service", ["postgres", "redis", "elasticsearch"])
def test_an_empty_dict_means_the_module_defaults(service):
    variables = {"bosun_" + service: {}, "bosun_backup_login_user": "backup", "bosun_redis_login_user": "cache-maint"}
    assert connection(variables, service) == {}


@pytest.mark.parametrize(
    "service, options",
    [("postgres", POSTGRES_COMMON_ARGS), ("redis", REDIS_COMMON_ARGS), ("elasticsearch", ELASTICSEARCH_ARGS)],
    ids=["postgres", "redis", "elasticsearch"],
)
def test_the_dict_takes_every_connection_option_of_the_group(service, options):
    given = dict((name, "v-" + name) for name in options)
    assert connection({"bosun_" + service: given}, service) == given


def test_an_alias_is_taken_under_the_option_name():
    assert connection(dict(bosun_postgres=dict(ssl_rootcert="/ca.pem")), "postgres") == dict(ca_cert="/ca.pem")


def test_an_option_and_its_alias_together_are_an_error():
    with pytest.raises(AnsibleFilterError, match="sets ca_cert twice"):
        connection(dict(bosun_postgres=dict(ca_cert="/a.pem", ssl_rootcert="/b.pem")), "postgres")


# --- the older variables -------------------------------------------------------------------------


def test_the_backup_login_variables_map_to_the_postgres_options():
    variables = dict(
        bosun_backup_login_host="127.0.0.1",
        bosun_backup_login_port=5433,
        bosun_backup_login_user="backup",
        bosun_backup_login_password=SECRET,
        bosun_backup_login_unix_socket="/run/postgresql",
        bosun_backup_login_ssl_mode="require",
        bosun_backup_login_ca_cert="/etc/ca.pem",
        bosun_backup_dir="/var/backups/postgresql",  # not a connection option
    )
    assert connection(variables, "postgres") == dict(
        login_host="127.0.0.1",
        login_port=5433,
        login_user="backup",
        login_password=SECRET,
        login_unix_socket="/run/postgresql",
        ssl_mode="require",
        ca_cert="/etc/ca.pem",
    )


def test_maintenance_login_wins_over_backup_login_option_by_option():
    variables = dict(
        bosun_maintenance_login_user="maint",
        bosun_maintenance_login_password="maint-pw",
        bosun_backup_login_host="127.0.0.1",
        bosun_backup_login_user="backup",
        bosun_backup_login_password=SECRET,
    )
    assert connection(variables, "postgres") == dict(
        login_host="127.0.0.1", login_user="maint", login_password="maint-pw"
    )


def test_an_unset_maintenance_login_falls_back_to_the_backup_login():
    variables = dict(bosun_maintenance_login_user=None, bosun_backup_login_user="backup")
    assert connection(variables, "postgres") == dict(login_user="backup")


def test_the_redis_variables_map_to_the_redis_options():
    variables = dict(
        bosun_redis_login_host="10.0.0.6",
        bosun_redis_login_port=6380,
        bosun_redis_login_unix_socket="/run/redis/redis.sock",
        bosun_redis_login_user="cache-maint",
        bosun_redis_login_password=SECRET,
        bosun_redis_login_db=3,
        bosun_redis_tls=True,
        bosun_redis_ca_cert="/etc/ca.pem",
        bosun_redis_client_cert="/etc/client.pem",
        bosun_redis_client_key="/etc/client.key",
        bosun_redis_unrelated="x",
    )
    assert connection(variables, "redis") == dict(
        login_host="10.0.0.6",
        login_port=6380,
        login_unix_socket="/run/redis/redis.sock",
        login_user="cache-maint",
        login_password=SECRET,
        login_db=3,
        tls=True,
        ca_cert="/etc/ca.pem",
        client_cert="/etc/client.pem",
        client_key="/etc/client.key",
    )


def test_the_services_do_not_read_each_others_variables():
    variables = dict(bosun_backup_login_user="backup", bosun_redis_login_user="cache-maint")
    assert connection(variables, "postgres") == dict(login_user="backup")
    assert connection(variables, "redis") == dict(login_user="cache-maint")


# --- what is not set is left out -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["postgres", "redis", "elasticsearch"])
def test_nothing_set_gives_an_empty_dict(service):
    assert connection({"inventory_hostname": "h1"}, service) == {}


def _omit_sentinel():
    try:
        from ansible._internal._templating._utils import Omit
    except ImportError:  # ansible-core before 2.19
        return OLD_OMIT
    return Omit


@pytest.mark.parametrize("unset", [None, OLD_OMIT, _omit_sentinel()], ids=["null", "omit-string", "omit"])
def test_null_and_omit_are_left_out_never_returned(unset):
    legacy = dict(bosun_backup_login_host=unset, bosun_backup_login_user="backup", bosun_redis_login_password=unset)
    assert connection(legacy, "postgres") == dict(login_user="backup")
    assert connection(legacy, "redis") == {}
    given = dict(bosun_redis=dict(login_host="127.0.0.1", login_password=unset, ca_cert=unset))
    assert connection(given, "redis") == dict(login_host="127.0.0.1")
    assert connection(dict(bosun_postgres=unset, bosun_backup_login_user="backup"), "postgres") == dict(
        login_user="backup"
    )


def test_empty_strings_and_false_are_values():
    variables = dict(bosun_backup_login_host="", bosun_redis_tls=False, bosun_redis_login_db=0)
    assert connection(variables, "postgres") == dict(login_host="")
    assert connection(variables, "redis") == dict(tls=False, login_db=0)


# --- errors, without secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("service", ["mysql", "", "Postgres", None, ["redis"]])
def test_an_unknown_service_is_a_clear_error(service):
    with pytest.raises(AnsibleFilterError, match=r"unknown service .*; choose one of elasticsearch, postgres, redis"):
        connection({}, service)


def test_an_unknown_option_in_the_dict_is_named_without_values():
    variables = dict(bosun_redis=dict(login_pasword=SECRET, password=SECRET, login_user="x"))
    with pytest.raises(AnsibleFilterError) as err:
        connection(variables, "redis")
    message = str(err.value)
    assert "bosun_redis has unknown options login_pasword, password" in message
    assert "login_password" in message  # the options it takes are listed
    assert SECRET not in message


def test_a_dict_that_is_not_a_dict_is_an_error_without_its_value():
    with pytest.raises(AnsibleFilterError) as err:
        connection(dict(bosun_postgres=SECRET), "postgres")
    assert str(err.value) == "connection: bosun_postgres must be a dict of module options, got str"


@pytest.mark.parametrize("variables", [SECRET, [SECRET], None])
def test_variables_that_are_not_a_mapping_are_an_error_without_their_value(variables):
    with pytest.raises(AnsibleFilterError) as err:
        connection(variables, "postgres")
    assert "give a host's variables" in str(err.value)
    assert SECRET not in str(err.value)


# --- the plays -----------------------------------------------------------------------------------

EXPRESSION = "{{ hostvars[%s] | bosun.platform.connection('%s') }}"
# The plays that talk to PostgreSQL or Redis through an action group, and the expression each uses.
PLAYS = {
    "playbooks/backup.yml": ["postgres"],
    "playbooks/restore.yml": ["postgres"],
    "playbooks/restore_drill.yml": ["postgres"],
    "playbooks/cache_flush.yml": ["redis"],
    "playbooks/maintenance.yml": ["postgres"] * 4 + ["redis"] + ["elasticsearch"] * 2,
}


def _group_defaults(node, found):
    """Every value of module_defaults group/bosun.platform.(postgres|redis), and of the
    elasticsearch_maintenance module, under node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "module_defaults":
                for defaults in value if isinstance(value, list) else [value]:
                    for group, entry in defaults.items():
                        if group in ("group/bosun.platform.postgres", "group/bosun.platform.redis"):
                            found.append((group.rsplit(".", 1)[1], entry))
                        elif group == "bosun.platform.elasticsearch_maintenance":
                            found.append(("elasticsearch", entry))
            else:
                _group_defaults(value, found)
    elif isinstance(node, list):
        for child in node:
            _group_defaults(child, found)
    return found


@pytest.mark.parametrize("path", sorted(PLAYS))
def test_every_play_takes_its_connection_from_the_filter(path):
    with open(os.path.join(ROOT, path)) as f:
        found = _group_defaults(yaml.safe_load(f), [])
    assert [entry[0] for entry in found] == PLAYS[path]
    for service, entry in found:
        assert entry == EXPRESSION % ("inventory_hostname", service)


def test_the_deploy_flush_takes_each_cache_hosts_connection():
    with open(os.path.join(ROOT, "roles/deploy/tasks/cache_flush.yml")) as f:
        found = _group_defaults(yaml.safe_load(f), [])
    assert found == [("redis", EXPRESSION % ("item", "redis"))]


# Run by ansible-playbook in a child process: module_defaults of a whole group templated from
# the filter reach the module, at play level and per loop item at task level. health_check's
# redis check against a closed port names the server it tried (host, port, db).
PLAYBOOK = """
- name: Play level
  hosts: legacy:dict:none
  gather_facts: false
  module_defaults:
    group/bosun.platform.redis: "{{ hostvars[inventory_hostname] | bosun.platform.connection('redis') }}"
  tasks:
    - name: Check against nothing
      bosun.platform.health_check:
        checks: [{type: redis, name: r, timeout: 2}]
        fail_on: never
      register: r
    - name: Say where it connected
      ansible.builtin.debug:
        msg: "PLAY {{ inventory_hostname }} {{ r.checks[0].message.split(':')[:2] | join(':') }}"

- name: Task level, per item
  hosts: legacy
  gather_facts: false
  tasks:
    - name: Check each host's server
      bosun.platform.health_check:
        checks: [{type: redis, name: r, timeout: 2}]
        fail_on: never
      module_defaults:
        group/bosun.platform.redis: "{{ hostvars[item] | bosun.platform.connection('redis') }}"
      loop: [dict, legacy, none]
      register: r
    - name: Say where each connected
      ansible.builtin.debug:
        msg: "ITEM {{ item.item }} {{ item.checks[0].message.split(':')[:2] | join(':') }}"
      loop: "{{ r.results }}"
      loop_control:
        label: "{{ item.item }}"

- name: A connection variable that cannot be templated
  hosts: broken
  gather_facts: false
  tasks:
    - name: Ask for the connection
      ansible.builtin.debug:
        msg: "{{ hostvars[inventory_hostname] | bosun.platform.connection('redis') }}"
      register: r
      ignore_errors: true
    - name: Say why it failed
      ansible.builtin.debug:
        msg: "BROKEN {{ r.msg is search('missing_vault_password. is undefined') }}"
"""


def test_module_defaults_templated_from_the_filter_reach_the_module(tmp_path):
    inventory = {
        "all": {
            "hosts": {
                "legacy": {
                    "bosun_redis_login_host": "127.0.0.2",
                    "bosun_redis_login_port": 1,
                    "bosun_redis_login_db": 3,
                },
                "dict": {
                    "bosun_redis": {"login_host": "127.0.0.3", "login_port": 2, "login_password": "{{ redis_pw }}"},
                    "bosun_redis_login_port": 9,
                },
                "none": {},
                "broken": {"bosun_redis_login_password": "{{ missing_vault_password }}"},
            },
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "redis_pw": SECRET,
            },
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    proc = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=str(tmp_path),
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for line in (
        "PLAY legacy Redis 127.0.0.2:1 db 3",
        "PLAY dict Redis 127.0.0.3:2 db 0",
        "PLAY none Redis 127.0.0.1:6379 db 0",
        "ITEM dict Redis 127.0.0.3:2 db 0",
        "ITEM legacy Redis 127.0.0.2:1 db 3",
        "ITEM none Redis 127.0.0.1:6379 db 0",
        "BROKEN True",
    ):
        assert line in out, out[-3000:]
    assert SECRET not in out


# --- the same options as the Jinja the plays had before --------------------------------------------

# What backup.yml, restore.yml and restore_drill.yml passed, and what maintenance.yml and
# cache_flush.yml passed, before the filter; kept as the reference.
PG_SUFFIXES = (
    ("login_host", "host"),
    ("login_port", "port"),
    ("login_user", "user"),
    ("login_password", "password"),
    ("login_unix_socket", "unix_socket"),
    ("ssl_mode", "ssl_mode"),
    ("ca_cert", "ca_cert"),
)
BEFORE_BACKUP = dict((option, "{{ bosun_backup_login_%s | default(omit) }}" % x) for option, x in PG_SUFFIXES)
BEFORE_MAINTENANCE = dict(
    (option, "{{ bosun_maintenance_login_%s | default(bosun_backup_login_%s | default(omit)) }}" % (x, x))
    for option, x in PG_SUFFIXES
)
BEFORE_REDIS = {
    "login_host": "{{ bosun_redis_login_host | default('127.0.0.1') }}",
    "login_port": "{{ bosun_redis_login_port | default(6379) }}",
    "login_unix_socket": "{{ bosun_redis_login_unix_socket | default(omit) }}",
    "login_user": "{{ bosun_redis_login_user | default(omit) }}",
    "login_password": "{{ bosun_redis_login_password | default(omit) }}",
    "login_db": "{{ bosun_redis_login_db | default(0) }}",
    "tls": "{{ bosun_redis_tls | default(false) }}",
    "ca_cert": "{{ bosun_redis_ca_cert | default(omit) }}",
    "client_cert": "{{ bosun_redis_client_cert | default(omit) }}",
    "client_key": "{{ bosun_redis_client_key | default(omit) }}",
}

PG_CASES = [
    {},
    dict(bosun_backup_login_host="127.0.0.1", bosun_backup_login_user="backup", bosun_backup_login_password=SECRET),
    dict(bosun_backup_login_unix_socket="/run/postgresql", bosun_backup_login_port=5433),
    dict(bosun_backup_login_ssl_mode="verify-full", bosun_backup_login_ca_cert="/ca.pem", bosun_backup_login_host="db"),
]
PG_MAINTENANCE_CASES = [
    dict(bosun_maintenance_login_user="maint", bosun_backup_login_user="backup", bosun_backup_login_host="127.0.0.1"),
    dict(bosun_maintenance_login_password="m", bosun_maintenance_login_ssl_mode="require"),
]
REDIS_CASES = [
    {},
    dict(bosun_redis_login_user="cache-maint", bosun_redis_login_password=SECRET),
    dict(
        bosun_redis_login_port=6380,
        bosun_redis_login_db=3,
        bosun_redis_tls=True,
        bosun_redis_ca_cert="/ca.pem",
        bosun_redis_client_cert="/c.pem",
        bosun_redis_client_key="/c.key",
    ),
    dict(bosun_redis_login_unix_socket="/run/redis/redis.sock", bosun_redis_login_host="10.0.0.6"),
]


def _with_defaults(options, spec):
    """What the module sees: its defaults, then the options given."""
    merged = dict((name, option.get("default")) for name, option in spec.items())
    merged.update(options)
    return merged


@pytest.mark.parametrize(
    "service, before, cases, spec",
    [
        ("postgres", BEFORE_BACKUP, PG_CASES, POSTGRES_COMMON_ARGS),
        ("postgres", BEFORE_MAINTENANCE, PG_CASES + PG_MAINTENANCE_CASES, POSTGRES_COMMON_ARGS),
        ("redis", BEFORE_REDIS, REDIS_CASES, REDIS_COMMON_ARGS),
    ],
    ids=["backup-restore", "maintenance", "redis"],
)
def test_each_play_passes_what_it_passed_before(service, before, cases, spec):
    """Same module parameters as before for every inventory that has no dict; the old Jinja
    passed redis's defaults explicitly, the filter leaves them to the module."""
    pairs = []
    for variables in cases:
        pairs.append(("{{ host_vars | bosun.platform.connection('%s') }}" % service, variables))
        pairs.append((before, variables))
    rendered = render_all([(template, dict(variables, host_vars=dict(variables))) for template, variables in pairs])
    now, old = rendered[0::2], rendered[1::2]
    for variables, got, want in zip(cases, now, old):
        assert _with_defaults(got, spec) == _with_defaults(want, spec), variables
