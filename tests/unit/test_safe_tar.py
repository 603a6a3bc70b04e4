"""Safe tar extraction, shared by app_release (release tarballs) and bosun-wal (base backups).

Crafted archives are unpacked by both callers into a destination four levels below a
``victim`` directory, so that ``../../../../victim`` from the destination reaches it: every
one is refused, the error names the archive and the member, and the victim is untouched.
"""

import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _app_release as ar
from ansible_collections.bosun.platform.plugins.module_utils._backup import wal

from tests.support import wal_tool

GID = os.getgid()
VICTIM_MODE = 0o755

# The archive of the audit (issue 14 row 1): each check passes when its member is written,
# then `d1` is re-pointed and `x` re-targeted so that `d1` leads to the victim, whose mode
# the final pass over the directories used to set to 0777.
REPOINT = [
    ("x", "sym", "a/b/c/d/e"),
    ("d1", "dir", 0o777),
    ("d1", "sym", "x/../../../../victim"),
    ("x", "sym", "."),
]
CRAFTED = {
    "repointed symlink": (REPOINT, "'d1'"),
    # The same re-pointing, then a file written through the link (the base backup's hole).
    "file written through a repointed symlink": (
        [
            ("s", "dir", 0o755),
            ("x", "sym", "a/b/c/d/e/f"),
            ("d1", "sym", "x/../../../../../victim"),
            ("x", "sym", "s"),
            ("d1/pwned", "file", b"owned"),
        ],
        "'x'",
    ),
    "hard link to /etc/shadow": ([("shadow", "lnk", "/etc/shadow")], "'shadow'"),
    "hard link up to /etc/shadow": ([("shadow", "lnk", "../../../../../../../../etc/shadow")], "'shadow'"),
    "absolute symlink": ([("etc", "sym", "/etc"), ("etc/pwned", "file", b"owned")], "'etc'"),
    "device node": ([("null", "dev", "/dev/null")], "'null'"),
    "fifo": ([("pipe", "fifo", None)], "'pipe'"),
    # No name repeats: `q` is harmless until `r` makes `r/..` the destination's parent.
    "symlink made to escape by a later one": ([("q", "sym", "r/.."), ("r", "sym", ".")], "'q'"),
    "symlink out and back in": ([("l", "sym", "../data/f")], "'l'"),
    "file written through an inside symlink": (
        [("s", "dir", 0o755), ("l", "sym", "s"), ("l/f", "file", b"x")],
        "'l/f'",
    ),
    "repeated file": ([("f", "file", b"one"), ("f", "file", b"two")], "'f'"),
    "symlink loop": ([("a", "sym", "b"), ("b", "sym", "a")], "'a'"),
}


def build(path, members, compression=""):
    """A tar of ``members`` [(name, kind, value)] at ``path`` (compression "", gz, zst, lz4)."""
    raw = path + ".raw" if compression in ("zst", "lz4") else path
    mode = "w:gz" if compression == "gz" else "w"
    fifo_dir = os.path.dirname(path)
    with tarfile.open(raw, mode, format=tarfile.GNU_FORMAT) as tar:
        for name, kind, value in members:
            if kind == "dev":
                tar.add(value, arcname=name)  # a real device node: no mknod needed
                continue
            if kind == "fifo":
                fifo = os.path.join(fifo_dir, "fifo-%d" % len(os.listdir(fifo_dir)))
                os.mkfifo(fifo)
                tar.add(fifo, arcname=name)
                continue
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            info.uid, info.gid = os.getuid(), os.getgid()
            if kind == "file":
                info.size, info.mode = len(value), 0o644
                tar.addfile(info, io.BytesIO(value))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, value
                tar.addfile(info)
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = value
                tar.addfile(info)
    if raw != path:
        tool = shutil.which("zstd" if compression == "zst" else "lz4")
        subprocess.run([tool, "-q", "-f", raw, "-o", path], check=True)
        os.unlink(raw)
    return path


def _victim(base):
    victim = base / "victim"
    victim.mkdir()
    os.chmod(victim, VICTIM_MODE)
    return victim


def unpack_release(base, members, compression):
    """app_release: the release directory is <base>/h/srv/releases/evil."""
    layout = ar.Layout(str(base / "h" / "srv"))
    for sub in ("releases", "shared", "venvs", "artifacts"):
        os.makedirs(os.path.join(layout.root, sub))
    artifact = build(str(base / "evil.tar.gz"), members, "gz")
    options = dict(artifact=artifact, strip_components=0, shared_paths=[], python_requirements="", record={})
    ar.install(ar.Host(False, None), layout, "evil", options, GID)
    return artifact, layout.release_dir("evil")


def unpack_backup(base, members, compression):
    """bosun-wal extract_tar: the data directory is <base>/w1/w2/w3/data."""
    dest = base / "w1" / "w2" / "w3" / "data"
    dest.mkdir(parents=True)
    path = build(str(base / ("base.tar" + ("." + compression if compression else ""))), members, compression)
    wal.extract_tar(path, str(dest))
    return path, str(dest)


CALLERS = [
    pytest.param(unpack_release, "gz", id="app_release"),
    pytest.param(unpack_backup, "", id="wal-tar"),
    pytest.param(unpack_backup, "gz", id="wal-tar.gz"),
    pytest.param(
        unpack_backup,
        "zst",
        id="wal-tar.zst",
        marks=pytest.mark.skipif(not shutil.which("zstd"), reason="zstd is not installed"),
    ),
]


def _escaping_links(dest):
    """Symlinks left in ``dest`` whose target the kernel resolves outside it."""
    root = os.path.realpath(dest)
    found = []
    for dirpath, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if real != root and not real.startswith(root + os.sep):
                    found.append(path)
    return found


