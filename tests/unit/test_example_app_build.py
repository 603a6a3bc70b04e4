"""examples/app/build.py accepts exactly the release ids the collection accepts.

The script runs without the collection, so it keeps its own copy of the pattern; these tests
keep the copy equal to the one definition in plugins/module_utils/_app_release.py.
"""

import importlib.util
import os

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _app_release as ar

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


def _build_script():
    spec = importlib.util.spec_from_file_location(
        "example_app_build", os.path.join(ROOT, "examples", "app", "build.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_script()

SAMPLES = [
    "1",
    "1.0.0",
    "2024.06.1+build.7",
    "0.0.0-search",
    "g0123456789ab",
    "x" * 64,
    "x" * 65,
    "x" * 128,
    "x" * 129,
    "1.0\n",
    "\n1.0",
    "-1.0",
    ".hidden",
    "+1",
    "_1",
    "1/2",
    "1 2",
    "",
    "..",
    "1..2",
    "é1",
]


def test_the_pattern_is_the_collections_one():
    assert build.RELEASE_ID_PATTERN == ar.RELEASE_ID_PATTERN
    assert build.VERSION_RE.pattern == ar.RELEASE_ID_RE.pattern


@pytest.mark.parametrize("version", SAMPLES, ids=repr)
def test_a_version_is_accepted_exactly_when_the_collection_accepts_it_as_a_release_id(version, tmp_path):
    try:
        ar.check_release_id(version)
        collection_accepts = True
    except ar.ReleaseError:
        collection_accepts = False
    assert bool(build.VERSION_RE.fullmatch(version)) == collection_accepts
    if not collection_accepts:
        out = tmp_path / "out"
        with pytest.raises(SystemExit, match="1 to 128 letters"):
            build.build(version, out)
        assert not out.exists()  # refused before anything is written or fetched
