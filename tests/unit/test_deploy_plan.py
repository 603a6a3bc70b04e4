"""The decisions of a deploy and a rollback (module_utils/_deploy.py) and the deploy filters.

Hosts app1, app2 and app3 go from release 2.0.0 to 3.0.0. States are the plain dicts that the
filter deploy_states makes from hostvars; hostvars are plain dicts here too.
"""

import base64
import inspect
import json
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.filter import deploy as flt
from ansible_collections.bosun.platform.plugins.module_utils import _deploy as d

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTS = ["app1", "app2", "app3"]
RUN = {"mode": "deploy", "release": "3.0.0"}
SHA = "0123456789abcdef0123456789abcdef01234567"
GATE_TASK = "Fail the host when its health gate did not pass"
GATE_MSG = "health gate failed on release 3.0.0 after 60 s: app health: HTTP 500"


def state(progress=None, failure=None, gate=None, rolled_back=None, rollback_failure=None, previous="2.0.0"):
    return {
        "previous": previous,
        "progress": progress,
        "failure": failure,
        "gate": gate,
        "rolled_back": rolled_back,
        "rollback_failure": rollback_failure,
    }


def done(release="3.0.0", **kwargs):
    return state(progress={"step": "done", "drained": False, "release": release}, gate="ok", **kwargs)


def gate_failed(host, **kwargs):
    progress = {"step": "switch", "drained": True, "release": "3.0.0"}
    record = d.failure(host, "gate", GATE_TASK, GATE_MSG)
    return state(progress=progress, failure=record, gate="crit", **kwargs)


def untouched():
    return state()


def rolled_back(host_state):
    return dict(host_state, rolled_back=True)


def ledger(*records):
    return "".join(json.dumps(record) + "\n" for record in records)


# --- A rollout batch fails: which hosts go back, in which order, and what is told ----------


def test_first_batch_fails_only_its_host_goes_back():
    states = {"app1": gate_failed("app1"), "app2": untouched(), "app3": untouched()}
    plan = flt.deploy_rollback_plan(states, HOSTS)
    assert plan == ["app1"]
    states["app1"] = rolled_back(states["app1"])
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=plan)
    assert out["result"] == "failed, rolled back"
    assert out["failed_hosts"] == ["app1"] and out["rolled_back"] == ["app1"] and out["not_rolled_back"] == []
    assert out["message"] == (
        "deploy of release 3.0.0 FAILED: app1 failed at gate (%s): %s; "
        "rolled back to the release they ran before: app1;" % (GATE_TASK, GATE_MSG)
    )


def test_middle_batch_fails_the_failed_host_first_then_the_earlier_batches():
    states = {"app1": done(), "app2": gate_failed("app2"), "app3": untouched()}
    plan = flt.deploy_rollback_plan(states, HOSTS)
    assert plan == ["app2", "app1"]
    for name in plan:
        states[name] = rolled_back(states[name])
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=plan)
    assert out["result"] == "failed, rolled back"
    assert out["failed_hosts"] == ["app2"] and out["rolled_back"] == ["app2", "app1"]
    assert out["message"] == (
        "deploy of release 3.0.0 FAILED: app2 failed at gate (%s): %s; "
        "rolled back to the release they ran before: app2, app1;" % (GATE_TASK, GATE_MSG)
    )


def test_last_batch_fails_at_the_switch_every_host_goes_back():
    progress = {"step": "switch", "drained": True, "release": "3.0.0"}
    task = "Switch to release 3.0.0"
    app3 = state(progress=progress, failure=d.failure("app3", "switch", task, "the unit did not start"))
    states = {"app1": done(), "app2": done(), "app3": app3}
    plan = flt.deploy_rollback_plan(states, HOSTS)
    assert plan == ["app3", "app1", "app2"]
    for name in plan:
        states[name] = rolled_back(states[name])
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=plan)
    assert out["result"] == "failed, rolled back"
    assert out["message"] == (
        "deploy of release 3.0.0 FAILED: app3 failed at switch (Switch to release 3.0.0): the unit did not start; "
        "rolled back to the release they ran before: app3, app1, app2;"
    )


def test_a_batch_of_two_with_one_failure_rolls_back_both_failed_first():
    states = {"app1": done(), "app2": done(), "app3": gate_failed("app3")}
    states["app2"]["gate"] = "warn"
    batch = flt.deploy_batch(states, ["app2", "app3"])
    assert batch["passed"] == ["app2"]
    assert batch["drain"] == ["app2"]  # app3 is out already
    assert batch["unfinished"] == []
    assert flt.deploy_rollback_plan(states, HOSTS) == ["app3", "app1", "app2"]


def test_host_unreachable_mid_batch_is_unfinished():
    states = {
        "app1": done(),
        "app2": state(progress={"step": "switch", "drained": True, "release": "3.0.0"}),
        "app3": untouched(),
    }
    batch = flt.deploy_batch(states, ["app1", "app2", "app3"])
    reason = "did not finish its batch (unreachable or interrupted)"
    assert batch["unfinished"] == [
        {"host": "app2", "step": "switch", "task": "", "msg": reason},
        {"host": "app3", "step": "drain", "task": "", "msg": reason},
    ]
    assert batch["drain"] == ["app1", "app3"]  # app1's drained is false once it is back in
    assert batch["passed"] == ["app1"]
    # Recorded as app2's failure, it is rolled back first.
    states["app2"]["failure"] = batch["unfinished"][0]
    assert flt.deploy_rollback_plan(states, HOSTS) == ["app2", "app1"]
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=[])
    assert out["message"] == "deploy of release 3.0.0 FAILED: app2 failed at switch: %s;" % reason


