"""Logic of app_release on a temporary app root: unpack safely, install, switch, prune, query."""

import io
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _app_release as ar

from tests.support.collection import collections_path
from tests.support.modules import run_module

GID = os.getgid()


class FakeRun:
    """Runs nothing; records argv. pip/venv calls create what the real commands would."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def __call__(self, argv, cwd):
        self.calls.append(list(argv))
        if self.fail and self.fail in argv[0]:
            return 1, "", "boom"
        if argv[1:3] == ["-m", "venv"]:
            os.makedirs(os.path.join(argv[3], "bin"))
        return 0, "", ""


def _tar(path, members, prefix=""):
    """members: {name: text} files, or (type, target) tuples for links."""
    with tarfile.open(path, "w:gz") as tar:
        for name, value in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.mtime = 1700000000
            if isinstance(value, tuple):
                info.type, info.linkname = value
                tar.addfile(info)
            else:
                data = value.encode()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "srv"
    for sub in ("releases", "shared", "venvs", "artifacts"):
        (root / sub).mkdir(parents=True)
    return ar.Layout(str(root))


def _options(artifact, **extra):
    options = dict(
        artifact=artifact,
        strip_components=0,
        shared_paths=[".env", "logs"],
        python_requirements="requirements.txt",
        python_wheelhouse="wheels",
        pip_extra_args=[],
        python=sys.executable,
        build_command=[],
        record={"source": "file", "artifact": "a.tar.gz"},
        remove_artifact=False,
        prepare_only=False,
    )
    options.update(extra)
    return options


def _finished(layout, release, age=0):
    path = layout.release_dir(release)
    os.makedirs(path)
    record = os.path.join(path, ar.FINISHED_MARKER)
    with open(record, "w") as f:
        f.write("{}\n")
    os.utime(record, (time.time() - age, time.time() - age))


def test_install_unpacks_links_builds_the_venv_and_records(layout, tmp_path):
    artifact = _tar(
        tmp_path / "a.tar.gz",
        {
            "app.py": "x",
            "requirements.txt": "flask\n",
            "wheels/f.whl": "w",
            "logs/old": "l",
            "bin": (tarfile.SYMTYPE, "app.py"),
        },
        prefix="pkg-1/",
    )
    host = ar.Host(False, FakeRun())
    result = ar.install(host, layout, "1.0.0", _options(artifact, strip_components=1, build_command=["make"]), GID)
    release = layout.release_dir("1.0.0")
    assert result["installed"] and result["changed"]
    assert open(os.path.join(release, "app.py")).read() == "x"
    assert os.readlink(os.path.join(release, "bin")) == "app.py"
    assert os.readlink(os.path.join(release, "logs")) == os.path.join(layout.shared, "logs")
    assert os.readlink(os.path.join(release, ".env")) == os.path.join(layout.shared, ".env")
    assert ar.is_finished(release)
    record = json.load(open(os.path.join(release, ar.FINISHED_MARKER)))
    assert record["release"] == "1.0.0" and record["source"] == "file" and record["virtualenv"] == result["virtualenv"]
    assert os.readlink(os.path.join(release, ".venv")) == result["virtualenv"]
    pip = [call for call in host.run.calls if call[0].endswith("/pip")][0]
    assert pip[-3:] == ["--no-index", "--find-links", os.path.join(release, "wheels")]
    assert host.run.calls[-1] == ["make"]
    # Finished: left alone, nothing run.
    again = ar.install(ar.Host(False, FakeRun()), layout, "1.0.0", _options(artifact), GID)
    assert again == dict(result, installed=False, changed=False)


def test_identical_requirements_reuse_the_virtualenv(layout, tmp_path):
    a = _tar(tmp_path / "a.tar.gz", {"requirements.txt": "flask\n"})
    run = FakeRun()
    first = ar.install(ar.Host(False, run), layout, "1", _options(a), GID)
    second = ar.install(ar.Host(False, run), layout, "2", _options(a), GID)
    assert first["virtualenv"] == second["virtualenv"]
    assert len([call for call in run.calls if call[0].endswith("/pip")]) == 1


def test_a_failed_build_leaves_the_release_unfinished_and_it_is_redone(layout, tmp_path):
    a = _tar(tmp_path / "a.tar.gz", {"app.py": "x"})
    with pytest.raises(ar.ReleaseError, match="build release 1.0.0.*boom"):
        ar.install(ar.Host(False, FakeRun(fail="make")), layout, "1.0.0", _options(a, build_command=["make"]), GID)
    release = layout.release_dir("1.0.0")
    assert os.path.exists(os.path.join(release, ar.UNFINISHED_MARKER)) and not ar.is_finished(release)
    with open(os.path.join(release, "junk"), "w") as f:
        f.write("left over")
    result = ar.install(ar.Host(False, FakeRun()), layout, "1.0.0", _options(a), GID)
    assert result["installed"] and ar.is_finished(release)
    assert not os.path.exists(os.path.join(release, "junk"))


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../evil": "x"}, "'../evil': a .. in the name"),
        ({"/etc/evil": "x"}, "'/etc/evil': an absolute name"),
        ({"link": (tarfile.SYMTYPE, "/etc/passwd")}, "'link': the symlink -> '/etc/passwd': its target is an absolute"),
        ({"link": (tarfile.SYMTYPE, "../../x")}, "'link': the symlink -> '../../x': it leads outside"),
        ({"hard": (tarfile.LNKTYPE, "../x")}, "'hard': the hard link -> '../x' leads outside"),
        ({"dev": (tarfile.CHRTYPE, "")}, "'dev': a device node"),
    ],
)
def test_unpack_refuses_what_escapes_the_release(layout, tmp_path, members, message):
    artifact = _tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(ar.ReleaseError, match=message):
        ar.install(ar.Host(False, FakeRun()), layout, "bad", _options(artifact), GID)
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "evil")
    assert not ar.is_finished(layout.release_dir("bad"))


def test_unpack_refuses_writing_through_a_symlink_of_the_archive(layout, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    artifact = _tar(tmp_path / "bad.tar.gz", {"d": (tarfile.SYMTYPE, "."), "d2": (tarfile.SYMTYPE, "d"), "sub/f": "x"})
    ar.install(ar.Host(False, FakeRun()), layout, "ok", _options(artifact), GID)
    artifact = _tar(tmp_path / "bad2.tar.gz", {"up": (tarfile.SYMTYPE, "sub"), "up/../../x": "x"})
    with pytest.raises(ar.ReleaseError):
        ar.install(ar.Host(False, FakeRun()), layout, "bad", _options(artifact), GID)


def test_check_mode_predicts_and_changes_nothing(layout, tmp_path):
    host = ar.Host(True, FakeRun())
    result = ar.install(host, layout, "1.0.0", _options(str(tmp_path / "missing.tar.gz")), GID)
    assert result["installed"] and result["changed"]
    assert os.listdir(layout.releases) == [] and host.run.calls == []
    _finished(layout, "1.0.0")
    switched = ar.switch(host, layout, "1.0.0")
    assert switched["changed"] and not os.path.lexists(layout.current)
    assert ar.switch(host, layout, "9.9.9")["changed"]  # a release a check run would have installed


def test_prepare_only_marks_the_release_unfinished(layout):
    result = ar.install(ar.Host(False, FakeRun()), layout, "u1", {"prepare_only": True}, GID)
    assert result["installed"]
    assert os.path.exists(os.path.join(layout.release_dir("u1"), ar.UNFINISHED_MARKER))


def test_refuses_unsafe_release_ids(layout):
    for bad in ("", "../x", ".hidden", "a/b", "x" * 129, "1.0\n", "1.0\nx", "\n1.0", "1.0 ", "1.0\r"):
        with pytest.raises(ar.ReleaseError, match="must match"):
            ar.switch(ar.Host(False, FakeRun()), layout, bad)
        with pytest.raises(ar.ReleaseError, match="must match"):
            ar.install(ar.Host(True, FakeRun()), layout, bad, _options(None), GID)
    # The id is shown escaped: a newline cannot start a line of its own in a log.
    with pytest.raises(ar.ReleaseError) as refused:
        ar.check_release_id("1.0\nforged")
    assert "\n" not in str(refused.value) and '"1.0\\nforged"' in str(refused.value)
    for good in ("1", "1.0.0", "2024.06.1+build.7", "g0123456789ab", "x" * 128):
        ar.check_release_id(good)


def test_the_release_id_rule_has_one_definition():
    """The app role and the playbooks hand release ids to the module instead of carrying a
    second copy of the pattern that could drift from it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    copies = []
    for top in ("roles", "playbooks"):
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for name in files:
                if name.endswith((".yml", ".yaml", ".j2")):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as f:
                        text = f.read()
                    if "A-Za-z0-9._+-" in text or "release_id_pattern" in text:
                        copies.append(os.path.relpath(path, root))
    assert copies == []


