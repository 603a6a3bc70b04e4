"""WAL archiving (bosun-wal) and point-in-time recovery against a real PostgreSQL.

The server archives with the tool itself as archive_command, run by the system's Python
(the tool is standard library only, as on the db hosts) from a copy installed as the
postgresql role installs it (tests/support/wal_tool.py). Effects are probed independently:
the files and their sha256 on disk, pg_stat_archiver, the server's own pg_wal files, and
the rows of the recovered cluster.
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.support import wal_tool
from tests.support.collection import ROOT, collections_path
from tests.support.servers import PostgresServer, _chown_tree, _service_user

# Installed as the postgresql role installs it (a copy every user can read, the same library
# and command line), never run from the checkout: PostgreSQL runs it as its own user, and a
# clone may live where only its owner can read.
WAL_TOOL = wal_tool.command()
PYTHON = wal_tool.PYTHON
ARCHIVE_TIMEOUT = 10
OS_USER = _service_user("postgres")


def archive_command(archive, compress="gzip"):
    return "%s %s push --archive %s --compress %s %%p %%f" % (PYTHON, WAL_TOOL, archive, compress)


def conf_value(text):
    return "'%s'" % text.replace("'", "''")


def tool(*args, check=None):
    proc = subprocess.run([PYTHON, WAL_TOOL, *args], capture_output=True, text=True, timeout=300, check=False)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stderr)
    return proc


def wait_for(what, predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s" % what)


def make_dir(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    _chown_tree(path, OS_USER)
    return path


@pytest.fixture(scope="module")
def workdir():
    base = tempfile.mkdtemp(prefix="bosun-wal-")
    os.chmod(base, 0o755)
    yield base
    for mount in sorted(glob.glob(os.path.join(base, "*-small")), reverse=True):
        subprocess.run(["umount", mount], capture_output=True, check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def archiving(test_ca, workdir):
    """A server that archives every segment with bosun-wal (gzip) into ``archive``."""
    archive = make_dir(os.path.join(workdir, "archive"))
    settings = dict(
        wal_level="replica",
        archive_mode="on",
        archive_command=conf_value(archive_command(archive)),
        archive_timeout="%ds" % ARCHIVE_TIMEOUT,
        max_wal_senders=4,
    )
    with PostgresServer(test_ca, settings=settings, replication=True) as server:
        server.archive = archive
        yield server


def archived_wal(pg):
    return pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")


def switch_and_wait(pg, rows=10):
    """Write something, switch segments, wait until the finished segment is archived; its name."""
    pg.psql("CREATE TABLE IF NOT EXISTS walfill (id serial, payload text)")
    pg.psql("INSERT INTO walfill (payload) SELECT md5(g::text) FROM generate_series(1, %d) g" % int(rows))  # noqa: S608
    name = pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for("%s to be archived" % name, lambda: archived_wal(pg)[:24] >= name)
    return name


def stored_path(archive, name):
    found = glob.glob(os.path.join(archive, name[:16], name + "*"))
    found = [f for f in found if not f.endswith(".sha256")]
    assert len(found) == 1, found
    return found[0]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_push_fetch_round_trip(archiving, tmp_path):
    name = switch_and_wait(archiving)
    stored = stored_path(archiving.archive, name)
    assert stored.endswith(".gz")
    with open(stored + ".sha256") as f:
        assert f.read().split()[0] == sha256(stored)
    dest = tmp_path / "restored"
    tool("fetch", "--archive", archiving.archive, name, str(dest), check=0)
    original = os.path.join(archiving.datadir, "pg_wal", name)
    if os.path.exists(original):  # not yet recycled by a checkpoint
        assert sha256(str(dest)) == sha256(original)
    assert dest.stat().st_size == 16 * 1024 * 1024
    # Missing files are answered quietly with 1 (PostgreSQL probes for them).
    proc = tool("fetch", "--archive", archiving.archive, "00000063.history", str(tmp_path / "h"))
    assert proc.returncode == 1 and proc.stderr == "" and not (tmp_path / "h").exists()


def test_push_onto_identical_and_different_file(archiving, tmp_path):
    name = switch_and_wait(archiving)
    stored = stored_path(archiving.archive, name)
    before = sha256(stored)
    same = tmp_path / name
    tool("fetch", "--archive", archiving.archive, name, str(same), check=0)
    proc = tool("push", "--archive", archiving.archive, "--compress", "zstd", str(same), name, check=0)
    assert "identical" in proc.stderr
    different = tmp_path / "different"
    data = bytearray(same.read_bytes())
    data[100] ^= 0xFF
    different.write_bytes(bytes(data))
    proc = tool("push", "--archive", archiving.archive, str(different), name)
    assert proc.returncode == 3, proc.stderr
    assert "refusing to overwrite" in proc.stderr and name in proc.stderr
    assert stored_path(archiving.archive, name) == stored and sha256(stored) == before
    # Exit codes stay in 1..125: an unreadable source and a bad name are plain failures.
    assert tool("push", "--archive", archiving.archive, str(tmp_path / "nope"), name).returncode == 6
    assert tool("push", "--archive", archiving.archive, str(same), "../etc/passwd").returncode == 2


def test_corrupt_archived_segment_fails_fetch_by_name(archiving, tmp_path):
    name = switch_and_wait(archiving)
    stored = stored_path(archiving.archive, name)
    copy = tmp_path / "good"
    shutil.copy(stored, copy)
    try:
        data = bytearray(open(stored, "rb").read())
        data[len(data) // 2] ^= 0x01
        with open(stored, "wb") as f:
            f.write(bytes(data))
        dest = tmp_path / "out"
        proc = tool("fetch", "--archive", archiving.archive, name, str(dest))
        # Above 125: PostgreSQL aborts the recovery (1-125 would read as "end of the archive").
        assert proc.returncode == 200, proc.stderr
        assert name in proc.stderr and "corrupt" in proc.stderr
        assert not dest.exists()
    finally:
        shutil.copy(copy, stored)


def test_archive_directory_full_then_catches_up(archiving, workdir):
    small = make_dir(os.path.join(workdir, "archive-small"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", small], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: %s" % mounted.stderr.decode().strip())
    _chown_tree(small, OS_USER)
    pg = archiving
    first = switch_and_wait(pg)  # everything so far is in the big archive
    pg.psql("ALTER SYSTEM SET archive_command = %s" % conf_value(archive_command(small, "none")))
    pg.psql("SELECT pg_reload_conf()")
    time.sleep(1)
    failed_before = int(pg.psql("SELECT failed_count FROM pg_stat_archiver"))
    names = []
    for _round in range(4):  # 4 segments of 16 MB uncompressed: two fit into 40 MB
        pg.psql("INSERT INTO walfill (payload) SELECT md5(g::text) FROM generate_series(1, 50) g")
        names.append(pg.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    wait_for("the archiver to fail", lambda: int(pg.psql("SELECT failed_count FROM pg_stat_archiver")) > failed_before)
    assert "No space left" in pg.log_tail(200) or "no space" in pg.log_tail(200).lower()
    for path in glob.glob(os.path.join(small, "*", "*")):
        base = os.path.basename(path)
        assert not base.startswith("."), "temp file left: %s" % path
        if not base.endswith(".sha256"):
            assert os.path.getsize(path) == 16 * 1024 * 1024, path
            with open(path + ".sha256") as f:
                assert f.read().split()[0] == sha256(path)
    # Space returns: the archiver retries and catches up, nothing is missing.
    subprocess.run(["mount", "-o", "remount,size=200m", small], check=True)
    wait_for("archiving to catch up", lambda: archived_wal(pg)[:24] >= names[-1], timeout=120)
    archived = sorted(s["name"] for s in json.loads(tool("list", "--archive", small, check=0).stdout)["files"])
    expected_start = "%s%s" % (first[:16], "%08X" % (int(first[16:], 16) + 1))
    segments = [n for n in archived if len(n) == 24 and n >= expected_start]
    assert segments[0] == expected_start
    want = ["%s%08X" % (expected_start[:16], int(expected_start[16:], 16) + i) for i in range(len(segments))]
    assert segments == want and segments[-1] >= names[-1]
    # ALTER SYSTEM rewrote the line the test server started with: put the original back.
    pg.psql("ALTER SYSTEM SET archive_command = %s" % conf_value(archive_command(pg.archive)))
    pg.psql("SELECT pg_reload_conf()")
    # The segments archived into the small archive are missing from the main one: copy
    # them over so that the recovery test below reads an unbroken archive.
    for name in segments:
        path = stored_path(small, name)
        tool("push", "--archive", pg.archive, "--compress", "gzip", path, name, check=0)
    _chown_tree(pg.archive, OS_USER)


def test_pitr_drill_playbook(archiving, run_module, workdir):
    """Base backup with the module, then the real drill playbook against this server."""
    pg = archiving
    base_dir = make_dir(os.path.join(workdir, "base"))
    predicted = run_module(
        "postgresql_basebackup",
        dict(pg.conn_args(), backup_dir=base_dir, wal_archive_dir=pg.archive, keep_last=2),
        check_mode=True,
    )
    assert predicted["rc"] == 0 and predicted["changed"] is True, predicted.get("msg")
    assert predicted["backup"]["verified"] is None and predicted["backup"]["path"].endswith(".dir")
    assert os.listdir(base_dir) == []
    result = run_module(
        "postgresql_basebackup",
        dict(pg.conn_args(), backup_dir=base_dir, wal_archive_dir=pg.archive, keep_last=2),
    )
    assert result["rc"] == 0, result.get("msg")
    assert result["backup"]["verified"] is True
    assert any("pg_verifybackup" in c for c in result["commands"])
    # The first base backup is the oldest kept one: the WAL before its start goes (check mode
    # predicted up to the then current segment, a real run starts there or later).
    assert result["wal_kept_from"] == result["backup"]["start_wal"]
    assert result["wal_deleted"][: len(predicted["wal_deleted"])] == predicted["wal_deleted"]
    assert all(n[8:24] < result["wal_kept_from"][8:24] for n in result["wal_deleted"])
    assert glob.glob(os.path.join(pg.archive, result["wal_kept_from"][:16], result["wal_kept_from"] + "*"))
    assert sorted(os.listdir(result["backup"]["path"])) == ["backup_manifest", "base.tar.zst", "pg_wal.tar"]
    assert pg.password not in json.dumps(result)
    manifest = json.load(open(result["backup"]["manifest"]))
    assert manifest["kind"] == "basebackup" and manifest["start_wal"] == result["backup"]["start_wal"]
    _chown_tree(base_dir, OS_USER)
    scratch_parent = make_dir(os.path.join(workdir, "scratch"))
    result_file = os.path.join(workdir, "drill.json")
    extra = dict(
        bosun_pitr_hosts="localhost",
        bosun_pitr_become=False,
        bosun_pitr_tool=[PYTHON, WAL_TOOL],
        bosun_pitr_os_user=OS_USER.pw_name if OS_USER else os.environ.get("USER", ""),
        bosun_pitr_archive_dir=pg.archive,
        bosun_pitr_base_dir=base_dir,
        bosun_pitr_scratch_dir=os.path.join(scratch_parent, "cluster"),
        bosun_pitr_scratch_port=pg.port + 1,
        bosun_pitr_login_host=pg.host,
        bosun_pitr_login_port=pg.port,
        bosun_pitr_login_user=pg.user,
        bosun_pitr_login_password=pg.password,
        bosun_pitr_drill_result_file=result_file,
        bosun_pitr_metrics_dir=workdir,
        bosun_pitr_archive_wait=ARCHIVE_TIMEOUT * 6,
    )
    proc = run_playbook("pitr_drill.yml", extra, workdir)
    assert pg.password not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    drill = json.load(open(result_file))
    assert drill["ok"] is True
    assert float(drill["rpo_seconds"]) >= 0 and float(drill["rto_seconds"]) > 0
    assert drill["recovery"].get("stop", "").startswith("recovery stopping before commit"), json.dumps(
        drill["recovery"], indent=1
    )
    assert drill["recovery"]["backup"] == result["backup"]["path"]
    metrics = open(os.path.join(workdir, "bosun_pitr_drill.prom")).read()
    assert "bosun_pitr_drill_last_status 1" in metrics
    assert not os.path.exists(os.path.join(scratch_parent, "cluster"))
    print(
        "PITR drill: RPO %.1f s (archive_timeout %s), RTO %.1f s"
        % (float(drill["rpo_seconds"]), drill["archive_timeout"], float(drill["rto_seconds"]))
    )


def run_playbook(name, extra, workdir, args=()):
    extra = dict(extra, bosun_lock_path=os.path.join(workdir, "platform.lock"))  # restore_pitr.yml takes it
    extra_file = os.path.join(workdir, "extra.json")
    with open(extra_file, "w") as f:
        json.dump(extra, f)
    os.chmod(extra_file, 0o600)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_LOCALHOST_WARNING="false")
    return subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "@" + extra_file,
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
            *args,
            os.path.join(ROOT, "playbooks", name),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_restore_pitr_to_a_named_restore_point_then_the_end(archiving, workdir):
    """restore_pitr.yml (scratch mode) to a restore point; then the tool alone to the end of the archive."""
    pg = archiving
    base_dir = os.path.join(workdir, "base")
    pg.psql("CREATE TABLE IF NOT EXISTS points (label text)")
    pg.psql("INSERT INTO points VALUES ('before')")
    pg.psql("SELECT pg_create_restore_point('bosun point')")
    pg.psql("INSERT INTO points VALUES ('after')")
    switch_and_wait(pg)
    data = os.path.join(workdir, "scratch", "named")
    port = pg.port + 2
    user_args = ["--run-as", OS_USER.pw_name] if OS_USER else []
    result_file = os.path.join(workdir, "pitr.json")
    proc = run_playbook(
        "restore_pitr.yml",
        dict(
            bosun_pitr_hosts="localhost",
            bosun_pitr_become=False,
            bosun_pitr_tool=[PYTHON, WAL_TOOL],
            bosun_pitr_os_user=OS_USER.pw_name if OS_USER else os.environ.get("USER", ""),
            bosun_pitr_archive_dir=pg.archive,
            bosun_pitr_base_dir=base_dir,
            bosun_pitr_scratch_dir=data,
            bosun_pitr_scratch_port=port,
            bosun_pitr_target_name="bosun point",
            bosun_pitr_result_file=result_file,
        ),
        workdir,
    )
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        for target, expected in ((None, "before"), ([], "after,before")):
            if target is not None:
                tool(*user_args, "stop", "--data-dir", data, "--remove", check=0)
                out = tool(
                    *user_args,
                    "recover",
                    "--archive",
                    pg.archive,
                    "--base-dir",
                    base_dir,
                    "--data-dir",
                    data,
                    "--port",
                    str(port),
                    *target,
                    check=0,
                )
                result = json.loads(out.stdout)
            else:
                result = json.load(open(result_file))
                assert result["mode"] == "scratch" and result["target"]["name"] == "bosun point"
                assert result["stop"].startswith("recovery stopping at restore point")
            out = subprocess.run(
                [
                    os.path.join(pg.bindir, "psql"),
                    "-XAtq",
                    "-h",
                    result["socket_dir"],
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    "SELECT string_agg(label, ',' ORDER BY label) FROM points",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert out == expected
            assert result["timeline"] >= 2
    finally:
        tool(*user_args, "stop", "--data-dir", data, "--remove")


# -- safety: what `stop --remove` may delete; a damaged segment aborts the recovery ---------
EXIT_REFUSED = 8
EXIT_RECOVERY = 7
AS_OS_USER = ["--run-as", OS_USER.pw_name] if OS_USER else []


def test_stop_remove_refuses_the_live_cluster(archiving):
    """The running server's data directory: found by itself, and refused by name too."""
    pg = archiving
    for extra in ([], ["--protect", pg.datadir]):
        proc = tool(*AS_OS_USER, "stop", "--data-dir", pg.datadir, "--remove", *extra)
        assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
        assert "refusing %s" % pg.datadir in proc.stderr and json.loads(proc.stdout)["ok"] is False
    assert pg.psql("SELECT 1") == "1" and os.path.exists(os.path.join(pg.datadir, "PG_VERSION"))