@pytest.mark.parametrize("case", sorted(CRAFTED))
@pytest.mark.parametrize("unpack, compression", CALLERS)
def test_crafted_archives_are_refused_and_nothing_outside_changes(tmp_path, unpack, compression, case):
    members, member = CRAFTED[case]
    victim = _victim(tmp_path)
    before = os.lstat(victim)
    dest = str(tmp_path / "h" / "srv" / "releases" / "evil") if unpack is unpack_release else None
    dest = dest or str(tmp_path / "w1" / "w2" / "w3" / "data")
    with pytest.raises((ar.ReleaseError, wal.WalError)) as refused:
        unpack(tmp_path, members, compression)
    message = str(refused.value)
    artifact = "evil.tar.gz" if unpack is unpack_release else "base.tar"
    assert artifact in message and member in message, message
    after = os.lstat(victim)
    assert stat.S_IMODE(after.st_mode) == VICTIM_MODE
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert os.listdir(victim) == []
    assert not os.path.lexists("/etc/pwned")
    assert _escaping_links(dest) == []
    if unpack is unpack_release:
        assert not ar.is_finished(dest)


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_a_base_backup_tar_is_extracted_with_its_modes_links_and_owners(tmp_path, compression):
    if compression == "zst" and not shutil.which("zstd"):
        pytest.skip("zstd is not installed")
    members = [
        ("global", "dir", 0o700),
        ("global/pg_control", "file", b"control"),
        ("pg_wal", "dir", 0o700),
        ("pg_wal/archive_status", "dir", 0o700),
        ("base/1/112", "file", b"table"),  # its directories are implicit
        ("base/1/112_link", "lnk", "base/1/112"),
        ("current", "sym", "global/pg_control"),
        ("PG_VERSION", "file", b"16\n"),
    ]
    dest = tmp_path / "data"
    dest.mkdir()
    wal.extract_tar(
        build(str(tmp_path / ("base.tar" + ("." + compression if compression else ""))), members, compression),
        str(dest),
    )
    assert (dest / "global" / "pg_control").read_bytes() == b"control"
    assert stat.S_IMODE(os.stat(dest / "global").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "base" / "1").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(dest / "PG_VERSION").st_mode) == 0o644
    assert os.stat(dest / "base" / "1" / "112").st_ino == os.stat(dest / "base" / "1" / "112_link").st_ino
    assert os.readlink(dest / "current") == "global/pg_control"
    assert os.stat(dest / "global").st_mtime == 1700000000
    # pg_wal.tar goes into the pg_wal directory base.tar made.
    wal.extract_tar(build(str(tmp_path / "pg_wal.tar"), [("archive_status/x.done", "file", b"")]), str(dest / "pg_wal"))
    assert (dest / "pg_wal" / "archive_status" / "x.done").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="owners from the archive are applied only as root")
def test_owners_come_from_the_archive_for_a_base_backup_and_are_root_gid_for_a_release(tmp_path):
    path = str(tmp_path / "owned.tar")
    with tarfile.open(path, "w") as tar:
        for name, kind in (("d", tarfile.DIRTYPE), ("d/f", tarfile.REGTYPE), ("l", tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.mode = kind, 4321, 4322, 0o750
            info.linkname = "d/f" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    dest = tmp_path / "data"
    dest.mkdir()
    wal.extract_tar(path, str(dest))
    for name in ("d", "d/f", "l"):
        st = os.lstat(dest / name)
        assert (st.st_uid, st.st_gid) == (4321, 4322), name
    release = tmp_path / "release"
    release.mkdir()
    ar.unpack(path, str(release), 0, 4323)
    for name in ("d", "d/f", "l"):
        st = os.lstat(release / name)
        assert (st.st_uid, st.st_gid) == (0, 4323), name
    assert stat.S_IMODE(os.stat(release / "d").st_mode) == 0o750


def test_the_installed_standalone_tool_uses_the_same_rules(tmp_path):
    """bosun-wal as the postgresql role installs it (outside the collection) refuses too."""
    victim = _victim(tmp_path)
    dest = tmp_path / "w1" / "w2" / "w3" / "data"
    dest.mkdir(parents=True)
    path = build(str(tmp_path / "base.tar"), REPOINT + [("d1/pwned", "file", b"owned")])
    lib = wal_tool.install(str(tmp_path / "tool"))["lib"]
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bosun_wal\n"
        "assert bosun_wal._safe_tar.__file__.startswith(sys.argv[1]), bosun_wal._safe_tar.__file__\n"
        "try:\n    bosun_wal.extract_tar(sys.argv[2], sys.argv[3])\n"
        "except bosun_wal.WalError as exc:\n    print(exc.msg); sys.exit(7)\n"
    )
    proc = subprocess.run(
        [wal_tool.PYTHON, "-I", "-c", code, lib, path, str(dest)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "base.tar" in proc.stdout and "'d1'" in proc.stdout
    assert stat.S_IMODE(os.lstat(victim).st_mode) == VICTIM_MODE and os.listdir(victim) == []


def test_names_are_compared_after_stripping_and_normalising(tmp_path):
    """pkg-1/app.py and ./pkg-2//app.py are the same member once one component is stripped."""
    path = build(str(tmp_path / "two.tar"), [("pkg-1/app.py", "file", b"good"), ("./pkg-2//app.py", "file", b"evil")])
    release = tmp_path / "release"
    release.mkdir()
    with pytest.raises(ar.ReleaseError, match="'./pkg-2//app.py': an earlier member has the same name"):
        ar.unpack(path, str(release), 1, GID)
    assert (release / "app.py").read_bytes() == b"good"
