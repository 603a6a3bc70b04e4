"""bosun.platform.platform_lock run as Ansible runs it: races, check mode, release."""

import concurrent.futures
import json
import os
import time


def test_only_one_of_racing_jobs_gets_the_lock(tmp_path, run_module):
    path = str(tmp_path / "locks" / "platform.lock")

    def take(i):
        return run_module("platform_lock", dict(path=path, owner="job%d" % i, job="race"))

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
    predicted = run_module("platform_lock", dict(path=path, owner="ops", job="deploy"), check_mode=True)
    assert predicted["rc"] == 0 and predicted["changed"] is True
    assert not os.path.exists(path)

    taken = run_module("platform_lock", dict(path=path, owner="ops", job="deploy"))
    assert taken["changed"] is True and taken["token"]
    again = run_module("platform_lock", dict(path=path, owner="ops", job="deploy", token=taken["token"]))
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
    run_module("platform_lock", dict(path=path, owner="crashed-job", job="deploy"))
    time.sleep(1.2)
    taken = run_module("platform_lock", dict(path=path, owner="next-job", job="deploy", stale_after=1))
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