def test_a_batch_whose_hosts_recorded_a_failure_or_finished_has_nothing_unfinished():
    states = {"app1": done(), "app2": gate_failed("app2")}
    assert d.unfinished(["app1", "app2"], states) == []


def test_deploy_batch_refuses_a_string_batch_and_a_non_mapping_state():
    with pytest.raises(AnsibleFilterError, match="list of host names"):
        flt.deploy_batch({}, "app1")
    with pytest.raises(AnsibleFilterError, match="expects a mapping, got list"):
        flt.deploy_batch([], ["app1"])
    assert flt.deploy_batch(None, ["app1"])["drain"] == ["app1"]


# --- The rollback fails, the smoke test fails, the preparation fails -----------------------


def test_a_rollback_that_fails_on_a_host_fails_the_run_and_names_it():
    states = {"app1": done(), "app2": gate_failed("app2"), "app3": untouched()}
    plan = flt.deploy_rollback_plan(states, HOSTS)
    states["app2"] = rolled_back(states["app2"])
    states["app1"] = dict(states["app1"], rolled_back=False, rollback_failure="unreachable: ssh timed out")
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=plan)
    assert out["result"] == "failed"
    assert out["rolled_back"] == ["app2"] and out["not_rolled_back"] == ["app1"]
    assert out["message"].endswith(
        "rolled back to the release they ran before: app2; NOT rolled back: app1 (unreachable: ssh timed out);"
    )


def test_a_host_of_the_plan_that_was_not_rolled_back_is_never_reported_as_rolled_back():
    states = {"app1": gate_failed("app1"), "app2": untouched(), "app3": untouched()}
    out = d.outcome(RUN, states, HOSTS, rollback_hosts=["app1"])
    assert out["result"] == "failed"
    assert out["message"].endswith("rolled back to the release they ran before: none; NOT rolled back: app1 (?);")


def test_first_deploy_cannot_be_rolled_back():
    states = {"app1": gate_failed("app1", previous="")}
    states["app1"].update(rolled_back=False, rollback_failure="no release to go back to (this was its first)")
    out = d.outcome(RUN, states, ["app1"], rollback_hosts=["app1"])
    assert out["result"] == "failed"
    assert out["message"].endswith("NOT rolled back: app1 (no release to go back to (this was its first));")


def test_smoke_failure_without_host_failure_fails_with_no_message():
    states = {name: done() for name in HOSTS}
    out = flt.deploy_outcome(states, RUN, HOSTS, smoke_failed=True)
    assert out["result"] == "failed"
    assert out["message"] == "" and out["failed_hosts"] == [] and out["rolled_back"] == []


def test_smoke_failure_after_a_rolled_back_batch_is_still_rolled_back():
    states = {"app1": rolled_back(gate_failed("app1")), "app2": untouched()}
    out = d.outcome(RUN, states, ["app1", "app2"], smoke_failed=True, rollback_hosts=["app1"])
    assert out["result"] == "failed, rolled back"


def test_prepare_failure_is_refused_named_once_by_the_telling_host():
    task = "Install the release without switching to it, 3.0.0"
    states = {
        "app1": state(failure=d.failure("app1", "prepare", task, "")),
        "app2": state(failure=d.failure("app2", "prepare", task, "sha256 mismatch")),
        "app3": state(failure=d.failure("app3", "prepare", task, "another")),
    }
    assert states["app1"]["failure"]["msg"] == "failed"
    assert flt.deploy_rollback_plan(states, HOSTS) == []
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=[])
    assert out["result"] == "refused"
    assert out["failed_hosts"] == HOSTS
    assert (
        out["message"]
        == "deploy of release 3.0.0 FAILED: app2 failed at prepare (%s): sha256 mismatch; no host was switched." % task
    )


def test_prepare_failure_saying_only_failed_names_the_first_host():
    states = {name: state(failure=d.failure(name, "prepare")) for name in HOSTS}
    out = d.outcome(RUN, states, HOSTS)
    assert out["message"] == "deploy of release 3.0.0 FAILED: app1 failed at prepare: failed; no host was switched."


def test_a_host_listed_twice_is_named_once():
    states = {"app1": gate_failed("app1")}
    out = d.outcome(RUN, states, ["app1", "app1"])
    assert out["failed_hosts"] == ["app1"]
    assert out["message"] == "deploy of release 3.0.0 FAILED: app1 failed at gate (%s): %s;" % (GATE_TASK, GATE_MSG)


def test_a_failure_record_without_msg_says_failed():
    states = {"app1": state(failure={"host": "app1", "step": "gate", "task": "", "msg": ""})}
    assert d.outcome(RUN, states, ["app1"])["message"] == "deploy of release 3.0.0 FAILED: app1 failed at gate: failed;"


