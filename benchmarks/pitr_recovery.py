"""Benchmark: point-in-time recovery of a ~1 GB pgbench database (RTO), and the RPO of an
idle server against archive_timeout.

Run by hand from the collection root (not part of the test suite):

    .venv/bin/python benchmarks/pitr_recovery.py [--scale 68] [--archive-timeout 60] [--json out.json]

It starts its own PostgreSQL on loopback (tests/support/servers.py) archiving every segment
with bosun-wal (zstd, as the role configures it), then, once each:

  load      pgbench -i -s SCALE (scale 68 is about 1 GB), archived as it is written
  baseline  pg_basebackup -Ft -X stream --compress=client-zstd:1 (no verification)
  module    bosun.platform.postgresql_basebackup with its defaults, run as Ansible runs it
            (the same backup plus extraction and pg_verifybackup, checksums, manifest)
  workload  pgbench for --seconds after the backup (WAL to replay), a noted target time,
            more pgbench after it
  recover   bosun-wal recover to the noted time into a scratch cluster (restore the base
            backup, fetch and replay the archived WAL, promote): the RTO, with its parts
  rpo       on the idle server: one committed row, then the seconds until the segment
            holding it is archived, against archive_timeout

Only loopback is contacted; every step has a timeout; the servers and files are removed at
the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support import wal_tool  # noqa: E402
from tests.support.collection import install  # noqa: E402
from tests.support.modules import run_module  # noqa: E402
from tests.support.servers import PostgresServer, TestCA, _chown_tree, _service_user  # noqa: E402

# Installed as the postgresql role installs it (PostgreSQL runs it as its own user).
WAL_TOOL = wal_tool.command()
PYTHON = wal_tool.PYTHON
OS_USER = _service_user("postgres")


def du(path):
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def wait_archived(pg, name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last[:24] >= name:
            return True
        time.sleep(0.2)
    raise RuntimeError("segment %s not archived within %d s" % (name, timeout))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=68)
    parser.add_argument("--seconds", type=int, default=30, help="pgbench run before and after the target")
    parser.add_argument("--archive-timeout", type=int, default=60)
    parser.add_argument("--json")
    args = parser.parse_args()
    install()
    work = tempfile.mkdtemp(prefix="bosun-pitr-bench-")
    os.chmod(work, 0o755)  # noqa: S103 - the server runs as postgres
    archive = os.path.join(work, "archive")
    base_dir = os.path.join(work, "base")
    for d in (archive, base_dir, os.path.join(work, "scratch")):
        os.makedirs(d, 0o700)
    _chown_tree(work, OS_USER)
    command = "%s %s push --archive %s --compress zstd %%p %%f" % (PYTHON, WAL_TOOL, archive)
    settings = dict(
        wal_level="replica",
        archive_mode="on",
        archive_command="'%s'" % command,
        archive_timeout="%ds" % args.archive_timeout,
        max_wal_size="'4GB'",
        shared_buffers="'256MB'",
        checkpoint_timeout="'15min'",
    )
    figures = dict(scale=args.scale, archive_timeout=args.archive_timeout, load_before=os.getloadavg()[0])
    try:
        with TestCA() as ca, PostgresServer(ca, settings=settings, replication=True) as pg:
            bindir = pg.bindir
            env = pg.env()
            t = time.monotonic()
            subprocess.run(
                [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(args.scale), "-d", "app"],
                env=env,
                check=True,
                capture_output=True,
                timeout=1800,
            )
            figures["load_seconds"] = round(time.monotonic() - t, 1)
            figures["database_bytes"] = int(pg.psql("SELECT pg_database_size('app')"))
            last = pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
            wait_archived(pg, last, 1800)
            figures["archive_catch_up_seconds"] = round(time.monotonic() - t - figures["load_seconds"], 1)
            figures["archive_bytes_after_load"] = du(archive)

            t = time.monotonic()
            bb = os.path.join(work, "baseline")
            subprocess.run(
                [
                    os.path.join(bindir, "pg_basebackup"),
                    "-w",
                    "-D",
                    bb,
                    "-Ft",
                    "-X",
                    "stream",
                    "--compress=client-zstd:1",
                    "-c",
                    "fast",
                ],
                env=env,
                check=True,
                capture_output=True,
                timeout=1800,
            )
            figures["baseline_basebackup_seconds"] = round(time.monotonic() - t, 1)
            figures["baseline_basebackup_bytes"] = du(bb)
            shutil.rmtree(bb)

            t = time.monotonic()
            result = run_module("postgresql_basebackup", dict(pg.conn_args(), backup_dir=base_dir), timeout=1800)
            if result["rc"] != 0:
                raise RuntimeError("postgresql_basebackup failed: %s" % result.get("msg"))
            figures["module_basebackup_seconds"] = round(time.monotonic() - t, 1)
            figures["module_basebackup_bytes"] = result["backup"]["size"]
            _chown_tree(base_dir, OS_USER)

            bench = [os.path.join(bindir, "pgbench"), "-n", "-c", "2", "-T", str(args.seconds), "-d", "app"]
            subprocess.run(bench, env=env, check=True, capture_output=True, timeout=args.seconds + 120)
            target = pg.psql("SELECT clock_timestamp()::text")
            count_at_target = pg.psql("SELECT count(*) FROM pgbench_history", db="app")
            subprocess.run(bench, env=env, check=True, capture_output=True, timeout=args.seconds + 120)
            last = pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
            wait_archived(pg, last, 900)
            figures["wal_to_replay_segments"] = None

            data = os.path.join(work, "scratch", "cluster")
            user = ["--run-as", OS_USER.pw_name] if OS_USER else []
            t = time.monotonic()
            proc = subprocess.run(
                [
                    PYTHON,
                    WAL_TOOL,
                    *user,
                    "recover",
                    "--archive",
                    archive,
                    "--base-dir",
                    base_dir,
                    "--data-dir",
                    data,
                    "--port",
                    str(pg.port + 1),
                    "--target-time",
                    target,
                ],
                capture_output=True,
                text=True,
                timeout=4 * 3600,
                check=False,
            )
            wall = time.monotonic() - t
            if proc.returncode != 0:
                raise RuntimeError("recover failed: %s" % proc.stderr)
            rec = json.loads(proc.stdout)
            got = subprocess.run(
                [
                    os.path.join(bindir, "psql"),
                    "-XAtq",
                    "-h",
                    rec["socket_dir"],
                    "-p",
                    str(pg.port + 1),
                    "-U",
                    "postgres",
                    "-d",
                    "app",
                    "-c",
                    "SELECT count(*) FROM pgbench_history",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            subprocess.run(
                [PYTHON, WAL_TOOL, *user, "stop", "--data-dir", data, "--remove"], check=False, capture_output=True
            )
            figures.update(
                rto_seconds=rec["recovery_seconds"],
                rto_wall_seconds=round(wall, 1),
                extract_seconds=rec["extract_seconds"],
                replay_seconds=rec["replay_seconds"],
                wal_to_replay_segments=rec["segments_restored"],
                history_rows_at_target=int(count_at_target),
                history_rows_recovered=int(got),
                stop=rec.get("stop"),
            )

            # RPO on an idle server: one row, then wait for the archiver.
            time.sleep(2)
            row = pg.psql(
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 0, now()) "
                "RETURNING pg_walfile_name(pg_current_wal_lsn())",
                db="app",
            )
            t = time.monotonic()
            wait_archived(pg, row.splitlines()[0], args.archive_timeout * 3)
            figures["rpo_seconds"] = round(time.monotonic() - t, 1)
            figures["rpo_over_archive_timeout"] = round(figures["rpo_seconds"] / args.archive_timeout, 2)
    finally:
        figures["load_after"] = os.getloadavg()[0]
        shutil.rmtree(work, ignore_errors=True)
    gb = figures.get("database_bytes", 0) / 1e9
    print(
        "database %.2f GB (pgbench scale %d), loaded in %s s, archived (zstd) in %s s more, archive %.0f MB"
        % (
            gb,
            args.scale,
            figures.get("load_seconds"),
            figures.get("archive_catch_up_seconds"),
            figures.get("archive_bytes_after_load", 0) / 1e6,
        )
    )
    print(
        "base backup: pg_basebackup alone %s s (%.0f MB); postgresql_basebackup with verification %s s (%.0f MB)"
        % (
            figures.get("baseline_basebackup_seconds"),
            figures.get("baseline_basebackup_bytes", 0) / 1e6,
            figures.get("module_basebackup_seconds"),
            figures.get("module_basebackup_bytes", 0) / 1e6,
        )
    )
    print(
        "RTO: %s s to recover to the target (extract %s s, fetch+replay of %s segments and promote %s s); "
        "rows at target %s, recovered %s"
        % (
            figures.get("rto_seconds"),
            figures.get("extract_seconds"),
            figures.get("wal_to_replay_segments"),
            figures.get("replay_seconds"),
            figures.get("history_rows_at_target"),
            figures.get("history_rows_recovered"),
        )
    )
    print(
        "RPO on an idle server: %s s with archive_timeout %d s (ratio %s)"
        % (figures.get("rpo_seconds"), args.archive_timeout, figures.get("rpo_over_archive_timeout"))
    )
    print("load average %.1f before, %.1f after" % (figures["load_before"], figures["load_after"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
