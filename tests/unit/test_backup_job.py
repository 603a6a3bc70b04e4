"""module_utils._backup.job: the life of a run that postgresql_dump and postgresql_basebackup
share (lock, stale temp files, estimate and free space, name, retention, metrics)."""

import datetime
import os
import time

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import basebackup, dump, job, layout
from ansible_collections.bosun.platform.plugins.module_utils._backup.tools import Runner
from ansible_collections.bosun.platform.plugins.module_utils._io import TEMP_MARKER, human
from ansible_collections.bosun.platform.plugins.modules import postgresql_basebackup, postgresql_dump

from tests.unit.test_backup_layout import make_backup
from tests.unit.test_basebackup import fake_backup

UTC = datetime.timezone.utc


def dumper(directory, check_mode=False, **params):
    d = dump.Dumper(dict(params, backup_dir=str(directory)), Runner(), check_mode=check_mode)
    d.plan = dict(method="zstd")
    return d


def base(directory, check_mode=False, **params):
    return basebackup.BaseBackup(dict(params, backup_dir=str(directory)), Runner(), check_mode=check_mode)


def test_both_modules_take_the_common_options_from_one_spec():
    for module in (postgresql_dump, postgresql_basebackup):
        spec = module.argument_spec()
        for name, option in job.BACKUP_COMMON_ARGS.items():
            assert spec[name] == option and spec[name] is not option
    assert set(job.BACKUP_COMMON_ARGS) == {"label", "retention_checksums", "space_reserve_mb", "dir_lock_timeout"}


def test_a_held_lock_is_a_backup_error_naming_the_lock_file(tmp_path):
    lock = str(tmp_path / layout.LOCK_NAME)
    with job.BackupDirLock(str(tmp_path), check_mode=False):
        for check_mode in (False, True):
            with pytest.raises(layout.BackupError) as exc:
                with job.BackupDirLock(str(tmp_path), check_mode=check_mode):
                    pass
            assert exc.value.msg == "another backup run holds the lock %s (waited 0s, see dir_lock_timeout)" % lock
        started = time.monotonic()
        with pytest.raises(layout.BackupError, match=r"\(waited 1s, see dir_lock_timeout\)"):
            with job.BackupDirLock(str(tmp_path), check_mode=False, timeout=1):
                pass
        assert time.monotonic() - started >= 1
    with job.BackupDirLock(str(tmp_path), check_mode=False):  # released on exit
        pass


def test_check_mode_takes_no_lock_where_there_is_no_lock_file(tmp_path):
    with job.BackupDirLock(str(tmp_path), check_mode=True) as lock:
        assert lock.fd is None
    assert os.listdir(str(tmp_path)) == []


def test_estimates_from_the_last_verified_backup_or_a_first_ratio(tmp_path):
    d = dumper(tmp_path)
    info = dict(data_size=4 * 1024 * 1024)
    assert d._estimate_dump(str(tmp_path), None) == (dump.SCHEMA_ALLOWANCE, "globals")
    assert d._estimate_dump(str(tmp_path), info) == (
        2 * 1024 * 1024 + dump.SCHEMA_ALLOWANCE,
        "table data 4096.0 KiB x 0.50, no earlier backup",
    )
    make_backup(str(tmp_path), "20250101T000000Z", data=b"x" * 1024)
    manifest = str(tmp_path / "20250101T000000Z.manifest.json")
    layout.write_manifest(manifest, dict(layout.read_manifest(manifest), data_size=4096))
    assert d._estimate_dump(str(tmp_path), info) == (
        1024 * 1024 + dump.SCHEMA_ALLOWANCE,
        "table data 4096.0 KiB x ratio 0.250 of the backup 20250101T000000Z",
    )
    b = base(tmp_path)
    assert b._estimate(str(tmp_path / "none"), 1000, basebackup.FIRST_RATIO) == (
        500,
        "cluster 1.0 KiB x 0.50, no earlier base backup",
    )
    fake_backup(str(tmp_path), "20250102T000000Z", None)
    manifest = str(tmp_path / "20250102T000000Z.manifest.json")
    size = layout.read_manifest(manifest)["size"]
    layout.write_manifest(manifest, dict(layout.read_manifest(manifest), cluster_size=size * 4))
    assert b._estimate(str(tmp_path), 4000, basebackup.FIRST_RATIO) == (
        1000,
        "cluster %s x ratio 0.250 of 20250102T000000Z" % human(4000),
    )


