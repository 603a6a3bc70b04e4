"""module_utils._backup.tools and pipeline: versions, compression plans, exit codes, redaction."""

import errno
import os
import shutil
import subprocess
import sys

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import dump, metrics, tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import BackupError
from ansible_collections.bosun.platform.plugins.module_utils._backup.pipeline import Stage, TailHasher, run_pipeline

PY = sys.executable


def which_all(name):
    return "/usr/bin/%s" % name


def which_none(_name):
    return None


# -- versions ---------------------------------------------------------------------------
def test_parse_versions():
    assert tools.parse_client_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") == 1500
    assert tools.parse_client_version("pg_dump (PostgreSQL) 17beta1") == 1700
    assert tools.parse_client_version("pg_dump (PostgreSQL) 9.6.24") == 906
    assert tools.parse_client_version("something else") is None
    assert tools.major_of_server(150010) == 1500
    assert tools.major_of_server(90624) == 906
    assert tools.major_label(1500) == "15" and tools.major_label(906) == "9.6"


def test_older_client_cannot_dump_newer_server():
    tools.check_can_dump("pg_dump", 1600, 1500, "db1:5432")
    tools.check_can_dump("pg_dump", 1500, 1500, "db1:5432")
    with pytest.raises(BackupError, match=r"pg_dump is PostgreSQL 15 but the server db1:5432 runs 16.*bin_dir"):
        tools.check_can_dump("pg_dump", 1500, 1600, "db1:5432")


def test_find_program_prefers_bin_dir_and_names_it_when_missing(tmp_path):
    prog = tmp_path / "pg_dump"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(0o755)
    assert tools.find_program("pg_dump", str(tmp_path)) == str(prog)
    with pytest.raises(BackupError, match="pg_restore not found in bin_dir"):
        tools.find_program("pg_restore", str(tmp_path))
    fake = tmp_path / "lib" / "14" / "bin"
    fake.mkdir(parents=True)
    (fake / "psql").write_text("")
    newer = tmp_path / "lib" / "16" / "bin"
    newer.mkdir(parents=True)
    (newer / "psql").write_text("")
    found = tools.find_program("psql", which=which_none, debian_glob=str(tmp_path / "lib" / "*" / "bin"))
    assert found == str(newer / "psql")


# -- compression plans --------------------------------------------------------------------
def test_auto_streams_zstd_on_15_with_the_tool():
    p = tools.plan_compression("auto", "custom", 1500, which=which_all)
    assert p["method"] == "zstd" and p["via"] == "stream" and p["ext"] == ".dump.zst"
    assert p["dump_args"] == ["-Z0"]
    assert p["stream_args"] == ["/usr/bin/zstd", "-1", "-T0", "-q", "-c"]


def test_auto_falls_back_to_gzip_without_zstd_or_for_directory_on_15():
    assert tools.plan_compression("auto", "custom", 1500, which=which_none)["method"] == "gzip"
    p = tools.plan_compression("auto", "directory", 1500, which=which_all)
    assert p["method"] == "gzip" and p["via"] == "pg_dump" and p["dump_args"] == ["-Z6"] and p["ext"] == ".dir"


def test_native_compression_from_16():
    p = tools.plan_compression("zstd", "directory", 1600, level=3, which=which_none)
    assert p["via"] == "pg_dump" and p["dump_args"] == ["--compress=zstd:3"] and p["ext"] == ".dir"
    p = tools.plan_compression("lz4", "custom", 1700, which=which_none)
    assert p["dump_args"] == ["--compress=lz4:1"] and p["ext"] == ".dump"
    assert tools.plan_compression("auto", "custom", 1600, which=which_none)["method"] == "zstd"


def test_lz4_stream_and_none():
    p = tools.plan_compression("lz4", "custom", 1500, level=9, threads=4, which=which_all)
    assert p["stream_args"] == ["/usr/bin/lz4", "-9", "-q", "-c"] and p["ext"] == ".dump.lz4"
    p = tools.plan_compression("none", "custom", 1500, which=which_all)
    assert p["via"] == "pg_dump" and p["dump_args"] == ["-Z0"] and p["ext"] == ".dump"


