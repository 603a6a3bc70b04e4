"""postgresql_basebackup's pure logic: validation, compression, manifests, which WAL is kept."""

import json
import os

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import basebackup, wal
from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import BackupError, write_manifest
from ansible_collections.bosun.platform.plugins.module_utils._backup.tools import Runner
from ansible_collections.bosun.platform.plugins.modules import postgresql_basebackup


def params(**over):
    p = dict((k, v.get("default")) for k, v in postgresql_basebackup.argument_spec().items())
    p.update(backup_dir="/nonexistent", login_password="s3cret 'pw'")
    p.update(over)
    return p


def test_argument_spec_hides_the_password():
    spec = postgresql_basebackup.argument_spec()
    assert spec["login_password"]["no_log"] is True
    assert spec["compression"]["choices"] == basebackup.COMPRESSIONS


@pytest.mark.parametrize(
    "over, fragment",
    [
        (dict(keep_last=0), "keep_last must be at least 1"),
        (dict(label="-x"), "label '-x' is not allowed"),
        (dict(compression="gzip", compression_level=12), "out of range for gzip"),
        (dict(dir_lock_timeout=-1), "dir_lock_timeout must be 0 or more"),
    ],
)
def test_validation_names_the_problem(over, fragment):
    with pytest.raises(BackupError) as exc:
        basebackup.validate(params(**over))
    assert fragment in exc.value.msg


def test_compression_argument():
    assert basebackup.compress_arg(params()) == ("zstd", 1, "client-zstd:1")
    assert basebackup.compress_arg(params(compression="lz4", compression_location="server", compression_level=3)) == (
        "lz4",
        3,
        "server-lz4:3",
    )
    assert basebackup.compress_arg(params(compression="none")) == ("none", None, "none")


def test_backup_manifest_wal_range(tmp_path):
    path = tmp_path / "backup_manifest"
    path.write_text(json.dumps({"WAL-Ranges": [{"Timeline": 3, "Start-LSN": "0/5000028", "End-LSN": "0/5000138"}]}))
    assert basebackup.read_backup_manifest(str(path)) == (3, 0x5000028, 0x5000138)
    path.write_text("{}")
    with pytest.raises(BackupError) as exc:
        basebackup.read_backup_manifest(str(path))
    assert str(path) in exc.value.msg


def fake_backup(directory, stem, start_wal, corrupt=False):
    d = os.path.join(directory, stem + ".dir")
    os.makedirs(d)
    with open(os.path.join(d, "base.tar"), "wb") as f:
        f.write(stem.encode())
    from ansible_collections.bosun.platform.plugins.module_utils._backup.layout import tree_digest, tree_files

    files = tree_files(d)
    manifest = dict(kind="basebackup", file=stem + ".dir", verified=True, files=files, sha256=tree_digest(files))
    manifest.update(size=sum(f["size"] for f in files.values()), start_wal=start_wal)
    manifest.update(
        finished="%s-%s-%sT%s:%s:%s+00:00" % (stem[:4], stem[4:6], stem[6:8], stem[9:11], stem[11:13], stem[13:15])
    )
    write_manifest(os.path.join(directory, stem + ".manifest.json"), manifest)
    if corrupt:
        with open(os.path.join(d, "base.tar"), "ab") as f:
            f.write(b"!")


@pytest.mark.parametrize("check_mode", [True, False])
def test_retention_keeps_the_wal_of_the_oldest_kept_backup(tmp_path, check_mode):
    base = tmp_path / "base"
    base.mkdir()
    archive = tmp_path / "wal"
    archive.mkdir()
    fake_backup(str(base), "20250101T020000Z", "000000010000000000000002")
    fake_backup(str(base), "20250102T020000Z", "000000010000000000000005", corrupt=True)
    fake_backup(str(base), "20250103T020000Z", "000000010000000000000008")
    fake_backup(str(base), "20250104T020000Z", "00000001000000000000000B")
    store = wal.DirectoryStore(str(archive))
    for i in range(1, 13):
        name = "0000000100000000%08X" % i
        (tmp_path / name).write_bytes(name.encode())
        wal.push(store, str(tmp_path / name), method="none")
    p = params(backup_dir=str(base), wal_archive_dir=str(archive), keep_last=2, take_backup=False)
    result = basebackup.run(p, Runner(), check_mode=check_mode)
    assert [os.path.basename(x) for x in result["deleted"]] == ["20250102T020000Z.dir", "20250101T020000Z.dir"]
    assert result["wal_kept_from"] == "000000010000000000000008"
    assert result["wal_deleted"] == ["0000000100000000%08X" % i for i in range(1, 8)]
    assert result["changed"] is True
    left = sorted(s.name for s in store.names())
    if check_mode:
        assert len(left) == 12 and len(os.listdir(base)) == 8
    else:
        assert left == ["0000000100000000%08X" % i for i in range(8, 13)]
        assert sorted(os.listdir(base)) == [
            ".bosun-backup.lock",
            "20250103T020000Z.dir",
            "20250103T020000Z.manifest.json",
            "20250104T020000Z.dir",
            "20250104T020000Z.manifest.json",
        ]
        again = basebackup.run(p, Runner(), check_mode=False)
        assert again["changed"] is False and again["wal_deleted"] == []


def test_no_wal_is_deleted_when_a_kept_backup_does_not_say_what_it_needs(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    archive = tmp_path / "wal"
    archive.mkdir()
    fake_backup(str(base), "20250103T020000Z", None)
    fake_backup(str(base), "20250104T020000Z", "00000001000000000000000B")
    store = wal.DirectoryStore(str(archive))
    (tmp_path / "seg").write_bytes(b"x")
    wal.push(store, str(tmp_path / "seg"), "000000010000000000000001", method="none")
    result = basebackup.run(
        params(backup_dir=str(base), wal_archive_dir=str(archive), keep_last=2, take_backup=False), Runner()
    )
    assert result["wal_deleted"] == [] and result["wal_kept_from"] is None
    assert "no archived WAL was deleted" in result["warnings"][0]