def test_restore_pitr_refuses_the_live_data_directory_as_scratch(archiving, workdir):
    pg = archiving
    proc = run_playbook(
        "restore_pitr.yml",
        dict(
            bosun_pitr_hosts="localhost",
            bosun_pitr_become=False,
            bosun_pitr_tool=[PYTHON, WAL_TOOL],
            bosun_pitr_os_user=OS_USER.pw_name if OS_USER else os.environ.get("USER", ""),
            bosun_pitr_archive_dir=pg.archive,
            bosun_pitr_base_dir=os.path.join(workdir, "base"),
            bosun_pitr_data_dir=pg.datadir,
            bosun_pitr_scratch_dir=pg.datadir,
            bosun_pitr_scratch_port=pg.port + 3,
        ),
        workdir,
    )
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "refusing" in proc.stdout and "live data directory" in proc.stdout, proc.stdout[-3000:]
    assert "Recover (restore the base backup" not in proc.stdout  # refused before anything happened
    assert pg.psql("SELECT 1") == "1" and os.path.exists(os.path.join(pg.datadir, "PG_VERSION"))


_DAMAGED = {}


@pytest.fixture
def after_a_base_backup(archiving, run_module, workdir):
    """A fresh verified base backup (its own directory, no retention), then two segments
    archived after it: the first of those is the one to damage."""
    if not _DAMAGED:
        pg = archiving
        base_dir = make_dir(os.path.join(workdir, "base-damaged"))
        result = run_module("postgresql_basebackup", dict(pg.conn_args(), backup_dir=base_dir))
        assert result["rc"] == 0 and result["backup"]["verified"] is True, result.get("msg")
        _chown_tree(base_dir, OS_USER)
        pg.psql("CREATE TABLE IF NOT EXISTS after_backup (id int)")
        pg.psql("INSERT INTO after_backup SELECT generate_series(1, 1000)")
        first = switch_and_wait(pg)
        pg.psql("INSERT INTO after_backup SELECT generate_series(1, 1000)")
        last = switch_and_wait(pg)
        _DAMAGED.update(backup=result["backup"]["path"], start_wal=result["backup"]["start_wal"], damaged=first)
        _DAMAGED["last"] = last
    return _DAMAGED