def test_deploy_refuses_an_unsafe_release_id_on_the_controller_first(tmp_path):
    """-e release='1.0<newline>forged' stops in the resolve play, before any host, ledger or log line."""
    artifact = _tar(tmp_path / "app.tar.gz", {"app.py": "x"})
    extra = tmp_path / "extra.json"
    log = tmp_path / "deployments.log"  # the controller's deployment log
    extra.write_text(json.dumps({"release": "1.0\nforged", "artifact": artifact, "bosun_deploy_log": str(log)}))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "@%s" % extra,
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
            os.path.join(root, "playbooks", "deploy.yml"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_LOCALHOST_WARNING="false"),
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "TASK [bosun.platform.deploy : Refuse a deploy without what it needs]" in proc.stdout
    assert 'release id "1.0\\nforged" must match' in proc.stdout
    assert "PLAY [Lock and prepare]" not in proc.stdout
    assert not log.exists()  # it used to get "release=1.0" and a forged line "forged result=..."


def test_the_module_checks_the_release_id_of_every_state(tmp_path):
    for state in ("query", "pruned", "installed", "current"):
        result = run_module("app_release", {"state": state, "root": str(tmp_path), "release": "1.0\n"})
        assert result["failed"] and 'release id "1.0\\n" must match' in result["msg"], (state, result)
    assert os.listdir(tmp_path) == []


