"""module_utils._lock: exclusive creation, re-entry, stale takeover, release by token."""

import json
import os
import subprocess
import threading
import time

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _lock


def test_acquire_creates_record_and_second_job_is_refused(tmp_path):
    path = str(tmp_path / "platform.lock")
    first = _lock.acquire(path, owner="alice@ctl", job="deploy.yml", stale_after=3600)
    assert first["changed"] is True
    on_disk = json.loads(open(path).read())
    assert on_disk["token"] == first["token"]
    assert on_disk["owner"] == "alice@ctl"
    with pytest.raises(_lock.LockHeld) as info:
        _lock.acquire(path, owner="cron@ctl", job="maintenance.yml --tags vacuum", stale_after=3600)
    message = str(info.value)
    assert "alice@ctl" in message and "deploy.yml" in message and path in message


def test_reacquire_with_own_token_is_noop(tmp_path):
    path = str(tmp_path / "platform.lock")
    first = _lock.acquire(path, owner="a", job="j", stale_after=3600)
    again = _lock.acquire(path, owner="a", job="j", stale_after=3600, token=first["token"])
    assert again["changed"] is False
    assert again["token"] == first["token"]


def test_stale_lock_is_broken_and_reported(tmp_path):
    path = str(tmp_path / "platform.lock")
    old = _lock.acquire(path, owner="dead", job="deploy.yml", stale_after=3600, now=lambda: 1000.0)
    taken = _lock.acquire(path, owner="new", job="deploy.yml", stale_after=3600)
    assert taken["broken"]["token"] == old["token"]
    assert json.loads(open(path).read())["owner"] == "new"
    # nothing else is left in the directory but the guard file of the lock
    assert sorted(os.listdir(str(tmp_path))) == ["platform.lock", "platform.lock.guard"]


def test_stale_after_zero_never_breaks(tmp_path):
    path = str(tmp_path / "platform.lock")
    _lock.acquire(path, owner="dead", job="j", stale_after=0, now=lambda: 1000.0)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(path, owner="new", job="j", stale_after=0)


def test_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / "platform.lock")
    result = _lock.acquire(path, owner="a", job="j", stale_after=3600, check_mode=True)
    assert result["changed"] is True
    assert not os.path.exists(path)


def test_release_needs_matching_token(tmp_path):
    path = str(tmp_path / "platform.lock")
    held = _lock.acquire(path, owner="a", job="j", stale_after=3600)
    with pytest.raises(_lock.LockError) as info:
        _lock.release(path, "not-the-token")
    assert "not by this job" in str(info.value)
    assert os.path.exists(path)
    assert _lock.release(path, held["token"])["changed"] is True
    assert not os.path.exists(path)
    assert _lock.release(path, held["token"])["changed"] is False


def test_unreadable_lock_counts_as_held(tmp_path):
    path = tmp_path / "platform.lock"
    path.write_text("garbage")
    with pytest.raises(_lock.LockHeld) as info:
        _lock.acquire(str(path), owner="a", job="j", stale_after=3600)
    assert "unreadable" in str(info.value)


def test_wait_gives_up_after_the_limit(tmp_path):
    path = str(tmp_path / "platform.lock")
    _lock.acquire(path, owner="a", job="j", stale_after=3600)
    clock = iter([100.0, 100.0, 101.0, 102.0, 103.0, 104.0])
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(path, owner="b", job="j", stale_after=3600, wait=2, now=lambda: next(clock))


# --- a live job's lock is never broken (issue 14 #6) ----------------------------------------
HOUR = 3600.0


def test_a_long_jobs_lock_is_not_broken_by_a_deploy_after_two_hours(tmp_path):
    """The holder's own time limit decides, not the breaker's: a 3 h drill keeps its lock at 2 h 05."""
    path = str(tmp_path / "platform.lock")
    drill = _lock.acquire(
        path, owner="timer@ops", job="maintenance restore_drill", stale_after=3 * 3600 + 900, now=lambda: 0.0
    )
    with pytest.raises(_lock.LockHeld) as info:
        _lock.acquire(path, owner="alice", job="deploy 2.0", stale_after=7200, now=lambda: 2 * HOUR + 300)
    assert "restore_drill" in str(info.value)
    assert json.loads(open(path).read())["token"] == drill["token"]


def test_stale_after_is_derived_from_the_jobs_timeout(tmp_path):
    path = str(tmp_path / "platform.lock")
    stale_after = _lock.lease(timeout=10800)
    assert stale_after == 10800 + _lock.STALE_MARGIN
    assert _lock.lease(timeout=10800, stale_after=60) == 60
    assert _lock.lease() == 0
    drill = _lock.acquire(path, owner="timer", job="drill", stale_after=stale_after, now=lambda: 0.0)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(path, owner="alice", job="deploy", now=lambda: stale_after - 1.0)
    taken = _lock.acquire(path, owner="alice", job="deploy", now=lambda: stale_after + 1.0)
    assert taken["broken"]["token"] == drill["token"]


def _keeper_record(path, pid, **over):
    holder = json.loads(open(path).read())
    holder["keeper"] = dict(_lock.process_identity(pid), **over)
    with open(path, "w") as f:
        f.write(json.dumps(holder))