def test_a_failed_rollback_run_tells_its_mode():
    run = {"mode": "rollback", "release": "2.0.0"}
    states = {"app1": state(failure=d.failure("app1", "prepare", "Refuse a rollback", "rollback refused"))}
    out = d.outcome(run, states, ["app1"])
    assert out["result"] == "refused"
    assert out["message"] == (
        "rollback of release 2.0.0 FAILED: app1 failed at prepare (Refuse a rollback): rollback refused; "
        "no host was switched."
    )


def test_outcome_ok_and_summary():
    states = {name: done() for name in HOSTS}
    out = flt.deploy_outcome(states, RUN, HOSTS)
    assert out == {
        "result": "ok",
        "failed_hosts": [],
        "rolled_back": [],
        "not_rolled_back": [],
        "message": "",
        "summary": "deploy of release 3.0.0 done on app1, app2, app3 (no host already on it).",
    }
    assert d.outcome({}, {}, [])["summary"] == "deploy of release  done on  (no host already on it)."


def test_deploy_outcome_refuses_bad_input():
    with pytest.raises(AnsibleFilterError, match="deploy_outcome expects a mapping"):
        flt.deploy_outcome({}, "3.0.0", HOSTS)
    with pytest.raises(AnsibleFilterError, match="deploy_outcome expects a list"):
        flt.deploy_outcome({}, RUN, "app1")


# --- A redeploy of the current release ---------------------------------------------------


def test_hosts_already_on_the_release_are_not_rolled_back_and_are_named():
    unchanged = state(progress={"step": "done", "drained": False, "release": "3.0.0", "unchanged": True}, gate="ok")
    states = {"app1": unchanged, "app2": gate_failed("app2"), "app3": untouched()}
    plan = flt.deploy_rollback_plan(states, HOSTS)
    assert plan == ["app2"]
    states["app2"] = rolled_back(states["app2"])
    out = flt.deploy_outcome(states, RUN, HOSTS, rollback_hosts=plan)
    assert out["result"] == "failed, rolled back"
    ok = {"app1": unchanged, "app2": unchanged, "app3": done()}
    assert (
        flt.deploy_outcome(ok, RUN, HOSTS)["summary"]
        == "deploy of release 3.0.0 done on app1, app2, app3 (app1, app2 already on it)."
    )


def test_nothing_failed_nothing_to_roll_back():
    assert d.rollback_plan({name: done() for name in HOSTS}, HOSTS) == []
    assert d.failures({}, HOSTS) == []


def test_failures_follow_the_hosts_order():
    states = {"app3": gate_failed("app3"), "app1": gate_failed("app1")}
    assert [f["host"] for f in d.failures(states, HOSTS)] == ["app1", "app3"]


# --- Rollback target ----------------------------------------------------------------------


def test_previous_good_without_a_ledger_is_the_previous_link():
    assert d.previous_good("", "3.0.0", ["2.0.0", "3.0.0"], "2.0.0") == "2.0.0"
    assert d.previous_good(None, "3.0.0", None, None) == ""


def test_previous_good_after_an_automatic_rollback_skips_the_failed_release():
    text = ledger(
        {"release": "1.0.0", "result": "ok"},
        {"release": "2.0.0", "result": "ok"},
        {"release": "3.0.0", "result": "failed, rolled back"},
    )
    # Back on 2.0.0, whose previous link points at the failed 3.0.0.
    installed = ["1.0.0", "2.0.0", "3.0.0"]
    assert d.previous_good(text, "2.0.0", installed, "3.0.0") == "1.0.0"


def test_previous_good_reads_a_base64_ledger_as_slurp_returns_it():
    text = ledger(
        {"release": "1.0.0", "result": "ok"}, {"release": "2.0.0", "result": "ok"}, {"release": "3.0.0", "result": "ok"}
    )
    content = base64.b64encode(text.encode()).decode()
    assert d.previous_good(content, "3.0.0", ["1.0.0", "2.0.0", "3.0.0"], "") == "2.0.0"


def test_previous_good_skips_a_release_no_longer_installed():
    text = ledger({"release": "1.0.0", "result": "ok"}, {"release": "2.0.0", "result": "ok"})
    assert d.previous_good(text, "3.0.0", ["1.0.0", "3.0.0"], "2.0.0") == "1.0.0"
    assert d.previous_good(text, "3.0.0", ["3.0.0"], "2.0.0") == "2.0.0"


def test_previous_good_ignores_lines_it_cannot_use():
    text = "\n".join(
        [
            "",
            "{not json",
            "[1, 2]",
            json.dumps({"release": 7, "result": "ok"}),
            json.dumps({"release": "", "result": "ok"}),
            json.dumps({"release": "1.0.0"}),
            json.dumps({"release": "1.1.0", "result": "ok"}),
        ]
    )
    assert d.previous_good(text, "3.0.0", ["1.0.0", "1.1.0", "3.0.0"], "x") == "1.1.0"
    # Not base64, not JSON: no ledger.
    assert d.previous_good("abc", "3.0.0", ["1.1.0"], "2.0.0") == "2.0.0"


