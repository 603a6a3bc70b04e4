"""module_utils._backup.layout: names, manifests, what counts as a verified copy."""

import datetime
import hashlib
import os

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import layout
from ansible_collections.bosun.platform.plugins.module_utils._io import TEMP_MARKER

UTC = datetime.timezone.utc


def make_backup(directory, stem, *, data=b"backup bytes", ext=".dump.zst", verified=True, manifest=True):
    """A backup file plus a manifest that matches it (as postgresql_dump writes them)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, stem + ext)
    with open(path, "wb") as f:
        f.write(data)
    if manifest:
        layout.write_manifest(
            os.path.join(directory, stem + layout.MANIFEST_SUFFIX),
            dict(file=stem + ext, size=len(data), sha256=hashlib.sha256(data).hexdigest(), verified=verified),
        )
    return path


@pytest.mark.parametrize(
    "name",
    ["app", "my db", 'bosun "odd" db\'s name', "../etc", "a/b", ".hidden", "_globals", "naïve", "100%", "%41"],
)
def test_db_dirname_is_safe_and_reversible(name):
    encoded = layout.db_dirname(name)
    assert "/" not in encoded and " " not in encoded and "'" not in encoded and '"' not in encoded
    assert not encoded.startswith(".") and encoded not in ("..", ".")
    assert encoded != layout.GLOBALS_DIR
    assert layout.dbname_from_dirname(encoded) == name


def test_plain_names_stay_readable():
    assert layout.db_dirname("app_prod-1.v2") == "app_prod-1.v2"


def test_parse_names():
    assert layout.parse_name("20250102T030405Z.dump.zst") == ("20250102T030405Z", None, ".dump.zst")
    assert layout.parse_name("20250102T030405Z-pre-restore.dump") == ("20250102T030405Z", "pre-restore", ".dump")
    assert layout.parse_name("20250102T030405Z-x.manifest.json") == ("20250102T030405Z", "x", ".manifest.json")
    assert layout.parse_name("20250102T030405Z.dir") == ("20250102T030405Z", None, ".dir")
    for bad in ("20250102T030405Z.tar", "2025-01-02.dump", "20250102T030405Z--x.dump", "x20250102T030405Z.dump"):
        assert layout.parse_name(bad) is None


def test_label_rule():
    assert layout.LABEL_RE.match("pre-restore_2")
    for bad in ("-x", "a b", "a.b", "x" * 65, "", "a/b"):
        assert not layout.LABEL_RE.match(bad)


def test_list_backups_newest_first_ignores_temp_and_lock(tmp_path):
    d = str(tmp_path)
    make_backup(d, "20250101T000000Z")
    make_backup(d, "20250103T000000Z-daily")
    make_backup(d, "20250102T000000Z")
    open(os.path.join(d, ".20250104T000000Z.dump.zst%sabc" % TEMP_MARKER), "w").close()
    open(os.path.join(d, layout.LOCK_NAME), "w").close()
    open(os.path.join(d, "notes.txt"), "w").close()
    entries = layout.list_backups(d)
    assert [e.stem for e in entries] == ["20250103T000000Z-daily", "20250102T000000Z", "20250101T000000Z"]
    assert entries[0].label == "daily"
    assert entries[0].timestamp == datetime.datetime(2025, 1, 3, tzinfo=UTC)
    assert layout.stale_temp_names(d) == [".20250104T000000Z.dump.zst%sabc" % TEMP_MARKER]


def test_check_accepts_intact_and_names_each_fault(tmp_path):
    d = str(tmp_path)
    good = make_backup(d, "20250101T000000Z")
    flipped = make_backup(d, "20250102T000000Z", data=b"0123456789")
    with open(flipped, "r+b") as f:
        f.seek(3)
        f.write(b"X")
    truncated = make_backup(d, "20250103T000000Z", data=b"0123456789")
    with open(truncated, "r+b") as f:
        f.truncate(5)
    make_backup(d, "20250104T000000Z", verified=False)
    make_backup(d, "20250105T000000Z", manifest=False)
    with open(os.path.join(d, "20250106T000000Z.manifest.json"), "w") as f:
        f.write("{not json")
    open(os.path.join(d, "20250106T000000Z.dump.zst"), "w").close()
    verdicts = dict((e.stem, e.check()) for e in layout.list_backups(d))
    assert verdicts["20250101T000000Z"] == (True, None)
    assert good.endswith(".dump.zst")
    assert verdicts["20250102T000000Z"][0] is False and "sha256" in verdicts["20250102T000000Z"][1]
    assert verdicts["20250103T000000Z"][0] is False and "size 5 bytes" in verdicts["20250103T000000Z"][1]
    assert verdicts["20250104T000000Z"][0] is False and "not verified" in verdicts["20250104T000000Z"][1]
    assert verdicts["20250105T000000Z"] == (False, "no manifest")
    assert verdicts["20250106T000000Z"][0] is False and "unreadable" in verdicts["20250106T000000Z"][1]
    # Without checksums a same-size flip goes unnoticed: that is what retention_checksums buys.
    flipped_entry = [e for e in layout.list_backups(d) if e.stem == "20250102T000000Z"][0]
    assert flipped_entry.check(checksum=False) == (True, None)


def test_missing_backup_file_is_reported(tmp_path):
    d = str(tmp_path)
    path = make_backup(d, "20250101T000000Z")
    os.unlink(path)
    (entry,) = layout.list_backups(d)
    ok, reason = entry.check()
    assert not ok and "missing" in reason
    assert entry.display_path == entry.manifest_path


def test_directory_backup_tree_checks(tmp_path):
    d = tmp_path / "db"
    tree = d / "20250101T000000Z.dir"
    tree.mkdir(parents=True)
    (tree / "toc.dat").write_bytes(b"toc")
    (tree / "3001.dat.gz").write_bytes(b"data")
    files = layout.tree_files(str(tree))
    layout.write_manifest(
        str(d / "20250101T000000Z.manifest.json"),
        dict(file="20250101T000000Z.dir", size=7, sha256=layout.tree_digest(files), files=files, verified=True),
    )
    (entry,) = layout.list_backups(str(d))
    assert entry.check() == (True, None)
    (tree / "3001.dat.gz").write_bytes(b"dat4")
    ok, reason = entry.check()
    assert not ok and "3001.dat.gz" in reason
    (tree / "3001.dat.gz").unlink()
    ok, reason = entry.check()
    assert not ok and "missing ['3001.dat.gz']" in reason


def test_entry_for_path_accepts_backup_or_manifest(tmp_path):
    d = str(tmp_path)
    path = make_backup(d, "20250101T000000Z-x")
    assert layout.entry_for_path(path).stem == "20250101T000000Z-x"
    assert layout.entry_for_path(os.path.join(d, "20250101T000000Z-x.manifest.json")).backup_name == os.path.basename(
        path
    )
    assert layout.entry_for_path(os.path.join(d, "whatever.dump")) is None
    assert layout.entry_for_path(os.path.join(d, "20990101T000000Z.dump")) is None


def test_manifest_written_atomically_with_private_mode(tmp_path):
    path = str(tmp_path / "m.manifest.json")
    layout.write_manifest(path, dict(file="x", sha256="y"))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert layout.read_manifest(path) == dict(file="x", sha256="y")
    with open(path, "w") as f:
        f.write("[]")
    with pytest.raises(ValueError, match="lacks"):
        layout.read_manifest(path)


def test_same_second_backups_ordered_by_manifest_start(tmp_path):
    d = str(tmp_path)
    for label, started in (("zz", "2025-01-01T00:00:00.100000+00:00"), ("aa", "2025-01-01T00:00:00.900000+00:00")):
        name = "20250101T000000Z-%s.dump" % label
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"x")
        layout.write_manifest(
            os.path.join(d, "20250101T000000Z-%s.manifest.json" % label),
            dict(file=name, size=1, sha256=hashlib.sha256(b"x").hexdigest(), verified=True, started=started),
        )
    assert [e.label for e in layout.list_backups(d)] == ["aa", "zz"]
