"""bosun.platform.platform_lock run as Ansible runs it: races, check mode, release."""

import concurrent.futures
import json
import os
import signal
import time

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _lock


def test_only_one_of_racing_jobs_gets_the_lock(tmp_path, run_module):
    path = str(tmp_path / "locks" / "platform.lock")

    def take(i):
        return run_module("platform_lock", dict(path=path, taken_by="job%d" % i, job="race"))

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(take, range(6)))
    winners = [r for r in results if r["rc"] == 0]
    losers = [r for r in results if r["rc"] != 0]
    assert len(winners) == 1
    assert len(losers) == 5
    holder = json.loads(open(path).read())
    assert holder["owner"] == winners[0]["holder"]["owner"]
    for loser in losers:
        assert loser["failed"] is True
        assert "is held by %s" % holder["owner"] in loser["msg"]
        assert loser["holder"]["owner"] == holder["owner"]
        assert "token" not in loser["holder"]  # another job's token is never shown


def test_check_mode_then_real_then_release(tmp_path, run_module):
    path = str(tmp_path / "platform.lock")
    predicted = run_module("platform_lock", dict(path=path, taken_by="ops", job="deploy"), check_mode=True)
    assert predicted["rc"] == 0 and predicted["changed"] is True
    assert not os.path.exists(path)

    taken = run_module("platform_lock", dict(path=path, taken_by="ops", job="deploy"))
    assert taken["changed"] is True and taken["token"]
    again = run_module("platform_lock", dict(path=path, taken_by="ops", job="deploy", token=taken["token"]))
    assert again["rc"] == 0 and again["changed"] is False

    wrong = run_module("platform_lock", dict(path=path, state="released", token="nope"))
    assert wrong["rc"] != 0 and "not by this job" in wrong["msg"]
    assert os.path.exists(path)

    no_token = run_module("platform_lock", dict(path=path, state="released"))
    assert no_token["rc"] != 0 and "needs the token" in no_token["msg"]

    released = run_module("platform_lock", dict(path=path, state="released", token=taken["token"]))
    assert released["changed"] is True
    assert not os.path.exists(path)
    query = run_module("platform_lock", dict(path=path, state="query"))
    assert query["holder"] is None


def test_stale_lock_is_broken_with_report(tmp_path, run_module):
    path = str(tmp_path / "platform.lock")
    # a job that allows itself one second, and is not released
    run_module("platform_lock", dict(path=path, taken_by="crashed-job", job="deploy", stale_after=1))
    time.sleep(1.2)
    taken = run_module("platform_lock", dict(path=path, taken_by="next-job", job="deploy"))
    assert taken["rc"] == 0, taken.get("msg")
    assert taken["broken"]["owner"] == "crashed-job"
    assert json.loads(open(path).read())["owner"] == "next-job"


def test_unwritable_directory_is_a_clear_error(tmp_path, run_module):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_module("platform_lock", dict(path=str(blocker / "platform.lock")))
    assert result["rc"] != 0
    assert "platform lock" in result["msg"] and str(blocker) in result["msg"]
    assert "Traceback" not in result["_stderr"]


# --- a live job's lock is never broken (issue 14 #6) ----------------------------------------
@pytest.fixture(autouse=True)
def _no_keeper_left(tmp_path):
    """Keepers end when their lock file goes; stop any a failed test leaves behind."""
    yield
    for lock in tmp_path.rglob("*.lock"):
        keeper = (json.loads(lock.read_text()) or {}).get("keeper") or {}
        lock.unlink()
        if _lock.keeper_state(keeper) == "alive":
            os.kill(keeper["pid"], signal.SIGKILL)


def _backdate(path, seconds):
    """Move the lock's start back in time, as if the job had been running that long."""
    holder = json.loads(open(path).read())
    holder["started_ts"] -= seconds
    with open(path, "w") as f:
        f.write(json.dumps(holder))


def _wait_gone(keeper, seconds=10):
    deadline = time.monotonic() + seconds
    while _lock.keeper_state(keeper) == "alive" and time.monotonic() < deadline:
        time.sleep(0.1)
    return _lock.keeper_state(keeper) != "alive"


def test_a_restore_drills_lock_is_not_broken_by_a_deploy_after_two_hours(tmp_path, run_module):
    path = str(tmp_path / "platform.lock")
    drill = run_module(
        "platform_lock", dict(path=path, taken_by="timer@ops", job="maintenance restore_drill", stale_after=11700)
    )
    assert drill["rc"] == 0, drill.get("msg")
    _backdate(path, 2 * 3600 + 300)

    deploy = run_module("platform_lock", dict(path=path, taken_by="alice", job="deploy 2.0.0"))

    assert deploy["rc"] != 0, "the deploy broke the lock of a live restore drill"
    assert "is held by timer@ops running maintenance restore_drill" in deploy["msg"]
    assert json.loads(open(path).read())["owner"] == "timer@ops"


def test_the_keeper_holds_the_lock_past_its_time_limit_until_it_is_gone(tmp_path, run_module):
    path = str(tmp_path / "platform.lock")
    started = time.monotonic()
    drill = run_module(
        "platform_lock", dict(path=path, taken_by="timer@ops", job="maintenance restore_drill", job_timeout=10800)
    )
    assert drill["rc"] == 0, drill.get("msg")
    assert time.monotonic() - started < 20  # the keeper does not hold the module's output open
    keeper = drill["holder"]["keeper"]
    assert drill["holder"]["stale_after"] == 10800 + 900
    assert _lock.keeper_state(keeper) == "alive"

    _backdate(path, 5 * 3600)  # past its time limit: a clock jump, or a file touched by hand
    deploy = run_module("platform_lock", dict(path=path, taken_by="alice", job="deploy 2.0.0", job_timeout=600))
    assert deploy["rc"] != 0
    assert "keeper process %d" % keeper["pid"] in deploy["msg"]
    query = run_module("platform_lock", dict(path=path, state="query"))
    assert query["stale"] is False and "keeper" in query["reason"]

    # the job was stopped at its timeout and the lock host lost its keeper: now it is stale
    os.kill(keeper["pid"], signal.SIGKILL)
    assert _wait_gone(keeper)
    query = run_module("platform_lock", dict(path=path, state="query"))
    assert query["stale"] is True
    deploy = run_module("platform_lock", dict(path=path, taken_by="alice", job="deploy 2.0.0"))
    assert deploy["rc"] == 0, deploy.get("msg")
    assert deploy["broken"]["owner"] == "timer@ops"
    assert deploy["holder"]["keeper"] is None  # no time limit: no keeper, only break_lock breaks it


def test_the_keeper_ends_when_the_lock_is_released(tmp_path, run_module):
    path = str(tmp_path / "platform.lock")
    held = run_module("platform_lock", dict(path=path, taken_by="timer@ops", job="vacuum", job_timeout=600))
    keeper = held["holder"]["keeper"]
    assert _lock.keeper_state(keeper) == "alive"
    released = run_module("platform_lock", dict(path=path, state="released", token=held["token"]))
    assert released["changed"] is True
    assert _wait_gone(keeper), "the keeper outlived its lock"
