"""The live cluster a point-in-time recovery is about, read from pg_lsclusters (no version guessed)."""

import os
import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter.pitr_cluster import pitr_cluster
from ansible_collections.bosun.platform.plugins.module_utils._backup.clusters import parse_lsclusters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ONE = "15  main    5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n"
TWO = ONE + "17  main    5433 down   postgres /var/lib/postgresql/17/main /var/log/postgresql/postgresql-17-main.log\n"


def test_parse_skips_the_header_and_keeps_a_data_directory_with_spaces():
    text = (
        "Ver Cluster Port Status Owner    Data directory              Log file\n"
        "17  main    5432 online,recovery postgres /srv/pg data/17 syslog\n"
    )
    assert parse_lsclusters(text) == [
        dict(
            version="17",
            cluster="main",
            port=5432,
            status="online,recovery",
            owner="postgres",
            data_dir="/srv/pg data/17",
            log_file="syslog",
        )
    ]


def test_the_only_cluster_gives_version_paths_and_unit():
    live = pitr_cluster(ONE.replace("15", "17"))
    assert live["version"] == "17" and live["port"] == 5432 and live["source"] == "pg_lsclusters"
    assert live["data_dir"] == "/var/lib/postgresql/17/main"
    assert live["config_file"] == "/etc/postgresql/17/main/postgresql.conf"
    assert live["service"] == "postgresql@17-main"


def test_several_versions_need_bosun_pitr_pg_version():
    several = r"db1 has several clusters named 'main' \(15, 17\).*bosun_pitr_pg_version"
    with pytest.raises(AnsibleFilterError, match=several):
        pitr_cluster(TWO, host="db1")
    assert pitr_cluster(TWO, version="17")["data_dir"] == "/var/lib/postgresql/17/main"
    assert pitr_cluster(TWO, version=15)["service"] == "postgresql@15-main"


def test_no_cluster_is_a_clear_error_naming_what_was_found():
    with pytest.raises(AnsibleFilterError, match=r"cannot tell which PostgreSQL version db1 runs.*clusters: none"):
        pitr_cluster("", host="db1")
    with pytest.raises(AnsibleFilterError, match=r"no cluster named 'prod' \(clusters: 15/main \(online\)\)"):
        pitr_cluster(ONE, cluster="prod", host="db1")
    # Every path given: nothing to derive, nothing to fail.
    assert pitr_cluster("", required=False)["version"] is None


def test_an_explicit_version_the_host_does_not_list_uses_the_debian_paths():
    live = pitr_cluster("", version="16")
    assert live["data_dir"] == "/var/lib/postgresql/16/main" and live["source"] == "bosun_pitr_pg_version"
    with pytest.raises(AnsibleFilterError, match="major version such as 15"):
        pitr_cluster(ONE, version="15; rm")


PITR_FILES = [
    os.path.join("playbooks", "restore_pitr.yml"),
    os.path.join("playbooks", "pitr_drill.yml"),
    os.path.join("roles", "maintenance", "tasks", "pitr_drill_steps.yml"),
    os.path.join("roles", "maintenance", "tasks", "pitr_cluster.yml"),
    os.path.join("roles", "maintenance", "defaults", "main.yml"),
]


@pytest.mark.parametrize("name", PITR_FILES)
def test_the_pitr_playbooks_assume_no_version(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"bosun_pitr_pg_version \| default\('\d+'\)", text)
    assert "/15/" not in text