def test_rollback_target_shared_given_missing_and_none():
    hosts = {
        "app1": {"good": "2.0.0", "releases": ["2.0.0", "3.0.0"]},
        "app2": {"good": "2.0.0", "releases": ["2.0.0"]},
    }
    assert d.rollback_target("", hosts) == {"release": "2.0.0", "error": ""}
    assert d.rollback_target("3.0.0", hosts) == {
        "release": "3.0.0",
        "error": "rollback refused, nothing was changed: release 3.0.0 is not installed on app2.",
    }
    none = {"app1": {"good": "", "releases": ["3.0.0"]}, "app2": {"good": None, "releases": ["3.0.0"]}}
    expected = {
        "release": "",
        "error": "rollback refused, nothing was changed: there is no previous good release to go back to; "
        "name one with -e release=ID.",
    }
    assert d.rollback_target(None, none) == expected
    assert d.rollback_target("", {}) == expected
    assert d.rollback_target("2.0.0", {}) == {"release": "2.0.0", "error": ""}


def test_rollback_target_refused_when_hosts_disagree():
    hosts = {"app1": {"good": "2.0.0", "releases": ["2.0.0"]}, "app2": {"good": "1.0.0"}, "app3": {"good": ""}}
    target = d.rollback_target("", hosts)
    assert target["release"] == ""
    assert target["error"] == (
        "rollback refused, nothing was changed: the app hosts are on different releases and their previous releases "
        "differ (app1: 2.0.0, app2: 1.0.0, app3: none); name the release with -e release=ID."
    )
    # A release named by the operator settles it.
    hosts = {
        "app1": {"good": "2.0.0", "releases": ["1.0.0", "2.0.0"]},
        "app2": {"good": "1.0.0", "releases": ["1.0.0"]},
    }
    assert d.rollback_target("1.0.0", hosts) == {"release": "1.0.0", "error": ""}


def test_rollback_target_refuses_a_bad_release_id_given():
    hosts = {"app1": {"good": "2.0.0", "releases": ["2.0.0"]}}
    target = d.rollback_target("../2.0.0", hosts)
    assert target["release"] == ""
    assert target["error"].startswith('rollback refused, nothing was changed: release id "../2.0.0" must match ')
    assert target["error"].endswith("the first a letter or digit).")


def _hostvars(current, previous, releases, ledger_text=None):
    facts = {"app_state": {"current": current, "previous": previous, "releases": releases}}
    if ledger_text is not None:
        facts["deploy_ledger_content"] = {
            "content": base64.b64encode(ledger_text.encode()).decode(),
            "encoding": "base64",
        }
    return facts


def test_deploy_rollback_target_reads_app_state_and_the_ledger_from_hostvars():
    text = ledger({"release": "1.0.0", "result": "ok"}, {"release": "2.0.0", "result": "ok"})
    hostvars = {
        "app1": _hostvars("2.0.0", "3.0.0", ["1.0.0", "2.0.0", "3.0.0"], text),
        "app2": _hostvars("2.0.0", "3.0.0", ["1.0.0", "2.0.0", "3.0.0"], text),
        "lb1": {},
    }
    target = flt.deploy_rollback_target(hostvars, ["app1", "app2"])
    assert target == {"release": "1.0.0", "error": "", "by_host": {"app1": "1.0.0", "app2": "1.0.0"}}


def test_deploy_rollback_target_without_ledger_or_previous_is_refused():
    hostvars = {"app1": _hostvars("3.0.0", "", ["3.0.0"]), "app2": {"deploy_ledger_content": {"failed": True}}}
    target = flt.deploy_rollback_target(hostvars, ["app1", "app2"], "")
    assert target["release"] == "" and "no previous good release" in target["error"]
    assert target["by_host"] == {"app1": "", "app2": ""}


def test_deploy_rollback_target_hosts_disagree():
    hostvars = {
        "app1": _hostvars("3.0.0", "2.0.0", ["2.0.0", "3.0.0"]),
        "app2": _hostvars("3.0.0", "1.0.0", ["1.0.0", "3.0.0"]),
    }
    target = flt.deploy_rollback_target(hostvars, ["app1", "app2"])
    assert "differ (app1: 2.0.0, app2: 1.0.0)" in target["error"]
    assert target["by_host"] == {"app1": "2.0.0", "app2": "1.0.0"}


# --- The request and its resolution ------------------------------------------------------


def test_request_file_by_release(tmp_path):
    req = flt.deploy_request("file", release="3.0.0", artifact_dir=str(tmp_path))
    assert req == {
        "source": "file",
        "release": "3.0.0",
        "artifact": "%s/app-3.0.0.tar.gz" % tmp_path,
        "ref": "3.0.0",
        "read_version": False,
        "ls_remote": False,
        "error": "",
    }
    req = d.request(None, release="3.0.0", artifact_dir="", artifact_pattern="site_{release}.tgz")
    assert req["source"] == "file" and req["artifact"] == "./site_3.0.0.tgz"


def test_request_file_by_artifact_reads_its_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    req = d.request("file", artifact="dist/app.tar.gz")
    assert req["artifact"] == os.path.join(os.path.realpath(str(tmp_path)), "dist", "app.tar.gz")
    assert req["read_version"] is True and req["release"] == "" and req["error"] == ""
    req = d.request("file", release="3.0.0", artifact="dist/app.tar.gz")
    assert req["read_version"] is False and req["artifact"].endswith("/dist/app.tar.gz")