def test_preflight_refuses_naming_directory_need_and_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "free_bytes", lambda path: 1024 * 1024)
    d = dumper(tmp_path, space_reserve_mb=2)
    with pytest.raises(layout.BackupError) as exc:
        d._preflight(str(tmp_path), "the backup of app", 1024, "table data 2.0 KiB x 0.50, no earlier backup")
    assert exc.value.msg == (
        "not enough free space in %s for the backup of app: about 2049.0 KiB needed (table data 2.0 KiB x 0.50, "
        "no earlier backup, plus space_reserve_mb 2), 1024.0 KiB free; nothing was written" % tmp_path
    )
    ok = dumper(tmp_path, space_reserve_mb=0)._preflight(str(tmp_path), "x", 1024, "how")
    assert ok == dict(estimate_bytes=1024, free_bytes=1024 * 1024)
    b = base(tmp_path, space_reserve_mb=0)
    with pytest.raises(layout.BackupError) as exc:
        b._preflight(str(tmp_path), "a base backup of local socket:5432", 1024 * 1024, "cluster x", extra=1)
    assert exc.value.msg.startswith("not enough free space in %s for a base backup of local socket:5432" % tmp_path)
    assert exc.value.result["backup_dir"] == str(tmp_path)


def test_a_name_taken_in_the_same_second_waits_for_the_next(tmp_path):
    make_backup(str(tmp_path), "20250101T000000Z-x")
    moments = iter(
        [datetime.datetime(2025, 1, 1, 0, 0, 0, 250000, UTC), datetime.datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)]
    )
    slept = []
    d = dump.Dumper(
        dict(backup_dir=str(tmp_path), label="x"), Runner(), False, now=lambda: next(moments), sleep=slept.append
    )
    started, stem = d._choose_stem(str(tmp_path))
    assert stem == "20250101T000001Z-x" and slept == [pytest.approx(0.8)]
    planned = dump.Dumper(
        dict(backup_dir=str(tmp_path), label="x"),
        Runner(),
        True,
        now=lambda: datetime.datetime(2025, 1, 1, tzinfo=UTC),
        sleep=slept.append,
    )
    assert planned._choose_stem(str(tmp_path))[1] == "20250101T000000Z-x" and len(slept) == 1


@pytest.mark.parametrize("check_mode", [True, False])
def test_check_mode_retention_counts_the_planned_backup(tmp_path, check_mode):
    for day in (1, 2):
        make_backup(str(tmp_path / "dumps"), "2025010%dT000000Z" % day)
        fake_backup(str(tmp_path), "2025010%dT000000Z" % day, "00000001000000000000000%d" % day)

    def now():
        return datetime.datetime(2025, 1, 3, tzinfo=UTC)

    d = dump.Dumper(dict(backup_dir=str(tmp_path), keep_last=1), Runner(), check_mode, now=now)
    d._retention(str(tmp_path / "dumps"), "20250103T000000Z" if check_mode else None)
    b = basebackup.BaseBackup(dict(backup_dir=str(tmp_path), keep_last=1), Runner(), check_mode, now=now)
    b._retention(str(tmp_path), "20250103T000000Z" if check_mode else None)
    if check_mode:  # the planned backup is kept (a dump's by its stem, a base backup's as .dir)
        assert d.result["kept"] == [str(tmp_path / "dumps" / "20250103T000000Z")]
        assert b.result["kept"] == [str(tmp_path / "20250103T000000Z.dir")]
        assert len(d.result["deleted"]) == len(b.result["deleted"]) == 2
    else:
        assert d.result["kept"] == [str(tmp_path / "dumps" / "20250102T000000Z.dump.zst")]
        assert b.result["deleted"] == [str(tmp_path / "20250101T000000Z.dir")]
    assert d.result["changed"] is b.result["changed"] is True


def test_stale_temp_files_go_only_outside_check_mode(tmp_path):
    stale = tmp_path / (".20250101T000000Z.dir" + TEMP_MARKER + "abc")
    (stale / "backup").mkdir(parents=True)
    planned = base(tmp_path, check_mode=True)
    planned._remove_stale(str(tmp_path))
    assert planned.result["stale_temp_files"] == [str(stale)] and stale.exists()
    done = base(tmp_path)
    done._remove_stale(str(tmp_path))
    assert done.result["stale_temp_files"] == [str(stale)] and not stale.exists()
    assert done.result["changed"] is True


def test_metrics_that_cannot_be_written_are_reported_not_raised(tmp_path):
    missing = str(tmp_path / "no such dir")
    d = dumper(tmp_path, metrics_dir=missing)
    d._write_metrics(str(tmp_path / "app"), ("database", "app"), True, time.time())
    assert d.result["failed"][0]["database"] == "app"
    assert d.result["failed"][0]["msg"].startswith("cannot write metrics to %s: " % missing)
    b = base(tmp_path, metrics_dir=missing)
    b._write_metrics(str(tmp_path), None, True, time.time())
    assert b.result["warnings"][0].startswith("cannot write metrics to %s: " % missing)
    assert d.result["metrics_files"] == b.result["metrics_files"] == []
    written = base(tmp_path, metrics_dir=str(tmp_path))
    written._write_metrics(str(tmp_path), None, False, 1700000000.12345)
    text = (tmp_path / basebackup.METRICS_FILE).read_text()
    assert "bosun_basebackup_last_status 0\n" in text
    assert "bosun_basebackup_last_run_timestamp_seconds 1700000000.123\n" in text
    assert written.result["metrics_files"] == [str(tmp_path / basebackup.METRICS_FILE)]
