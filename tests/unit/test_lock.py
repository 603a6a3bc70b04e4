"""module_utils._lock: exclusive creation, re-entry, stale takeover, release by token."""

import json
import os

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
    # nothing else is left in the directory (the stale file moved aside is removed)
    assert os.listdir(str(tmp_path)) == ["platform.lock"]


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