def test_switch_moves_current_and_previous(layout):
    host = ar.Host(False, FakeRun())
    _finished(layout, "1")
    _finished(layout, "2")
    first = ar.switch(host, layout, "1")
    assert first["changed"] and first["previous"] == ""
    assert os.readlink(layout.current) == layout.release_dir("1")
    second = ar.switch(host, layout, "2")
    assert second["changed"] and second["previous"] == "1"
    assert os.readlink(layout.previous) == layout.release_dir("1")
    again = ar.switch(host, layout, "2")
    assert not again["changed"] and again["previous"] == "1"
    assert [name for name in os.listdir(layout.root) if ar._io.is_temp_name(name)] == []


def test_switch_refuses_unfinished_and_missing_releases(layout):
    os.makedirs(layout.release_dir("inflight"))
    open(os.path.join(layout.release_dir("inflight"), ar.UNFINISHED_MARKER), "w").close()
    with pytest.raises(ar.ReleaseError, match="not a finished release .*its install did not finish"):
        ar.switch(ar.Host(False, FakeRun()), layout, "inflight")
    with pytest.raises(ar.ReleaseError, match="not a finished release .*it is not installed"):
        ar.switch(ar.Host(False, FakeRun()), layout, "nope")


def test_prune_keeps_newest_current_previous_and_installs_in_progress(layout):
    host = ar.Host(False, FakeRun())
    for release, age in (("0.8.0", 300000), ("0.9.0", 200000), ("1.0.0", 3000), ("1.1.0", 2000), ("1.2.0", 1000)):
        _finished(layout, release, age)
    for release, age in (("failed", 7200), ("inflight", 10)):
        os.makedirs(layout.release_dir(release))
        marker = os.path.join(layout.release_dir(release), ar.UNFINISHED_MARKER)
        open(marker, "w").close()
        os.utime(marker, (time.time() - age, time.time() - age))
    os.makedirs(layout.release_dir("by-hand"))
    open(os.path.join(layout.artifacts, "0.8.0.tar.gz"), "w").close()
    ar.switch(host, layout, "1.1.0")
    ar.switch(host, layout, "1.0.0")
    predicted = ar.prune(ar.Host(True, FakeRun()), layout, 1, 3600, protect=["1.0.0"])
    state = ar.prune(host, layout, 1, 3600, protect=["1.0.0"])
    assert predicted == state
    assert sorted(state["pruned"]) == ["0.8.0", "0.9.0", "failed"]
    assert state["releases"] == ["1.2.0", "1.1.0", "1.0.0"]
    assert state["unfinished"] == ["inflight"] and state["other"] == ["by-hand"]
    assert (state["current"], state["previous"]) == ("1.0.0", "1.1.0")
    assert sorted(os.listdir(layout.releases)) == ["1.0.0", "1.1.0", "1.2.0", "by-hand", "inflight"]
    assert os.listdir(layout.artifacts) == []
    assert ar.public_state(ar.query(layout)) == dict((k, v) for k, v in state.items() if k != "pruned")