def test_request_file_without_release_or_artifact_is_refused():
    req = d.request("file", release=None)
    assert req["error"] == (
        "deploy: give the release to deploy, -e release=ID (the tarball ./app-{release}.tar.gz), "
        "or the tarball, -e artifact=PATH."
    )
    assert req["artifact"] == ""
    req = d.request("file", artifact_dir="")
    assert "(the tarball <bosun_deploy_artifact_dir>/app-{release}.tar.gz)" in req["error"]


def test_request_url():
    req = d.request("url", release="3.0.0")
    assert req["error"] == "" and req["artifact"] == "" and not req["read_version"] and not req["ls_remote"]
    assert d.request("url")["error"] == (
        "deploy: give the release to deploy, -e release=ID "
        "(app_artifact_url and app_artifact_checksum name its tarball)."
    )


def test_request_git():
    req = d.request("git", repo="https://host/x")
    assert req["ref"] == "HEAD" and req["ls_remote"] is True and req["error"] == ""
    assert d.request("git", release="3.0.0", repo="https://host/x")["ref"] == "3.0.0"
    req = d.request("git", release="3.0.0", git_ref="v3", repo="https://host/x")
    assert req["ref"] == "v3" and req["release"] == "3.0.0"
    req = d.request("git", git_ref=SHA, repo="https://host/x")
    assert req["ref"] == SHA and req["ls_remote"] is False
    assert d.request("git", git_ref="main")["error"] == (
        "deploy: set app_git_repo for the app hosts; -e git_ref=BRANCH|TAG|COMMIT picks the commit (default HEAD)."
    )


def test_request_unknown_source_is_refused():
    assert d.request("s3", release="3.0.0")["error"] == "deploy: the source s3 is not file, git or url."


@pytest.mark.parametrize("source", ["file", "git", "url"])
@pytest.mark.parametrize("release", ["../etc", "3 0", "-rc1", "x" * 129])
def test_request_refuses_a_bad_release_id(source, release):
    req = d.request(source, release=release, repo="https://host/x")
    assert req["error"].startswith("deploy: release id %s must match " % json.dumps(release))
    assert req["error"].endswith("the first a letter or digit).")


def test_request_takes_a_number_as_a_release_id():
    assert d.request("url", release=3)["release"] == "3"
    assert d.request("url", release=3)["error"] == ""


def test_release_id_problem():
    assert d.release_id_problem("1.0+build_7-x") == ""
    assert '"3"' in d.release_id_problem(3)
    assert d.release_id_problem("", what="rollback target").startswith('rollback target "" must match')


def _file_request(artifact, release=""):
    return {"source": "file", "release": release, "artifact": artifact, "ref": release or "HEAD"}


def _stat(checksum="ab" * 32):
    return {"stat": {"exists": True, "isreg": True, "checksum": checksum}}


def test_resolve_file_with_the_release_given():
    run = flt.deploy_resolve(_file_request("/srv/app-3.0.0.tar.gz", "3.0.0"), artifact_stat=_stat())
    assert run == {
        "mode": "deploy",
        "source": "file",
        "release": "3.0.0",
        "artifact": "/srv/app-3.0.0.tar.gz",
        "checksum": "sha256:" + "ab" * 32,
        "git_commit": "",
        "error": "",
        "dump_label": "pre-deploy-3_0_0",
    }


def test_resolve_file_release_from_the_version_file():
    run = d.resolve(_file_request("/srv/app.tar.gz"), artifact_stat=_stat(), version={"rc": 0, "stdout": " 3.1.0\n"})
    assert run["release"] == "3.1.0" and run["error"] == ""


@pytest.mark.parametrize(
    "version",
    [
        {"rc": 0, "stdout": "not a release id\n"},
        {"rc": 2, "stdout": "3.1.0", "stderr": "tar: VERSION: Not found"},
        {},
        None,
    ],
)
@pytest.mark.parametrize("name", ["app-3.1.0.tar.gz", "app-3.1.0.tgz", "app-3.1.0.tar.zst", "app-3.1.0.tar"])
def test_resolve_file_release_from_the_archive_name(version, name):
    run = d.resolve(_file_request("/srv/" + name), artifact_stat=_stat(), version=version)
    assert run["release"] == "app-3.1.0" and run["error"] == ""


def test_resolve_file_archive_name_that_is_no_release_id():
    run = d.resolve(_file_request("/srv/my app.tar.gz"), artifact_stat=_stat())
    assert run["release"] == "my app"
    assert run["error"].startswith('deploy: release id "my app" must match ')
    assert run["error"].endswith("; name the release with -e release=ID.")
    assert flt.deploy_resolve(_file_request("/srv/.tar"), artifact_stat=_stat())["dump_label"] == ""


@pytest.mark.parametrize(
    "artifact_stat", [None, {}, {"stat": {"exists": False}}, {"stat": {"exists": True, "isreg": False}}]
)
def test_resolve_file_missing_artifact(artifact_stat):
    run = d.resolve(_file_request("/srv/app-3.0.0.tar.gz", "3.0.0"), artifact_stat=artifact_stat)
    assert run["error"] == "deploy: the artifact /srv/app-3.0.0.tar.gz does not exist or is not a file."
    assert run["artifact"] == "" and run["checksum"] == ""