def test_impossible_plans_are_refused_clearly():
    with pytest.raises(BackupError, match="directory format needs pg_dump 16"):
        tools.plan_compression("zstd", "directory", 1500, which=which_all)
    with pytest.raises(BackupError, match="needs the lz4 program"):
        tools.plan_compression("lz4", "custom", 1500, which=which_none)
    with pytest.raises(BackupError, match="out of range for zstd"):
        tools.plan_compression("zstd", "custom", 1500, level=22, which=which_all)
    with pytest.raises(BackupError, match="out of range for gzip"):
        tools.plan_compression("gzip", "custom", 1500, level=10, which=which_all)


# -- runner and redaction -----------------------------------------------------------------
def test_runner_records_and_redacts():
    secret = "pa'ss $word x"
    runner = tools.Runner([secret])
    rc, out, err = runner.run(
        [PY, "-c", "import sys; print('out %s' % sys.argv[1]); sys.stderr.write('err ' + sys.argv[1])", secret]
    )
    assert rc == 0
    assert secret not in out and secret not in err and "********" in out
    assert all(secret not in c for c in runner.commands)


def test_runner_passes_environment_not_argv():
    runner = tools.Runner(["s3cret"])
    env = dict(os.environ, PGPASSWORD="s3cret")
    rc, out, _err = runner.run([PY, "-c", "import os; print(len(os.environ['PGPASSWORD']))"], env)
    assert rc == 0 and out.strip() == "6"
    assert "s3cret" not in " ".join(runner.commands)


def test_env_without_pg_drops_password():
    env = tools.env_without_pg({"PGPASSWORD": "x", "PGHOST": "h", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}


# -- pipelines ------------------------------------------------------------------------------
def producer(code):
    return Stage([PY, "-c", code], name="producer")


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed")
def test_killed_producer_fails_the_pipeline_although_the_compressor_succeeds():
    # What `pg_dump | zstd` in a shell hides: zstd ends a valid frame and exits 0.
    stages = [
        producer("import os, signal, sys; sys.stdout.write('x' * 100000); sys.stdout.flush(); os.kill(os.getpid(), 9)"),
        Stage(["zstd", "-1", "-q", "-c"]),
    ]
    chunks = []
    res = run_pipeline(stages, sink=chunks.append)
    assert res.returncodes[1] == 0 and res.returncodes[0] == -9
    assert res.failures() == ["producer was killed by SIGKILL"]
    assert not res.ok


def test_failing_consumer_reported_with_its_stderr():
    stages = [
        producer("print('data')"),
        Stage([PY, "-c", "import sys; sys.stderr.write('disk on fire'); sys.exit(3)"], name="sink"),
    ]
    res = run_pipeline(stages)
    failures = res.failures()
    assert any(f == "sink failed (rc=3): disk on fire" for f in failures)


def test_reader_that_stops_early_is_fine_only_when_allowed():
    # `yes` dies of SIGPIPE as zstd -dc does when pg_restore --list stops reading.
    head = [PY, "-c", "import sys; sys.stdin.buffer.read(10); sys.stdout.write('ok')"]
    res = run_pipeline([Stage(["yes"], cut_short_ok=True), Stage(head, name="head")])
    assert res.ok and res.stdout == b"ok"
    res = run_pipeline([Stage(["yes"]), Stage(head, name="head")])
    assert not res.ok and "yes was killed by SIGPIPE" in res.failures()[0]


def test_sink_error_kills_every_stage_and_propagates():
    stages = [producer("import sys\nwhile True:\n    sys.stdout.write('z' * 65536)\n"), Stage(["cat"])]

    def full_disk(_chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run_pipeline(stages, sink=full_disk)


def test_pipeline_stderr_is_redacted():
    runner = tools.Runner(["hunter2"])
    res = run_pipeline(
        [Stage([PY, "-c", "import sys; sys.stderr.write('bad hunter2'); sys.exit(1)"], name="p")], runner=runner
    )
    assert res.failures() == ["p failed (rc=1): bad ********"]


# -- dump helpers ---------------------------------------------------------------------------
TOC = """;
; Archive created at 2025-01-01 00:00:00 UTC
;     TOC Entries: 12
;     Format: CUSTOM
;
214; 1259 16387 TABLE public orders app
215; 1259 16394 TABLE public we ird postgres
216; 1259 16399 TABLE sales q1 app
3348; 0 16387 TABLE DATA public orders app
3205; 2606 16393 CONSTRAINT public orders orders_pkey app
"""


def test_parse_toc_and_missing_tables():
    entries, listed = dump.parse_toc(TOC)
    assert entries == 12
    assert listed == ["public orders app", "public we ird postgres", "sales q1 app"]
    assert dump.missing_tables([("public", "orders"), ("public", "we ird"), ("sales", "q1")], listed) == []
    assert dump.missing_tables([("public", "order"), ("public", "gone")], listed) == ["public.order", "public.gone"]


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(db="a", all_databases=True), "mutually exclusive"),
        (dict(), "name a database"),
        (dict(db="a", label="no spaces"), "label"),
        (dict(db="a", keep_min_verified=0), "at least 1"),
        (dict(db="a", keep_last=0), "keep_last: 0 alone"),
        (dict(db="a", keep_days=-1), "keep_days must be 0 or more"),
        (dict(db="a", jobs=4, format="custom"), "needs format: directory"),
    ],
)
def test_dump_argument_rules(params, message):
    full = dict(keep_min_verified=1, jobs=1, format="custom")
    full.update(params)
    with pytest.raises(BackupError, match=message):
        dump.validate(full)


