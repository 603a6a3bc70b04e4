"""bosun-wal (the library module_utils/_backup/wal.py, and the command line the postgresql role
ships, files/bosun_wal_cli.py): names, push/fetch rules, exit codes, cleanup, choosing a base
backup and reading the recovery log. Real files in tmp_path; no server."""

import errno
import hashlib
import json
import os

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import wal

from tests.support import wal_tool

SEG = "000000010000000A000000FE"
# bosun-wal's command line, calling this very library (monkeypatches on it apply).
cli = wal_tool.load_cli(wal)


def segment_bytes(fill=b"x"):
    return fill * 1024 * 16


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    return wal.DirectoryStore(str(root))


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_names_lsns_and_segments():
    for good in (SEG, "00000002.history", SEG + ".partial", SEG + ".00000028.backup"):
        assert wal.check_name(good) == good
    for bad in ("", "../" + SEG, SEG.lower(), SEG + ".gz", "RECOVERYHISTORY", "00000002.history/x"):
        with pytest.raises(wal.WalError) as exc:
            wal.check_name(bad)
        assert exc.value.code == wal.EXIT_USAGE
    assert wal.parse_lsn("0/3000028") == 0x3000028 and wal.format_lsn(0x1_0300_0028) == "1/3000028"
    assert wal.segment_name(1, wal.parse_lsn("0/3000028")) == "000000010000000000000003"
    assert wal.segment_name(2, wal.parse_lsn("1/FF000000")) == "0000000200000001000000FF"
    assert wal.segment_name(1, wal.parse_lsn("0/3000028"), 64 * 1024 * 1024) == "000000010000000000000000"
    with pytest.raises(ValueError):
        wal.parse_lsn("3000028")


@pytest.mark.parametrize("method", ["none", "gzip", "zstd", "lz4"])
def test_push_fetch_round_trip_with_checksum(store, tmp_path, method):
    if method in ("zstd", "lz4") and not wal.shutil.which(method):
        pytest.skip("%s not installed" % method)
    data = os.urandom(4096) + segment_bytes()
    msg = wal.push(store, write(tmp_path, SEG, data), method=method)
    assert "archived %s" % SEG in msg
    found = store.find(SEG)
    assert found.compression == method and found.key == os.path.join(SEG[:16], SEG + wal.EXTENSIONS[method])
    stored = store.read(found.key)
    assert store.read_checksum(found.key) == hashlib.sha256(stored).hexdigest()
    assert [n for n in os.listdir(os.path.join(store.root, SEG[:16])) if n.startswith(".")] == []
    dest = tmp_path / "out"
    assert wal.fetch(store, SEG, str(dest)) is True
    assert dest.read_bytes() == data


def test_push_identical_is_ok_different_is_refused(store, tmp_path):
    data = segment_bytes()
    wal.push(store, write(tmp_path, SEG, data), method="gzip")
    key = store.find(SEG).key
    before = store.read(key)
    # Same content, other compression requested: still "already archived".
    assert "identical" in wal.push(store, write(tmp_path, "again", data), SEG, method="none")
    with pytest.raises(wal.WalError) as exc:
        wal.push(store, write(tmp_path, "other", segment_bytes(b"y")), SEG, method="gzip")
    assert exc.value.code == wal.EXIT_CONFLICT and SEG in exc.value.msg and "different content" in exc.value.msg
    assert store.read(key) == before and store.find(SEG).key == key


def test_identical_push_repairs_a_missing_checksum(store, tmp_path):
    data = segment_bytes()
    wal.push(store, write(tmp_path, SEG, data), method="gzip")
    key = store.find(SEG).key
    os.unlink(os.path.join(store.root, key + ".sha256"))
    with pytest.raises(wal.WalError):  # fetch refuses a file without its checksum
        wal.fetch(store, SEG, str(tmp_path / "o"))
    wal.push(store, write(tmp_path, "again", data), SEG, method="gzip")
    assert wal.fetch(store, SEG, str(tmp_path / "o"))


def test_fetch_missing_and_corrupt(store, tmp_path):
    assert wal.fetch(store, SEG, str(tmp_path / "o")) is False
    wal.push(store, write(tmp_path, SEG, segment_bytes()), method="gzip")
    path = os.path.join(store.root, store.find(SEG).key)
    raw = bytearray(open(path, "rb").read())
    raw[10] ^= 0x40
    open(path, "wb").write(bytes(raw))
    with pytest.raises(wal.WalError) as exc:
        wal.fetch(store, SEG, str(tmp_path / "o"))
    assert exc.value.code == wal.EXIT_CORRUPT and SEG in exc.value.msg and "corrupt" in exc.value.msg
    assert not (tmp_path / "o").exists()


