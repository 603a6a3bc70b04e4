"""Build a release tarball of the example app for bosun.platform.app.

    python3 examples/app/build.py --version 1.0.0 [--broken] [--out DIR]

writes DIR/bosun-example-app-<version>[-broken].tar.gz and a .sha256 file beside it. The
tarball holds, at its top level: the ``bosun_example`` package, ``requirements.txt``,
``VERSION`` and ``wheels/`` (every pinned dependency as a pure-Python wheel), so a host
builds the release's virtualenv without reaching a package index. ``--broken`` adds a
``BROKEN`` marker: that release starts and serves, but its ``/health`` answers 503, for
rollback tests.

The tarball is reproducible: entries sorted, owner root, fixed modes and times, so the
same version built twice has the same checksum. Wheels are fetched with pip (its cache
makes a rebuild quick); ``--wheels DIR`` takes them from a directory instead.
"""

import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent.parent / "build" / "example-app"
MTIME = 1_700_000_000  # fixed time of every entry (2023-11-14), for a reproducible tarball
# The version is the release id bosun.platform.app installs: the same pattern as the
# collection's one definition, RELEASE_ID_PATTERN in plugins/module_utils/_app_release.py
# (this script runs without the collection, so it keeps a copy; a unit test checks that the
# two are equal). The whole version must match: no trailing newline.
RELEASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
VERSION_RE = re.compile(RELEASE_ID_PATTERN)


def _add(tar, path, arcname):
    info = tarfile.TarInfo(arcname)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if path is None or path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_bytes(tar, arcname, data):
    info = tarfile.TarInfo(arcname)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o644
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _fetch_wheels(dest, python, wheels_from):
    requirements = HERE / "requirements.txt"
    if wheels_from:
        for wheel in Path(wheels_from).glob("*.whl"):
            shutil.copy2(wheel, dest)
        return
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--no-deps",
            "--dest",
            str(dest),
            "--requirement",
            str(requirements),
        ],
        check=True,
    )


def build(version, out, broken=False, python=sys.executable, wheels_from=None):
    if not VERSION_RE.fullmatch(version):
        raise SystemExit(
            "build.py: version %r: use 1 to 128 letters, digits, '.', '_', '+' or '-', the first a letter or digit"
            % version
        )
    out.mkdir(parents=True, exist_ok=True)
    name = "bosun-example-app-%s%s.tar.gz" % (version, "-broken" if broken else "")
    target = out / name
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        wheels.mkdir()
        _fetch_wheels(wheels, python, wheels_from)
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            package = HERE / "bosun_example"
            entries = [p for p in package.rglob("*") if "__pycache__" not in p.parts and p.suffix != ".pyc"]
            _add(tar, None, "bosun_example")
            for path in sorted(entries):
                _add(tar, path, path.relative_to(HERE).as_posix())
            _add(tar, HERE / "requirements.txt", "requirements.txt")
            _add_bytes(tar, "VERSION", (version + "\n").encode())
            if broken:
                _add_bytes(tar, "BROKEN", b"this release is broken on purpose: its /health answers 503\n")
            _add(tar, None, "wheels")
            for wheel in sorted(wheels.glob("*.whl")):
                _add(tar, wheel, "wheels/" + wheel.name)
        partial = target.with_name(target.name + ".partial")
        with open(partial, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
            gz.write(raw.getvalue())
        os.replace(partial, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (out / (name + ".sha256")).write_text("%s  %s\n" % (digest, name), encoding="utf-8")
    return target, digest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--version", required=True, help="build version, also the tarball's name")
    parser.add_argument("--broken", action="store_true", help="build a release whose /health fails")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="Python whose pip fetches the wheels")
    parser.add_argument("--wheels", help="take the wheels from this directory instead of pip")
    args = parser.parse_args(argv)
    target, digest = build(args.version, args.out, args.broken, args.python, args.wheels)
    print("%s sha256:%s" % (target, digest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
