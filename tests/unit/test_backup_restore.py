"""module_utils._backup.restore: the database-level statements of an archive, the markers of
the databases a restore makes, and the lock on a restore's temp files."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import layout, restore
from ansible_collections.bosun.platform.plugins.module_utils._backup.dump import Dumper
from ansible_collections.bosun.platform.plugins.module_utils._backup.tools import Runner
from ansible_collections.bosun.platform.plugins.module_utils._io import TEMP_MARKER, is_temp_name

from tests.unit.test_backup_layout import make_backup

# What pg_restore 15 --create --use-list prints for a database's COMMENT, DATABASE PROPERTIES
# and ACL entries (the DATABASE entry comes along whatever the list says).
PG_RESTORE_OUTPUT = textwrap.dedent(
    r'''
    --
    -- PostgreSQL database dump
    --

    \restrict nwq4mbF5CuNjKuUBE1ZwWpt3J3i9lbnIZFzOvpKh8iR6aCrF2cqTpBoYNBjAvEY

    SET statement_timeout = 0;
    SET client_encoding = 'UTF8';
    SET standard_conforming_strings = on;
    SELECT pg_catalog.set_config('search_path', '', false);

    --
    -- Name: my "db"; Type: DATABASE; Schema: -; Owner: app
    --

    CREATE DATABASE "my ""db""" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'C.UTF-8';


    ALTER DATABASE "my ""db""" OWNER TO app;

    \unrestrict nwq4mbF5CuNjKuUBE1ZwWpt3J3i9lbnIZFzOvpKh8iR6aCrF2cqTpBoYNBjAvEY
    \encoding SQL_ASCII
    \connect -reuse-previous=on "dbname='my \"db\"'"
    \restrict nwq4mbF5CuNjKuUBE1ZwWpt3J3i9lbnIZFzOvpKh8iR6aCrF2cqTpBoYNBjAvEY

    SET row_security = off;

    --
    -- Name: DATABASE "my ""db"""; Type: COMMENT; Schema: -; Owner: app
    --

    COMMENT ON DATABASE "my ""db""" IS 'it''s; ALTER DATABASE "my ""db""" SET x TO 1;';

    --
    -- Name: my "db"; Type: DATABASE PROPERTIES; Schema: -; Owner: app
    --

    ALTER DATABASE "my ""db""" CONNECTION LIMIT = 50;
    ALTER DATABASE "my ""db""" SET work_mem TO '12MB';
    ALTER DATABASE "my ""db""" SET search_path TO 'a b', 'public';
    ALTER ROLE bob IN DATABASE "my ""db""" SET search_path TO 'x';
    ALTER DATABASE "my ""db""" IS_TEMPLATE = true;

    --
    -- Name: DATABASE "my ""db"""; Type: ACL; Schema: -; Owner: app
    --

    REVOKE CONNECT,TEMPORARY ON DATABASE "my ""db""" FROM PUBLIC;
    GRANT CONNECT ON DATABASE "my ""db""" TO bob;
    GRANT CREATE ON DATABASE "my ""db""" TO eve WITH GRANT OPTION;
    SET SESSION AUTHORIZATION eve;
    GRANT CREATE ON DATABASE "my ""db""" TO "database";
    RESET SESSION AUTHORIZATION;

    --
    -- PostgreSQL database dump complete
    --

    \unrestrict nwq4mbF5CuNjKuUBE1ZwWpt3J3i9lbnIZFzOvpKh8iR6aCrF2cqTpBoYNBjAvEY
    '''
)


def test_database_statements_are_kept_and_re_aimed_at_the_new_name():
    statements, skipped = restore.parse_database_properties(PG_RESTORE_OUTPUT, 'my "db"')
    assert [s.sql("bosun_restore_0123456789") for s in statements] == [
        'COMMENT ON DATABASE "bosun_restore_0123456789" IS \'it\'\'s; ALTER DATABASE "my ""db""" SET x TO 1;\'',
        'ALTER DATABASE "bosun_restore_0123456789" CONNECTION LIMIT = 50',
        "ALTER DATABASE \"bosun_restore_0123456789\" SET work_mem TO '12MB'",
        "ALTER DATABASE \"bosun_restore_0123456789\" SET search_path TO 'a b', 'public'",
        "ALTER ROLE bob IN DATABASE \"bosun_restore_0123456789\" SET search_path TO 'x'",
        'REVOKE CONNECT,TEMPORARY ON DATABASE "bosun_restore_0123456789" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "bosun_restore_0123456789" TO bob',
        'GRANT CREATE ON DATABASE "bosun_restore_0123456789" TO eve WITH GRANT OPTION',
        "SET SESSION AUTHORIZATION eve",
        'GRANT CREATE ON DATABASE "bosun_restore_0123456789" TO "database"',
        "RESET SESSION AUTHORIZATION",
    ]
    # CREATE DATABASE, OWNER TO, SET/SELECT set-up and \\ lines are dropped silently;
    # a form a restore does not re-create is reported by its leading keywords only.
    assert skipped == ["ALTER DATABASE IS_TEMPLATE"]
    assert restore.property_counts(statements) == dict(
        privileges=4, settings=3, role_settings=1, comment=1, security_labels=0
    )
    # The name is quoted for any target, quotes included.
    assert statements[1].sql('x"; DROP') == 'ALTER DATABASE "x""; DROP" CONNECTION LIMIT = 50'


def test_bare_and_quoted_names_both_match():
    sql = "ALTER DATABASE app SET work_mem TO '1MB';\nGRANT CONNECT ON DATABASE \"app\" TO r;\n"
    statements, _skipped = restore.parse_database_properties(sql, "app")
    assert [s.sql("new") for s in statements] == [
        "ALTER DATABASE \"new\" SET work_mem TO '1MB'",
        'GRANT CONNECT ON DATABASE "new" TO r',
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER DATABASE other SET work_mem TO '1MB';",
        'GRANT CONNECT ON DATABASE "App" TO r;',
        "ALTER ROLE r IN DATABASE other SET search_path TO 'x';",
        "COMMENT ON DATABASE other IS 'x';",
    ],
)
def test_a_statement_about_another_database_is_refused(sql):
    with pytest.raises(ValueError, match="names the database"):
        restore.parse_database_properties(sql, "app")


@pytest.mark.parametrize(
    "sql",
    [
        # a list of databases, or something after the name, is not a form pg_dump writes
        "GRANT CONNECT ON DATABASE app, postgres TO r;",
        "REVOKE CONNECT ON DATABASE app TO r;",
        "GRANT CONNECT ON TABLE app TO r;",
        "ALTER DATABASE app RENAME TO x;",
        "DROP DATABASE app;",
        "CREATE ROLE r SUPERUSER;",
        "ALTER ROLE r SET search_path TO 'x';",
        "SELECT pg_reload_conf();",
    ],
)
def test_other_statements_are_never_run(sql):
    statements, skipped = restore.parse_database_properties(sql, "app")
    assert statements == [] and len(skipped) == 1


def test_literals_comments_and_dollar_quotes_hide_their_contents():
    sql = (
        "/* GRANT ALL ON DATABASE app TO evil; /* nested */ */\n"
        "-- REVOKE ALL ON DATABASE app FROM PUBLIC;\n"
        "COMMENT ON DATABASE app IS E'a\\';b';\n"
        "SECURITY LABEL FOR dummy ON DATABASE app IS $x$; GRANT ALL ON DATABASE app TO evil;$x$;\n"
    )
    statements, skipped = restore.parse_database_properties(sql, "app")
    assert [s.kind for s in statements] == ["comment", "security_label"] and skipped == []
    assert statements[0].sql("n") == "COMMENT ON DATABASE \"n\" IS E'a\\';b'"


@pytest.mark.parametrize("sql", ["COMMENT ON DATABASE app IS 'open", 'GRANT ALL ON DATABASE "app TO r;', "/* x"])
def test_unterminated_input_is_an_error(sql):
    with pytest.raises(ValueError, match="unterminated"):
        restore.parse_database_properties(sql, "app")


def test_toc_ids_of_the_database_entries():
    listing = textwrap.dedent(
        """\
        ;
        ; Archive created at 2025-01-01 00:00:00 UTC
        3344; 1262 16390 DATABASE - my db app
        3345; 0 0 COMMENT - DATABASE "my db" app
        3346; 0 0 ACL - DATABASE "my db" app
        3347; 0 0 DATABASE PROPERTIES - my db app
        3348; 0 0 SECURITY LABEL - DATABASE "my db" app
        214; 1259 16391 TABLE public t postgres
        215; 0 0 COMMENT public TABLE "DATABASE x" postgres
        3349; 0 0 ACL - SCHEMA "DATABASE" postgres
        3338; 0 16391 TABLE DATA public t postgres
        """
    )
    assert restore.database_toc_ids(listing) == [3345, 3346, 3347, 3348]


def test_markers_identify_only_this_modules_databases():
    good = restore.marker_comment("staging", "0123456789", "app")
    assert restore.parse_marker("bosun_restore_0123456789", good) == dict(
        kind="staging", token="0123456789", target="app"
    )
    replaced = restore.marker_comment("replaced", "abcdefabcd", 'odd "name"')
    assert restore.parse_marker("bosun_replaced_abcdefabcd", replaced)["target"] == 'odd "name"'
    for name, comment in (
        ("bosun_restore_0123456789", None),  # the name alone proves nothing
        ("bosun_restore_0123456789", "made by hand"),
        ("bosun_replaced_0123456789", good),  # kind differs from the name's
        ("bosun_restore_9999999999", good),  # token differs
        ("bosun_restore_0123456789x", good),
        ("app", good),
        ("bosun_restore_0123456789", restore.MARKER_PREFIX + "{not json"),
        ("bosun_restore_0123456789", restore.MARKER_PREFIX + '{"kind": "staging", "token": "0123456789"}'),
    ):
        assert restore.parse_marker(name, comment) is None, (name, comment)
    assert 0 <= restore.lock_key("ffffffffff") < 2**31


# -- restore temp files ------------------------------------------------------------------------------
HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_restore_temp_files_carry_the_temp_marker_and_a_lock(tmp_path):
    fd, path = layout.locked_temp_file(str(tmp_path), "20250101T000000Z.dump.zst")
    name = os.path.basename(path)
    assert name.startswith(".20250101T000000Z.dump.zst" + TEMP_MARKER + "restore-")
    assert is_temp_name(name) and layout.is_restore_temp_name(name)
    assert layout.stale_temp_names(str(tmp_path)) == [name]
    assert layout.temp_in_use(path) is True
    os.close(fd)
    assert layout.temp_in_use(path) is False
    assert not layout.is_restore_temp_name(".x.dump" + TEMP_MARKER + "abc")  # a dump's temp file


def test_a_killed_holder_leaves_a_temp_file_any_cleaner_may_remove(tmp_path):
    path = str(tmp_path / (".b.dump.zst" + layout.RESTORE_TEMP_TAG + "x"))
    open(path, "wb").close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert layout.temp_in_use(path) is True
        # A dump's stale-file sweep (under its directory lock) skips a restore's live copy.
        dumper = Dumper(dict(backup_dir=str(tmp_path)), Runner(), check_mode=False)
        dumper._remove_stale(str(tmp_path))
        assert os.path.exists(path) and dumper.result["stale_temp_files"] == []
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert layout.temp_in_use(path) is False
        dumper._remove_stale(str(tmp_path))
        assert not os.path.exists(path) and dumper.result["stale_temp_files"] == [path]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()


# -- choosing the backup by label ------------------------------------------------------------------
def labelled(directory, stem, label, **kw):
    """A backup as postgresql_dump writes it with ``label``: in its name and in its manifest."""
    path = make_backup(directory, stem + ("-%s" % label if label else ""), **kw)
    manifest_path = os.path.join(directory, os.path.basename(path).split(".")[0] + layout.MANIFEST_SUFFIX)
    if os.path.exists(manifest_path):
        data = layout.read_manifest(manifest_path)
        data["label"] = label
        layout.write_manifest(manifest_path, data)
    return path


@pytest.fixture
def labelled_dir(tmp_path):
    """Backups of "my db", newest last; the newest verified pre-migration one is on the 2nd."""
    d = str(tmp_path / layout.db_dirname("my db"))
    paths = dict(
        old=labelled(d, "20250101T000000Z", "pre-migration"),
        chosen=labelled(d, "20250102T000000Z", "pre-migration"),
        unverified=labelled(d, "20250103T000000Z", "pre-migration", verified=False),
        other=labelled(d, "20250104T000000Z", "nightly"),
        none=labelled(d, "20250105T000000Z", None),
        no_manifest=labelled(d, "20250106T000000Z", "pre-migration", manifest=False),
    )
    return str(tmp_path), d, paths


def test_label_picks_the_newest_verified_backup_with_that_label(labelled_dir):
    backup_dir, _d, paths = labelled_dir
    params = dict(backup="latest", backup_dir=backup_dir, db="my db", label="pre-migration")
    restore.validate(params)
    entry, how = restore.resolve_backup(params)
    assert (entry.path, how) == (paths["chosen"], "label")
    entry, how = restore.resolve_backup(dict(params, label="nightly"))
    assert (entry.path, how) == (paths["other"], "label")
    # without a label, latest is the newest backup, whatever it is (and check_backup refuses it)
    entry, how = restore.resolve_backup(dict(params, label=None))
    assert (entry.display_path, how) == (paths["no_manifest"], "latest")


def test_label_passes_over_unverified_and_other_labels(tmp_path):
    d = str(tmp_path / "app")
    labelled(d, "20250101T000000Z", "release")
    labelled(d, "20250102T000000Z", "release-2")  # a longer label with the same start
    newest = labelled(d, "20250103T000000Z", "release", verified=False)
    entries = layout.list_backups(d)
    assert restore.newest_with_label(entries, "release").path == os.path.join(d, "20250101T000000Z-release.dump.zst")
    assert restore.newest_with_label(entries, "release-2").stem == "20250102T000000Z-release-2"
    assert restore.newest_with_label(entries, "Release") is None
    # a manifest that names another file than the one beside it is not a verified backup either
    os.rename(newest, newest.replace(".dump.zst", ".dump"))
    assert restore.newest_with_label(layout.list_backups(d), "release").stem == "20250101T000000Z-release"


def test_label_with_no_match_names_database_label_and_directory(labelled_dir):
    backup_dir, d, paths = labelled_dir
    params = dict(backup="latest", backup_dir=backup_dir, db="my db")
    with pytest.raises(layout.BackupError) as exc:
        restore.resolve_backup(dict(params, label="pre-upgrade"))
    assert exc.value.msg == "no verified backup of database my db with label pre-upgrade in %s" % d
    with pytest.raises(layout.BackupError) as exc:
        restore.resolve_backup(dict(params, backup_dir=str(d) + "-missing", label="pre-upgrade"))
    assert "no verified backup of database my db with label pre-upgrade in" in exc.value.msg
    # with their files gone, two manifests and the unverified backup carry the label
    os.unlink(paths["chosen"])
    os.unlink(paths["old"])
    with pytest.raises(layout.BackupError) as exc:
        restore.resolve_backup(dict(params, label="pre-migration"))
    assert exc.value.msg == (
        "no verified backup of database my db with label pre-migration in %s "
        "(3 with that label not verified or incomplete)" % d
    )


@pytest.mark.parametrize(
    "params, fragment",
    [
        (dict(backup="/b/app/20250101T000000Z.dump.zst", label="x"), "label and backup: /b/app/"),
        (dict(backup="/b/app/20250101T000000Z.dump.zst", label="x", db="app", backup_dir="/b"), "mutually exclusive"),
        (dict(label="x", db="app"), "label needs backup_dir and db"),
        (dict(label="x", backup_dir="/b"), "label needs backup_dir and db"),
        (dict(label="has space", db="app", backup_dir="/b"), "label 'has space' is not allowed"),
        (dict(label="", db="app", backup_dir="/b"), "label '' is not allowed"),
    ],
)
def test_label_validation(params, fragment):
    with pytest.raises(layout.BackupError) as exc:
        restore.validate(dict(dict(backup="latest"), **params))
    assert fragment in exc.value.msg
