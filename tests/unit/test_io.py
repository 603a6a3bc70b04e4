"""module_utils._io: atomic writes, metrics, redaction."""

import os

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _io


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    _io.atomic_write(str(dest), "new")
    assert dest.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    dest = tmp_path / "out.json"
    dest.write_text("old")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        _io.atomic_write(str(dest), "new")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_temp_names_are_recognisable(tmp_path):
    tmp = _io.temp_path_for(str(tmp_path / "backup.dump"))
    assert os.path.dirname(tmp) == str(tmp_path)
    assert _io.TEMP_MARKER in os.path.basename(tmp)


def test_sha256(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert _io.sha256_file(str(f)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_render_metrics_escapes_labels():
    text = _io.render_metrics([("bosun_x", "help", "gauge", [({"db": 'a"b\\c'}, 1)])])
    assert 'bosun_x{db="a\\"b\\\\c"} 1' in text
    assert text.startswith("# HELP bosun_x help\n# TYPE bosun_x gauge\n")


def test_textfile_name_checked(tmp_path):
    with pytest.raises(ValueError):
        _io.write_textfile_metrics(str(tmp_path), "x.txt", [])
    _io.write_textfile_metrics(str(tmp_path), "x.prom", [("m", "h", "gauge", [({}, 2)])])
    assert (tmp_path / "x.prom").read_text().endswith("m 2\n")


def test_redact_longest_first():
    assert _io.redact("pw pw2 x", ["pw", "pw2", ""]) == "******** ******** x"
    assert _io.redact(None, ["a"]) is None