def test_drill_metrics_keep_the_last_success_on_failure(tmp_path):
    d = str(tmp_path)
    metrics.write_drill_metrics(
        d, "app", database="app", ok=True, run_at=1000.0, restore_seconds=12.5, backup_age=3600.0
    )
    metrics.write_drill_metrics(
        d, "app", database="app", ok=False, run_at=2000.0, restore_seconds=None, backup_age=7200.0
    )
    text = (tmp_path / "bosun_restore_drill_app.prom").read_text()
    assert 'bosun_restore_drill_last_status{database="app"} 0' in text
    assert 'bosun_restore_drill_last_success_timestamp_seconds{database="app"} 1000.0' in text
    assert 'bosun_restore_drill_last_run_timestamp_seconds{database="app"} 2000.0' in text
    assert 'bosun_restore_drill_restore_seconds{database="app"} NaN' in text


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd not installed")
def test_pipeline_last_stage_writes_a_file_directly(tmp_path):
    out_path = tmp_path / "out.zst"
    with open(str(out_path), "wb") as out:
        res = run_pipeline([producer("print('row ' * 1000)"), Stage(["zstd", "-1", "-q", "-c"])], stdout=out)
    assert res.ok and res.stdout is None
    proc = subprocess.run(["zstd", "-dcq", str(out_path)], capture_output=True, check=True)
    assert proc.stdout == ("row " * 1000 + "\n").encode()


def test_debian_pg_wrapper_is_bypassed_for_the_newest_versioned_binary(tmp_path):
    wrapper = tmp_path / "share" / "pg_wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text("#!/usr/bin/perl\n")
    link = tmp_path / "bin" / "pg_dump"
    link.parent.mkdir()
    link.symlink_to(wrapper)
    for version in ("13", "15"):
        d = tmp_path / "lib" / version / "bin"
        d.mkdir(parents=True)
        (d / "pg_dump").write_text("")
    found = tools.find_program("pg_dump", which=lambda _n: str(link), debian_glob=str(tmp_path / "lib" / "*" / "bin"))
    assert found == str(tmp_path / "lib" / "15" / "bin" / "pg_dump")
    # Without versioned directories the wrapper is still better than nothing.
    found = tools.find_program("pg_dump", which=lambda _n: str(link), debian_glob=str(tmp_path / "none" / "*"))
    assert found == str(link)


def test_tail_hasher_matches_a_file_written_while_it_reads(tmp_path):
    import hashlib

    path = str(tmp_path / "growing")
    code = (
        "import sys, time\n"
        "for i in range(20):\n"
        "    sys.stdout.write(str(i) * 70000)\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(0.01)\n"
    )
    with open(path, "wb") as out:
        hasher = TailHasher(path, poll=0.005)
        hasher.start()
        res = run_pipeline([producer(code)], stdout=out)
        digest, size = hasher.finish()
    assert res.ok
    data = open(path, "rb").read()
    assert size == len(data) == sum(len(str(i)) * 70000 for i in range(20))
    assert digest == hashlib.sha256(data).hexdigest()