def test_disk_full_leaves_no_file_and_a_clean_retry_works(store, tmp_path, monkeypatch):
    src = write(tmp_path, SEG, segment_bytes())
    real_write_temp = wal.DirectoryStore._write_temp
    calls = []

    def full(self, directory, final_name, data):
        calls.append(final_name)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_temp(self, directory, final_name, data)

    monkeypatch.setattr(wal.DirectoryStore, "_write_temp", full)
    with pytest.raises(wal.WalError) as exc:
        wal.push(store, src, method="none")
    assert exc.value.code == wal.EXIT_NO_SPACE and "nothing was written" in exc.value.msg
    assert store.find(SEG) is None
    assert os.listdir(os.path.join(store.root, SEG[:16])) == []
    wal.push(store, src, method="none")
    assert wal.fetch(store, SEG, str(tmp_path / "o"))


def test_main_exit_codes_stay_below_126(store, tmp_path, capsys):
    src = write(tmp_path, SEG, segment_bytes())
    assert cli.main(["push", "--archive", store.root, src, SEG]) == 0
    assert cli.main(["push", "--archive", store.root, write(tmp_path, "b", b"other"), SEG]) == 3
    assert cli.main(["push", "--archive", str(tmp_path / "unmounted"), src, SEG]) == 6
    assert cli.main(["fetch", "--archive", store.root, "00000005.history", str(tmp_path / "h")]) == 1
    assert cli.main(["push", "--archive", store.root, src, "not-a-wal-name"]) == 2
    assert cli.main(["push"]) == 2  # usage errors too: no SystemExit from argparse
    out, err = capsys.readouterr()
    assert out == ""  # archive_command/restore_command print nothing on stdout
    assert "refusing to overwrite" in err and "does not exist" in err
    assert cli.main(["list", "--archive", store.root]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in listed["files"]] == [SEG]


def test_cleanup_plan_keeps_history_and_everything_from_the_limit(store, tmp_path):
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000002.00000028.backup",
        "000000010000000000000003",
        "000000020000000000000003",
        "00000002.history",
        "000000020000000000000004",
    ]
    for name in names:
        wal.push(store, write(tmp_path, name, name.encode()), method="none")
    doomed = [s.name for s in wal.cleanup_plan(store, "000000020000000000000003")]
    assert doomed == [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000002.00000028.backup",
    ]


def test_choose_backup_by_target():
    backups = [
        dict(path="/b/new", finished="2025-03-02T02:00:00+00:00", end_lsn_num=0x9000000),
        dict(path="/b/old", finished="2025-03-01T02:00:00+00:00", end_lsn_num=0x5000000),
    ]
    assert wal.choose_backup(backups)["path"] == "/b/new"
    assert wal.choose_backup(backups, target_time=wal._parse_time("2025-03-01 12:00:00+00"))["path"] == "/b/old"
    assert wal.choose_backup(backups, target_lsn=0x6000000)["path"] == "/b/old"
    with pytest.raises(wal.WalError) as exc:
        wal.choose_backup(backups, target_time=wal._parse_time("2025-02-01T00:00:00Z"))
    assert "no base backup ends before" in exc.value.msg
    with pytest.raises(ValueError):
        wal._parse_time("2025-03-01 12:00:00")  # no zone: refused, not guessed


def test_recovery_report_reads_the_server_log():
    text = (
        '2025 UTC [1] LOG:  restored log file "000000010000000000000003" from archive\n'
        '2025 UTC [1] LOG:  restored log file "000000010000000000000004" from archive\n'
        "2025 UTC [1] LOG:  recovery stopping before commit of transaction 750, time 2025-03-01 12:00:01+00\n"
        "2025 UTC [1] LOG:  redo done at 0/4000F00 system usage: CPU: user: 0.00 s\n"
        "2025 UTC [1] LOG:  last completed transaction was at log time 2025-03-01 12:00:00.5+00\n"
        "2025 UTC [1] LOG:  selected new timeline ID: 2\n"
    )
    report = wal.recovery_report(text)
    assert report["stop"].startswith("recovery stopping before commit of transaction 750")
    assert report["redo_done_lsn"] == "0/4000F00" and report["timeline"] == 2
    assert report["segments_restored"] == 2 and report["fetch_errors"] == []
    bad = wal.recovery_report("bosun-wal: 000000010000000000000004 is corrupt: the sha256 of x\n")
    assert bad["fetch_errors"] and "000000010000000000000004" in bad["fetch_errors"][0]


def test_a_crashed_push_leaves_a_temp_file_that_a_later_push_removes(store, tmp_path):
    directory = os.path.join(store.root, SEG[:16])
    os.makedirs(directory)
    stale = os.path.join(directory, "." + SEG + ".gz" + wal.TEMP_MARKER + "abc")
    fresh = os.path.join(directory, "." + SEG + ".gz" + wal.TEMP_MARKER + "def")
    for path in (stale, fresh):
        with open(path, "wb") as f:
            f.write(b"half")
    old = os.path.getmtime(stale) - wal.STALE_TEMP_SECONDS - 5
    os.utime(stale, (old, old))
    assert store.find(SEG) is None  # a temp file is never taken for the segment
    wal.push(store, write(tmp_path, SEG, segment_bytes()), method="gzip")
    assert not os.path.exists(stale) and os.path.exists(fresh)