def test_a_lock_whose_keeper_process_lives_is_never_stale(tmp_path):
    """Even long past its time limit (a clock jump, a backdated file), a live keeper keeps the lock."""
    path = str(tmp_path / "platform.lock")
    drill = _lock.acquire(path, owner="timer", job="drill", stale_after=HOUR, now=lambda: 0.0)
    keeper = subprocess.Popen(["sleep", "60"])
    try:
        _keeper_record(path, keeper.pid)
        with pytest.raises(_lock.LockHeld) as info:
            _lock.acquire(path, owner="alice", job="deploy", now=lambda: 10 * HOUR)
        assert "keeper process %d" % keeper.pid in str(info.value)
        assert _lock.assess(_lock.read_lock(path), 10 * HOUR)["stale"] is False
    finally:
        keeper.kill()
        keeper.wait()
    # the keeper is gone (the job was stopped at its timeout): past the limit the lock is stale
    taken = _lock.acquire(path, owner="alice", job="deploy", now=lambda: 10 * HOUR)
    assert taken["broken"]["token"] == drill["token"]


def test_a_keeper_of_another_boot_or_with_another_start_time_is_dead(tmp_path):
    path = str(tmp_path / "platform.lock")
    _lock.acquire(path, owner="timer", job="drill", stale_after=HOUR, now=lambda: 0.0)
    _keeper_record(path, os.getpid(), boot_id="00000000-0000-0000-0000-000000000000")
    assert _lock.keeper_state(_lock.read_lock(path)["keeper"]) == "dead"
    _keeper_record(path, os.getpid(), start=1)
    assert _lock.keeper_state(_lock.read_lock(path)["keeper"]) == "dead"
    _keeper_record(path, os.getpid())
    assert _lock.keeper_state(_lock.read_lock(path)["keeper"]) == "alive"
    _keeper_record(path, os.getpid(), host="another-host")
    assert _lock.keeper_state(_lock.read_lock(path)["keeper"]) == "unknown"
    # unknown: only the time limit counts
    assert _lock.assess(_lock.read_lock(path), HOUR - 1)["stale"] is False
    assert _lock.assess(_lock.read_lock(path), HOUR + 1)["stale"] is True


def test_the_keeper_lives_while_the_lock_is_held_and_ends_with_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_lock, "KEEPER_POLL", 0.2)
    path = str(tmp_path / "platform.lock")
    held = _lock.acquire(path, owner="timer", job="drill", stale_after=HOUR, keeper=True)
    keeper = held["holder"]["keeper"]
    try:
        assert keeper["pid"] != os.getpid()
        assert _lock.keeper_state(keeper) == "alive"
        with pytest.raises(_lock.LockHeld):
            _lock.acquire(path, owner="alice", job="deploy", now=lambda: time.time() + 10 * HOUR)
    finally:
        _lock.release(path, held["token"])
    deadline = time.monotonic() + 10
    while _lock.keeper_state(keeper) == "alive" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _lock.keeper_state(keeper) == "dead"


def test_no_keeper_without_a_time_limit_or_in_check_mode(tmp_path):
    path = str(tmp_path / "platform.lock")
    assert _lock.acquire(path, owner="a", job="j", stale_after=0, keeper=True)["holder"].get("keeper") is None
    other = str(tmp_path / "other.lock")
    assert (
        _lock.acquire(other, owner="a", job="j", stale_after=60, keeper=True, check_mode=True)["holder"].get("keeper")
        is None
    )


# --- breaking never makes two holders (issue 14 #7) ------------------------------------------
def test_breaking_a_stale_lock_never_makes_two_holders(tmp_path, monkeypatch):
    """Force the interleaving: while A breaks a stale lock, the stale holder releases and B takes
    the lock, then C tries while the lock file may be out of place. Exactly one job holds it."""
    path = str(tmp_path / "platform.lock")
    stale = _lock.acquire(path, owner="stale", job="old", stale_after=60, now=lambda: 1000.0)
    real_read = _lock.read_lock
    main = threading.current_thread()
    calls, threads, holders, refused = [], [], {}, []

    def in_thread(name, steps):
        def run():
            try:
                for step in steps:
                    step()
            except _lock.LockHeld:
                refused.append(name)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=3)  # a job blocked by A finishes later
        threads.append(thread)

    def b_takes_the_lock():
        _lock.release(path, stale["token"])
        holders["B"] = _lock.acquire(path, owner="B", job="b", stale_after=60)

    def c_takes_the_lock():
        holders["C"] = _lock.acquire(path, owner="C", job="c", stale_after=60)

    def spy(p):
        result = real_read(p)
        if threading.current_thread() is main:
            calls.append(p)
            if len(calls) == 1:
                in_thread("B", [b_takes_the_lock])  # after A judged the lock stale
            elif p != path and "C" not in holders and "C" not in refused:
                in_thread("C", [c_takes_the_lock])  # while the file is moved aside
        return result

    monkeypatch.setattr(_lock, "read_lock", spy)
    try:
        holders["A"] = _lock.acquire(path, owner="A", job="a", stale_after=60)
    except _lock.LockHeld:
        refused.append("A")
    for thread in threads:
        thread.join(timeout=10)
    monkeypatch.setattr(_lock, "read_lock", real_read)
    assert len(holders) == 1, "jobs that think they hold the lock: %s" % sorted(holders)
    held = next(iter(holders.values()))
    assert real_read(path)["token"] == held["token"]
    assert not [n for n in os.listdir(str(tmp_path)) if ".stale-" in n or ".new-" in n]


def test_module_documentation_is_valid_yaml_and_matches_the_options():
    import yaml
    from ansible_collections.bosun.platform.plugins.modules import platform_lock

    options = yaml.safe_load(platform_lock.DOCUMENTATION)["options"]
    assert options["job_timeout"] == dict(options["job_timeout"], type="int", default=0, aliases=["timeout"])
    assert options["stale_after"]["type"] == "int" and "default" not in options["stale_after"]
    assert {"stale", "reason", "holder"} <= set(yaml.safe_load(platform_lock.RETURN))
    assert yaml.safe_load(platform_lock.EXAMPLES)