def test_resolve_git_full_commit_taken_as_is():
    req = d.request("git", git_ref=SHA, repo="https://token@host/x")
    run = flt.deploy_resolve(req, repo="https://token@host/x")
    assert run["git_commit"] == SHA
    assert run["release"] == "g" + SHA[:12]
    assert run["artifact"] == "https://host/x@" + SHA
    assert run["checksum"] == "git:" + SHA
    assert run["dump_label"] == "pre-deploy-g" + SHA[:12]
    assert "token" not in json.dumps(run)


def test_resolve_git_ref_from_ls_remote():
    req = d.request("git", release="3.0.0", git_ref="main", repo="https://host/x")
    ls_remote = {"rc": 0, "stdout": "%s\trefs/heads/main\n" % SHA, "stderr": ""}
    run = d.resolve(req, repo="https://host/x", ls_remote=ls_remote)
    assert run["git_commit"] == SHA and run["release"] == "3.0.0" and run["error"] == ""


def test_resolve_git_ref_that_matches_nothing_hides_the_credentials():
    req = d.request("git", git_ref="nope", repo="https://token@host/x")
    run = d.resolve(req, repo="https://token@host/x", ls_remote={"rc": 0, "stdout": "", "stderr": ""})
    assert run["error"] == "deploy: git ref nope is not in https://host/x (no match)."
    stderr = "fatal: unable to access 'https://token@host/x/': Could not resolve host: host\n"
    run = d.resolve(req, repo="https://token@host/x", ls_remote={"rc": 128, "stdout": "", "stderr": stderr})
    assert run["error"] == (
        "deploy: git ref nope is not in https://host/x "
        "(fatal: unable to access 'https://host/x/': Could not resolve host: host)."
    )
    assert "https://token@host/x" not in json.dumps(run)
    assert d.resolve(req, repo="https://token@host/x")["error"].endswith("(no match).")


def test_redact_url():
    assert d.redact_url("https://token@host/x") == "https://host/x"
    assert d.redact_url("https://user:p@ss@host/x") == "https://host/x"
    assert d.redact_url("ssh://git@host:22/x.git") == "ssh://host:22/x.git"
    assert d.redact_url("git@host:org/x.git") == "git@host:org/x.git"
    assert d.redact_url("'https://host/x' for user@y") == "'https://host/x' for user@y"
    assert d.redact_url("'https://host' failed for git@y") == "'https://host' failed for git@y"
    assert d.redact_url(None) == ""


def test_resolve_url():
    run = d.resolve(d.request("url", release="3.0.0"))
    assert run["artifact"] == "app_artifact_url" and run["checksum"] == "app_artifact_checksum"
    assert run["release"] == "3.0.0" and run["error"] == ""


def test_resolve_refuses_a_bad_release_id():
    run = d.resolve({"source": "url", "release": "bad id"})
    assert run["error"].startswith('deploy: release id "bad id" must match ')
    with pytest.raises(AnsibleFilterError, match="deploy_resolve expects a mapping"):
        flt.deploy_resolve("file")


def test_dump_label():
    assert d.dump_label("1.0+b/7") == "pre-deploy-1_0_b_7"
    assert d.dump_label("v1_2-3") == "pre-deploy-v1_2-3"


def test_dump_label_filter_is_the_label_the_deploy_takes():
    # The rollback's restore asks for the label the deploy wrote: the same function.
    run = flt.deploy_resolve(_file_request("/srv/app.tar.gz", release="2.0.0+b.7"), artifact_stat=_stat())
    assert flt.deploy_dump_label(run["release"]) == run["dump_label"] == "pre-deploy-2_0_0_b_7"
    for empty in ("", None):
        with pytest.raises(AnsibleFilterError, match="deploy_dump_label expects a release id"):
            flt.deploy_dump_label(empty)


# --- Preflight, gate, URL checks, log ----------------------------------------------------


def test_preflight_checks_per_tier_merged_with_the_hosts_settings():
    host_vars = {
        "bosun_health_postgres": {"postgres": {"login_db": "app"}, "labels": {"site": "fra1"}},
        "bosun_elasticsearch": {"url": "https://10.0.0.5:9200"},
        "bosun_health_elasticsearch": {"elasticsearch": {"validate_certs": False}},
    }
    checks = flt.deploy_preflight_checks(host_vars, ["db", "search", "all_hosts"])
    assert [c["name"] for c in checks] == ["PostgreSQL", "Elasticsearch", "disk /"]
    assert checks[0] == {
        "name": "PostgreSQL",
        "type": "postgres",
        "labels": {"tier": "db", "site": "fra1"},
        "postgres": {"login_db": "app"},
    }
    assert checks[1]["elasticsearch"] == {"url": "https://10.0.0.5:9200", "validate_certs": False}
    assert checks[2] == {"name": "disk /", "type": "disk", "disk": {"path": "/"}}
    # A cache host without settings: the default Redis check; the defaults are not shared state.
    redis = flt.deploy_preflight_checks({}, ["cache"])
    assert redis[0] == {"name": "Redis", "type": "redis", "labels": {"tier": "cache"}}
    redis[0]["labels"]["tier"] = "changed"
    assert flt.deploy_preflight_checks({}, ["cache"])[0]["labels"] == {"tier": "cache"}
    # A host in no data group gets the disk check only.
    assert flt.deploy_preflight_checks({}, ["app"]) == [{"name": "disk /", "type": "disk", "disk": {"path": "/"}}]
    with pytest.raises(AnsibleFilterError, match="expects the host's group names"):
        flt.deploy_preflight_checks({}, "db")


