"""bosun-wal's command line (roles/postgresql/files/bosun_wal_cli.py) only wires argparse to the
WAL library (module_utils/_backup/wal.py): every subcommand reaches its library function with
the parsed options, and the library's ``run`` decides the exit code and the output."""

import inspect
import json
import os
import subprocess
import sys

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._backup import wal

from tests.support import wal_tool

SEG = "000000010000000A000000FE"
cli = wal_tool.load_cli(wal)

# argv after the subcommand -> the keyword arguments its library function must receive.
WIRING = {
    "push": (
        ["--archive", "/a", "--compress", "zstd", "--level", "5", "/pg_wal/" + SEG, SEG],
        "archive_push",
        dict(archive="/a", method="zstd", level=5, path="/pg_wal/" + SEG, name=SEG),
    ),
    "fetch": (
        ["--archive", "/a", SEG, "pg_wal/RECOVERYXLOG"],
        "archive_fetch",
        dict(archive="/a", name=SEG, dest="pg_wal/RECOVERYXLOG"),
    ),
    "list": (["--archive", "/a"], "archive_list", dict(archive="/a")),
    "recover": (
        "--archive /a --base-dir /b --data-dir /d --port 5499 --target-exclusive --stop-after "
        "--protect /live1 --protect /live2 --timeout 60".split()
        + ["--target-time", "2025-01-02 03:04:05+00"],
        "recover",
        dict(
            archive="/a",
            base_dir="/b",
            backup=None,
            data_dir="/d",
            port=5499,
            socket_dir=None,
            config_file=None,
            target_time="2025-01-02 03:04:05+00",
            target_lsn=None,
            target_name=None,
            target_exclusive=True,
            bin_dir=None,
            log_file=None,
            timeout=60,
            stop_after=True,
            protect=["/live1", "/live2"],
            tool=[sys.executable, wal_tool.CLI],
        ),
    ),
    "stop": (
        ["--data-dir", "/d", "--remove", "--expect-id", "0" * 32, "--protect", "/live"],
        "stop",
        dict(data_dir="/d", bin_dir=None, remove=True, expect_id="0" * 32, protect=["/live"]),
    ),
}


def test_every_command_is_wired():
    assert sorted(WIRING) == sorted(wal.COMMANDS)
    assert "argparse" not in vars(wal) and not hasattr(wal, "main")  # the library has no command line


@pytest.mark.parametrize("command", sorted(WIRING))
def test_each_subcommand_reaches_its_library_function(command, monkeypatch, capsys):
    argv, function, expected = WIRING[command]
    inspect.signature(getattr(wal, function)).bind(**expected)  # the library takes exactly these
    calls, runs = [], []
    outcome = {"push": "archived", "fetch": True}.get(command, dict(ok=True))
    monkeypatch.setattr(wal, function, lambda **kwargs: calls.append(kwargs) or outcome)
    real_run = wal.run

    def run(*args, **kwargs):
        runs.append((args, kwargs))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(wal, "run", run)
    assert cli.main(["--run-as", "", command, *argv]) == wal.EXIT_OK
    assert calls == [expected]
    assert runs[0][0][0] == command and runs[0][1]["run_as"] == ""
    out, err = capsys.readouterr()
    if command in ("push", "fetch"):
        assert out == ""
    else:
        assert json.loads(out) == outcome


def test_result_file_and_failures_go_through_the_library(monkeypatch, tmp_path, capsys):
    result = tmp_path / "result.json"

    def fail(**kwargs):
        raise wal.WalError("no base backup", wal.EXIT_RECOVERY)

    monkeypatch.setattr(wal, "recover", fail)
    code = cli.main(
        [
            "recover",
            "--archive",
            "/a",
            "--backup",
            "/b",
            "--data-dir",
            "/d",
            "--port",
            "1",
            "--result-file",
            str(result),
        ]
    )
    assert code == wal.EXIT_RECOVERY
    assert json.loads(result.read_text()) == dict(ok=False, msg="no base backup", command="recover")
    assert "bosun-wal: no base backup" in capsys.readouterr().err


def test_usage_errors(capsys):
    assert cli.main(["fetch", "--archive", "/a", SEG]) == wal.EXIT_FETCH_FATAL  # restore_command: fatal
    assert "cannot restore: the following arguments are required: dest" in capsys.readouterr().err
    assert cli.main(["push", "--compress", "bzip2", "--archive", "/a", "x"]) == wal.EXIT_USAGE
    assert cli.main([]) == wal.EXIT_USAGE


def test_the_installed_command_runs_from_its_link(tmp_path):
    """As the role installs it: bin/bosun-wal links to lib/bosun-wal, which imports the
    library beside it, even under python3 -I (no script directory on sys.path)."""
    tool = wal_tool.install(str(tmp_path / "tool"))
    archive = tmp_path / "archive"
    archive.mkdir()
    segment = tmp_path / SEG
    segment.write_bytes(b"w" * 8192)
    assert os.path.islink(tool["command"])
    push = subprocess.run(
        [tool["command"], "push", "--archive", str(archive), str(segment), SEG],
        capture_output=True,
        text=True,
        check=False,
    )
    assert push.returncode == 0 and push.stdout == "" and "bosun-wal: archived %s" % SEG in push.stderr, push
    listed = subprocess.run(
        [wal_tool.PYTHON, "-I", tool["command"], "list", "--archive", str(archive)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed
    assert [f["name"] for f in json.loads(listed.stdout)["files"]] == [SEG]
    missing = subprocess.run(
        [tool["command"], "fetch", "--archive", str(archive), "00000002.history", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == wal.EXIT_MISSING and missing.stderr == ""