@pytest.mark.parametrize("method,damage", [("lz4", "truncated"), ("zstd", "bit flip"), ("gzip", "truncated")])
def test_recovery_to_the_end_of_the_archive_aborts_at_a_damaged_segment(
    archiving, workdir, after_a_base_backup, method, damage
):
    """No target: recovery must not promote at the segment before the damaged one (exit 1-125
    from restore_command would mean "end of the archive" to PostgreSQL)."""
    pg, case = archiving, after_a_base_backup
    archive = make_dir(os.path.join(workdir, "archive-" + method))
    listed = json.loads(tool("list", "--archive", pg.archive, check=0).stdout)["files"]
    needed = [f["name"] for f in listed if f["name"].endswith(".history") or f["name"][8:] >= case["start_wal"][8:]]
    assert case["damaged"] in needed and case["last"] in needed
    plain = os.path.join(workdir, "plain-segment")
    for name in needed:  # the archive since the backup, stored with this codec
        tool("fetch", "--archive", pg.archive, name, plain, check=0)
        tool("push", "--archive", archive, "--compress", method, plain, name, check=0)
    os.unlink(plain)
    stored = stored_path(archive, case["damaged"])
    data = bytearray(open(stored, "rb").read())
    if damage == "bit flip":  # the sha256 differs from the checksum file
        data[len(data) // 2] ^= 0x10
    else:  # cut short before its checksum was taken: the checksum matches, it does not decompress
        data = data[: len(data) // 2]
    with open(stored, "wb") as f:
        f.write(bytes(data))
    if damage == "truncated":
        with open(stored + ".sha256", "w") as f:
            f.write("%s  %s\n" % (hashlib.sha256(bytes(data)).hexdigest(), os.path.basename(stored)))
    _chown_tree(archive, OS_USER)
    data_dir = os.path.join(make_dir(os.path.join(workdir, "scratch")), "damaged-" + method)
    proc = tool(
        *AS_OS_USER,
        "recover",
        "--archive",
        archive,
        "--backup",
        case["backup"],
        "--data-dir",
        data_dir,
        "--port",
        str(pg.port + 4),
        "--timeout",
        "120",
    )
    try:
        result = json.loads(proc.stdout)
        assert proc.returncode == EXIT_RECOVERY and result["ok"] is False, proc.stdout + proc.stderr
        assert case["damaged"] in result["msg"] and "could not be restored" in result["msg"], result["msg"]
        log_text = open(data_dir + ".recover.log").read()
        # PostgreSQL itself aborted (exit status above 125): it did not take it for the end.
        assert 'FATAL:  could not restore file "%s" from archive' % case["damaged"] in log_text, log_text[-3000:]
        assert "database system is ready to accept connections" not in log_text
        assert "selected new timeline ID" not in log_text
        assert not os.path.exists(os.path.join(data_dir, "postmaster.pid"))
    finally:
        # recover marked the directory as its scratch cluster: stop --remove deletes it.
        removed = tool(*AS_OS_USER, "stop", "--data-dir", data_dir, "--remove")
        assert removed.returncode == 0, removed.stderr
        assert not os.path.exists(data_dir) and not os.path.exists(data_dir + ".recover.log")
        shutil.rmtree(archive, ignore_errors=True)


# Last in this file: its WAL retention prunes the shared archive below its own base backup,
# and the other tests recover from older base backups that need those segments.
def test_maintenance_basebackup_and_pitr_drill_jobs(archiving, workdir):
    """maintenance.yml --tags basebackup,pitr_drill: a verified base backup with WAL retention, then the drill."""
    pg = archiving
    base_dir = make_dir(os.path.join(workdir, "base-jobs"))
    scratch_parent = make_dir(os.path.join(workdir, "scratch-jobs"))
    results = make_dir(os.path.join(workdir, "results"))
    switch_and_wait(pg)
    extra = dict(
        bosun_pitr_hosts="localhost",
        bosun_pitr_become=False,
        bosun_lock_become=False,
        bosun_maintenance_health=False,
        bosun_maintenance_result_dir=results,
        bosun_pitr_tool=[PYTHON, WAL_TOOL],
        bosun_pitr_os_user=OS_USER.pw_name if OS_USER else os.environ.get("USER", ""),
        bosun_pitr_archive_dir=pg.archive,
        bosun_pitr_base_dir=base_dir,
        bosun_pitr_scratch_dir=os.path.join(scratch_parent, "cluster"),
        bosun_pitr_scratch_port=pg.port + 4,
        bosun_pitr_login_host=pg.host,
        bosun_pitr_login_port=pg.port,
        bosun_pitr_login_user=pg.user,
        bosun_pitr_login_password=pg.password,
        bosun_pitr_archive_wait=ARCHIVE_TIMEOUT * 6,
        bosun_basebackup_keep_last=1,
    )
    oldest_before = min(s[8:24] for s in os.listdir(pg.archive) if len(s) == 16 and s != "history")
    proc = run_playbook("maintenance.yml", extra, workdir, ["--tags", "basebackup"])
    assert pg.password not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    # On a db host the job runs as postgres (become); here as the test's user: hand it over.
    _chown_tree(base_dir, OS_USER)
    proc = run_playbook("maintenance.yml", extra, workdir, ["--tags", "pitr_drill"])
    assert pg.password not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    base = json.load(open(os.path.join(results, "basebackup.json")))
    assert base["status"] == "ok", base
    work = base["work"]["localhost"]
    assert work["backup"]["verified"] is True and work["kept"] == [work["backup"]["path"]]
    # Retention: the archive now starts at the kept base backup's first segment.
    kept_from = work["wal_kept_from"]
    assert kept_from == work["backup"]["start_wal"] and kept_from[8:24] > oldest_before
    left = [f for d in os.listdir(pg.archive) if d != "history" for f in os.listdir(os.path.join(pg.archive, d))]
    assert left and all(f[8:24] >= kept_from[8:24] for f in left)
    drill = json.load(open(os.path.join(results, "pitr_drill.json")))
    assert drill["status"] == "ok", drill
    assert drill["work"]["localhost"]["ok"] is True
    assert drill["work"]["localhost"]["backup"] == work["backup"]["path"]
    assert not os.path.exists(os.path.join(scratch_parent, "cluster"))