def test_preflight_problems():
    results = [
        {
            "item": "db1",
            "checks": [
                {"name": "PostgreSQL", "status": "crit", "message": "down"},
                {"name": "disk /", "status": "warn"},
            ],
        },
        {"item": "cache1", "unreachable": True, "msg": "no route"},
        {"item": "search1", "checks": [{"name": "Elasticsearch", "status": "ok"}]},
        {"checks": [{"status": "crit"}]},
        {"item": "skipped1", "skipped": True},
    ]
    assert flt.deploy_preflight(results) == ["db1 PostgreSQL: down", "cache1: unreachable", "? ?: "]
    assert flt.deploy_preflight(None) == []


def test_gate_checks_default_unit_and_extra():
    assert flt.deploy_gate_checks() == [
        {
            "name": "app health",
            "type": "http",
            "labels": {"tier": "app"},
            "http": {"url": "http://127.0.0.1:8000/health"},
        }
    ]
    extra = [{"name": "queue", "type": "tcp", "tcp": {"port": 5555}}]
    checks = flt.deploy_gate_checks(9000, path="/ready", unit="shop.service", extra=extra)
    assert checks[0]["http"] == {"url": "http://127.0.0.1:9000/ready"}
    assert checks[1] == {
        "name": "app unit",
        "type": "systemd",
        "labels": {"tier": "app"},
        "systemd": {"unit": "shop.service"},
    }
    assert checks[2:] == extra


def test_gate_checks_merge_http_overrides_recursively():
    http = {"json_path": "status", "json_equals": "healthy", "url": "http://127.0.0.1:8000/live"}
    assert flt.deploy_gate_checks(8000, http=http)[0]["http"] == http
    base = {"url": "u", "headers": {"Accept": "application/json", "X-A": "1"}, "status_codes": [200]}
    merged = d._merge(base, {"headers": {"X-A": "2", "X-B": "3"}, "status_codes": [204]})
    assert merged == {
        "url": "u",
        "headers": {"Accept": "application/json", "X-A": "2", "X-B": "3"},
        "status_codes": [204],
    }
    assert base["headers"] == {"Accept": "application/json", "X-A": "1"}
    assert d._merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    with pytest.raises(AnsibleFilterError, match="deploy_gate_checks expects a mapping"):
        flt.deploy_gate_checks(8000, http="status=healthy")


def test_gate_verdict():
    checks = [
        {"name": "app health", "status": "crit", "message": "HTTP 500"},
        {"name": "app unit", "status": "ok", "message": "active"},
        {"name": "queue", "status": "unknown", "message": "timed out"},
    ]
    assert flt.deploy_gate_verdict({"status": "ok"}, "3.0.0", 60) == ""
    assert flt.deploy_gate_verdict({"status": "warn", "checks": checks}, "3.0.0", 60) == ""
    assert flt.deploy_gate_verdict({"status": "crit", "checks": checks}, "3.0.0", 60) == (
        "health gate failed on release 3.0.0 after 60 s: app health: HTTP 500; queue: timed out"
    )
    assert flt.deploy_gate_verdict({"failed": True, "msg": "module crashed"}, "3.0.0", 60) == (
        "health gate failed on release 3.0.0 after 60 s: module crashed"
    )
    assert flt.deploy_gate_verdict(None, "3.0.0", 60) == "health gate failed on release 3.0.0 after 60 s: no result"
    assert (
        flt.deploy_gate_verdict({"unreachable": True, "msg": "ssh: timed out"}, "3.0.0", 60)
        == "unreachable: ssh: timed out"
    )
    assert flt.deploy_gate_verdict({"unreachable": True}, "3.0.0", 60) == "unreachable: no answer"


def test_failure_record():
    assert d.failure("app1", "gate") == {"host": "app1", "step": "gate", "task": "", "msg": "failed"}


def test_url_checks_host_header_only_with_a_name():
    checks = flt.deploy_url_checks(["/health", "/"], "smoke", "https://www.example.com", server_name="www.example.com")
    assert [check["name"] for check in checks] == ["smoke /health", "smoke /"]
    assert checks[0] == {
        "name": "smoke /health",
        "type": "http",
        "http": {
            "url": "https://www.example.com/health",
            "connect_address": "127.0.0.1",
            "validate_certs": False,
            "ca_cert_data": "",
            "status_codes": [200],
            "headers": {"Host": "www.example.com"},
        },
    }
    checks = flt.deploy_url_checks(
        ["/"], "warm-up", "https://127.0.0.1", validate_certs="yes", ca_cert_data=None, status_codes=["200", 304]
    )
    http = checks[0]["http"]
    assert http["headers"] == {} and http["validate_certs"] is True and http["ca_cert_data"] == ""
    assert http["status_codes"] == [200, 304]
    assert d.url_checks("smoke", None, "https://x") == []


