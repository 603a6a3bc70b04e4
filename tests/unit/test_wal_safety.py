"""bosun-wal safety rules: what `stop --remove` may delete, publishing a segment under races,
and the exit code of a fetch that must stop a recovery. Real files and processes in tmp_path."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import wal

from tests.support import wal_tool

SEG = "000000010000000A000000FE"
# bosun-wal's command line, calling this very library (monkeypatches on it apply).
cli = wal_tool.load_cli(wal)
CODECS = ["none", "gzip", "lz4", "zstd"]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    return wal.DirectoryStore(str(root))


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def need(method):
    if method in ("zstd", "lz4") and not shutil.which(method):
        pytest.skip("%s not installed" % method)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def scratch(tmp_path, name="scratch", created=True):
    """A data directory as `recover` leaves it: marked, with its socket directory and log."""
    data = tmp_path / name
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    (data / "base").mkdir()
    (data / "base" / "1").write_bytes(b"x" * 100)
    run = tmp_path / (name + ".run")
    run.mkdir()
    (run / "pg_hba.conf").write_text("local all all trust\n")
    log = tmp_path / (name + ".recover.log")
    log.write_text("LOG:  database system is ready to accept connections\n")
    marker = wal.mark_scratch(str(data), created, socket_dir=str(run), log_file=str(log))
    return data, run, log, marker


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


# -- stop --remove: only a directory recover created ---------------------------------------
def test_stop_remove_deletes_a_marked_scratch_cluster(tmp_path, capsys):
    data, run, log, marker = scratch(tmp_path)
    assert len(marker["id"]) >= 32 and os.path.isfile(data / wal.SCRATCH_MARKER)
    code, result, _err = run_main(["stop", "--data-dir", str(data), "--remove", "--expect-id", marker["id"]], capsys)
    assert code == 0 and result["ok"] is True, result
    assert sorted(result["removed"]) == sorted([str(data), str(run), str(log)])
    assert not data.exists() and not run.exists() and not log.exists()
    # Nothing there any more: nothing to do, still fine.
    code, result, _err = run_main(["stop", "--data-dir", str(data), "--remove"], capsys)
    assert code == 0 and result["removed"] == []


def test_stop_remove_empties_but_keeps_a_directory_it_did_not_create(tmp_path, capsys):
    data, _run, _log, _marker = scratch(tmp_path, created=False)  # e.g. a mount point made by hand
    code, result, _err = run_main(["stop", "--data-dir", str(data), "--remove"], capsys)
    assert code == 0, result
    assert data.is_dir() and os.listdir(data) == []


def test_stop_remove_refuses_an_unmarked_directory(tmp_path, capsys):
    live = tmp_path / "15" / "main"
    live.mkdir(parents=True)
    (live / "PG_VERSION").write_text("15\n")
    (tmp_path / "15" / "main.run").mkdir()
    code, result, err = run_main(["stop", "--data-dir", str(live), "--remove"], capsys)
    assert code == wal.EXIT_REFUSED and result["ok"] is False
    assert str(live) in result["msg"] and "not created by bosun-wal recover" in result["msg"], result
    assert (live / "PG_VERSION").exists() and (tmp_path / "15" / "main.run").is_dir()
    # Its parent (which contains it) neither, and plain `stop` refuses too.
    assert run_main(["stop", "--data-dir", str(tmp_path / "15"), "--remove"], capsys)[0] == wal.EXIT_REFUSED
    assert run_main(["stop", "--data-dir", str(live)], capsys)[0] == wal.EXIT_REFUSED
    assert (live / "PG_VERSION").exists()


def test_stop_remove_refuses_the_live_data_directory_by_name(tmp_path, capsys):
    # Even carrying a valid marker, the live cluster's directory (--protect, as the
    # playbooks pass it), a directory inside it or one containing it is refused.
    data, _run, _log, _marker = scratch(tmp_path, "main")
    inner, _r, _l, _m = scratch(data, "inner")
    for target, protect in ((data, data), (inner, data), (data, inner)):
        code, result, _err = run_main(
            ["stop", "--data-dir", str(target), "--remove", "--protect", str(protect)], capsys
        )
        assert code == wal.EXIT_REFUSED, (target, protect, result)
        assert "live data directory" in result["msg"] and str(protect) in result["msg"]
    # A symlink to it is the same directory.
    link = tmp_path / "link"
    link.symlink_to(data)
    assert run_main(["stop", "--data-dir", str(link), "--remove", "--protect", str(data)], capsys)[0] == (
        wal.EXIT_REFUSED
    )
    assert (data / "PG_VERSION").exists() and (inner / "PG_VERSION").exists()


def test_stop_remove_refuses_a_directory_holding_a_running_server(tmp_path, capsys):
    # A running server's data directory is found without being named: a process whose
    # working directory holds a postmaster.pid naming it (as a postmaster's does).
    outer, _run, _log, _marker = scratch(tmp_path, "outer")
    live = outer / "live"
    live.mkdir()
    proc = subprocess.Popen(["sleep", "60"], cwd=str(live))
    try:
        (live / "postmaster.pid").write_text("%d\n%s\n" % (proc.pid, live))
        code, result, _err = run_main(["stop", "--data-dir", str(outer), "--remove"], capsys)
        assert code == wal.EXIT_REFUSED and "running cluster" in result["msg"], result
        # A marked directory whose postmaster.pid names a server recover did not start.
        (outer / "postmaster.pid").write_text("%d\n%s\n" % (proc.pid, outer))
        shutil.rmtree(live)
        code, result, _err = run_main(["stop", "--data-dir", str(outer), "--remove"], capsys)
        assert code == wal.EXIT_REFUSED and "did not start" in result["msg"], result
        assert proc.poll() is None and (outer / "PG_VERSION").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_copied_marker_or_another_id_is_refused(tmp_path, capsys):
    data, _run, _log, marker = scratch(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / wal.SCRATCH_MARKER, other / wal.SCRATCH_MARKER)
    code, result, _err = run_main(["stop", "--data-dir", str(other), "--remove"], capsys)
    assert code == wal.EXIT_REFUSED and other.is_dir(), result
    code, result, _err = run_main(["stop", "--data-dir", str(data), "--remove", "--expect-id", "0" * 32], capsys)
    assert code == wal.EXIT_REFUSED and marker["id"] in result["msg"] and data.is_dir(), result


def test_recover_refuses_a_scratch_directory_overlapping_the_live_one(tmp_path, capsys):
    live = tmp_path / "live"
    live.mkdir()
    (live / "PG_VERSION").write_text("15\n")
    archive = tmp_path / "archive"
    archive.mkdir()
    for data in (live / "scratch", tmp_path):
        code, result, _err = run_main(
            ["recover", "--archive", str(archive), "--base-dir", str(tmp_path), "--port", "1"]
            + ["--data-dir", str(data), "--protect", str(live)],
            capsys,
        )
        assert code == wal.EXIT_REFUSED and "live data directory" in result["msg"], result
    assert os.listdir(live) == ["PG_VERSION"]


# -- push: link()-based publish ------------------------------------------------------------
def _race(monkeypatch, store, tmp_path, theirs, point):
    """Let another writer archive ``theirs`` as SEG at ``point`` of our push."""
    fired = []

    def competitor():
        fired.append(True)
        wal.push(store, write(tmp_path, "theirs", theirs), SEG, method="gzip")

    if point == "check":  # after our existence check, while our temp file is written
        real = wal.DirectoryStore._write_temp

        def write_temp(self, directory, final_name, data):
            if not fired and final_name == SEG + ".gz":
                competitor()
            return real(self, directory, final_name, data)

        monkeypatch.setattr(wal.DirectoryStore, "_write_temp", write_temp)
    else:  # just before our checksum file goes into place
        real_rename = os.rename

        def rename(src, dst):
            if not fired and dst.endswith(SEG + ".gz" + wal.CHECKSUM_SUFFIX):
                competitor()
            return real_rename(src, dst)

        monkeypatch.setattr(wal.os, "rename", rename)
    return fired


@pytest.mark.parametrize("point", ["check", "checksum"])
def test_a_racing_writer_is_never_overwritten(store, tmp_path, monkeypatch, point, capsys):
    ours, theirs = b"o" * 16384, b"t" * 16384
    fired = _race(monkeypatch, store, tmp_path, theirs, point)
    code = cli.main(["push", "--archive", store.root, "--compress", "gzip", write(tmp_path, SEG, ours), SEG])
    err = capsys.readouterr().err
    assert fired and code == wal.EXIT_CONFLICT, err
    assert "refusing to overwrite" in err
    found = store.find(SEG)
    path = os.path.join(store.root, found.key)
    # The other writer's file, and its checksum file matches it.
    assert wal.decompress(store.read(found.key), "gzip", "x") == theirs
    assert store.read_checksum(found.key) == sha256_file(path)
    assert wal.fetch(store, SEG, str(tmp_path / "out")) and (tmp_path / "out").read_bytes() == theirs
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")] == []


@pytest.mark.parametrize("point", ["check", "checksum"])
def test_a_racing_writer_with_the_same_content_is_success(store, tmp_path, monkeypatch, point, capsys):
    data = os.urandom(2048) * 8
    fired = _race(monkeypatch, store, tmp_path, data, point)
    code = cli.main(["push", "--archive", store.root, "--compress", "gzip", write(tmp_path, SEG, data), SEG])
    err = capsys.readouterr().err
    assert fired and code == 0 and "identical" in err, err
    found = store.find(SEG)
    assert store.read_checksum(found.key) == sha256_file(os.path.join(store.root, found.key))
    assert wal.fetch(store, SEG, str(tmp_path / "out")) and (tmp_path / "out").read_bytes() == data


def test_publish_uses_link_not_rename_for_the_segment(store, tmp_path, monkeypatch):
    renamed = []
    real_rename = os.rename

    def rename(src, dst):
        renamed.append(dst)
        return real_rename(src, dst)

    monkeypatch.setattr(wal.os, "rename", rename)
    wal.push(store, write(tmp_path, SEG, b"z" * 4096), method="gzip")
    assert all(d.endswith(wal.CHECKSUM_SUFFIX) for d in renamed), renamed


# -- fetch: a damaged file stops the recovery ----------------------------------------------
def _damage(store, method, tmp_path, rehash=False):
    need(method)
    wal.push(store, write(tmp_path, SEG, os.urandom(1024) * 16), method=method)
    found = store.find(SEG)
    path = os.path.join(store.root, found.key)
    raw = bytearray(open(path, "rb").read())
    if rehash:  # cut short before its checksum was taken: only decompression can tell
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0x55
    open(path, "wb").write(bytes(raw))
    if rehash:
        store.put_checksum(found.key, hashlib.sha256(bytes(raw)).hexdigest())
    return found


def test_the_fatal_fetch_code_is_one_postgresql_aborts_recovery_on():
    # PostgreSQL (shell_restore/RestoreArchivedFile) raises FATAL for a restore_command
    # whose exit status is above 125 (wait_result_is_any_signal); 1-125 means "not there".
    assert 125 < wal.EXIT_FETCH_FATAL <= 255 and wal.EXIT_FETCH_FATAL != 128 + 15


@pytest.mark.parametrize("method", CODECS)
def test_fetch_of_a_corrupt_file_exits_fatally(store, tmp_path, method, capsys):
    _damage(store, method, tmp_path)
    dest = tmp_path / "dest"
    code = cli.main(["fetch", "--archive", store.root, SEG, str(dest)])
    out, err = capsys.readouterr()
    assert code == wal.EXIT_FETCH_FATAL and out == ""
    assert SEG in err and "corrupt" in err and "cannot restore" in err, err
    assert not dest.exists()
    assert wal.recovery_report(err)["fetch_errors"]


@pytest.mark.parametrize("method", ["gzip", "lz4", "zstd"])
def test_fetch_of_a_file_that_does_not_decompress_exits_fatally(store, tmp_path, method, capsys):
    _damage(store, method, tmp_path, rehash=True)
    dest = tmp_path / "dest"
    code = cli.main(["fetch", "--archive", store.root, SEG, str(dest)])
    err = capsys.readouterr().err
    assert code == wal.EXIT_FETCH_FATAL and SEG in err and "cannot restore" in err, err
    assert not dest.exists()
    assert wal.recovery_report(err)["fetch_errors"]


def test_fetch_without_its_decompressor_or_checksum_exits_fatally(store, tmp_path, monkeypatch, capsys):
    need("lz4")
    wal.push(store, write(tmp_path, SEG, b"l" * 8192), method="lz4")
    monkeypatch.setattr(wal.shutil, "which", lambda name: None)
    assert cli.main(["fetch", "--archive", store.root, SEG, str(tmp_path / "d")]) == wal.EXIT_FETCH_FATAL
    assert "lz4" in capsys.readouterr().err
    monkeypatch.undo()
    os.unlink(os.path.join(store.root, store.find(SEG).key + wal.CHECKSUM_SUFFIX))
    assert cli.main(["fetch", "--archive", store.root, SEG, str(tmp_path / "d")]) == wal.EXIT_FETCH_FATAL
    assert not (tmp_path / "d").exists()


def test_fetch_of_a_missing_file_stays_quiet_with_1_and_bad_usage_is_fatal(store, tmp_path, capsys):
    assert cli.main(["fetch", "--archive", store.root, SEG, str(tmp_path / "d")]) == wal.EXIT_MISSING
    assert cli.main(["fetch", "--archive", store.root, "00000002.history", str(tmp_path / "h")]) == 1
    assert capsys.readouterr() == ("", "")
    # A restore_command that cannot work must not read as "end of the archive".
    assert cli.main(["fetch", "--archive", store.root, SEG]) == wal.EXIT_FETCH_FATAL
    assert cli.main(["fetch", "--archive", str(tmp_path / "unmounted"), SEG, "d"]) == wal.EXIT_FETCH_FATAL
    # push keeps its codes below 126 (a higher one would stop PostgreSQL's archiver).
    assert cli.main(["push", "--archive", store.root]) == wal.EXIT_USAGE