def test_log_line():
    record = {
        "finished": "2026-01-02T03:04:05Z",
        "mode": "deploy",
        "release": "3.0.0",
        "result": "failed, rolled back",
        "user": "ops",
        "duration": 42.5,
        "hosts": HOSTS,
        "failed_hosts": ["app2"],
    }
    assert flt.deploy_log_line(record) == (
        "2026-01-02T03:04:05Z deploy release=3.0.0 result=failed, rolled back user=ops duration=42.5s "
        "hosts=app1,app2,app3 failed=app2"
    )
    record.update(result="ok", failed_hosts=[])
    assert flt.deploy_log_line(record).endswith("result=ok user=ops duration=42.5s hosts=app1,app2,app3")
    assert flt.deploy_log_line({}) == "  release= result= user= duration=s hosts="


# --- deploy_states over plain-dict hostvars --------------------------------------------------


def test_deploy_states_reads_the_recorded_facts():
    progress = {"step": "done", "drained": False, "release": "3.0.0"}
    record = d.failure("app2", "gate", GATE_TASK, GATE_MSG)
    hostvars = {
        "app1": {"deploy_previous": "2.0.0", "deploy_progress": progress, "deploy_gate_result": {"status": "ok"}},
        "app2": {
            "deploy_previous": "2.0.0",
            "deploy_failure": record,
            "deploy_gate_result": {"status": "crit"},
            "deploy_rolled_back": False,
            "deploy_rollback_failure": "unreachable: ",
        },
        "app3": {"deploy_gate_result": "not a result"},
        "app4": None,
    }
    states = flt.deploy_states(hostvars, ["app1", "app2", "app3", "app4", "gone"])
    assert states["app1"] == state(progress=progress, gate="ok")
    assert states["app2"] == state(failure=record, gate="crit", rolled_back=False, rollback_failure="unreachable: ")
    empty = state(previous=None)
    assert states["app3"] == empty and states["app4"] == empty and states["gone"] == empty
    assert list(states) == ["app1", "app2", "app3", "app4", "gone"]
    with pytest.raises(AnsibleFilterError, match="deploy_states expects a list of host names"):
        flt.deploy_states(hostvars, "app1")


def test_the_states_feed_the_other_filters():
    hostvars = {
        "app1": {"deploy_previous": "2.0.0", "deploy_progress": {"step": "done", "drained": False, "release": "3.0.0"}},
        "app2": {
            "deploy_previous": "2.0.0",
            "deploy_progress": {"step": "switch", "drained": True, "release": "3.0.0"},
            "deploy_failure": d.failure("app2", "gate", GATE_TASK, GATE_MSG),
        },
    }
    states = flt.deploy_states(hostvars, ["app1", "app2"])
    assert flt.deploy_rollback_plan(states, ["app1", "app2"]) == ["app2", "app1"]
    assert flt.deploy_batch(states, ["app1", "app2"])["drain"] == ["app1"]


# --- The filters and their documentation ---------------------------------------------------


def test_every_filter_is_documented_with_its_signature():
    filters = flt.FilterModule().filters()
    assert len(filters) == 15
    for name, func in filters.items():
        with open(os.path.join(ROOT, "plugins", "filter", name + ".yml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)["DOCUMENTATION"]
        assert doc["name"] == name
        params = list(inspect.signature(func).parameters.values())
        options = doc["options"]
        assert list(options) == ["_input"] + [p.name for p in params[1:]], name
        assert options["_input"].get("required") is True, name
        for param in params[1:]:
            option = options[param.name]
            if param.default is inspect.Parameter.empty:
                assert option.get("required") is True, (name, param.name)
            elif param.default is None:
                assert "default" not in option, (name, param.name)
            else:
                assert option.get("default") == param.default, (name, param.name)


# --- The rollout's rescue: which step failed -----------------------------------------------


@pytest.mark.parametrize(
    "task_vars, progress, step",
    [
        ({"deploy_step": "gate"}, {"step": "switch", "drained": True}, "gate"),  # the gate's own tasks
        ({}, {"step": "switch", "drained": True}, "switch"),  # the switch failed after the drain
        (None, {"step": "switch"}, "switch"),
        ({}, {}, "drain"),  # nothing recorded: the drain itself failed
        ({"other": 1}, None, "drain"),
    ],
)
def test_the_failed_step_is_declared_by_the_task_or_recorded_by_the_host(task_vars, progress, step):
    task = {"name": "any name at all", "vars": task_vars}
    record = flt.deploy_failure("app1", task, {"msg": "boom"}, progress)
    assert record == d.failure("app1", step, "any name at all", "boom")


def test_the_task_name_does_not_decide_the_step():
    named_like_the_gate = {"name": "Health gate on release 2.0.0", "vars": {}}
    assert flt.deploy_failure("app1", named_like_the_gate, {}, {"step": "switch"})["step"] == "switch"


def test_a_failure_without_a_failed_task_or_message_still_names_the_host():
    assert flt.deploy_failure("app2") == {"host": "app2", "step": "drain", "task": "", "msg": "failed"}


def test_an_unknown_declared_step_is_refused():
    with pytest.raises(AnsibleFilterError, match="deploy step 'gat' is not one of drain, switch, gate"):
        flt.deploy_failure("app1", {"vars": {"deploy_step": "gat"}})
