# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of a deploy and a rollback, as plain functions of plain data.

The ``deploy`` role's tasks run modules and record what happened on each host; everything
that decides (which release, which hosts are drained or switched, which go back, what the
run's outcome is and how it is told) is here, reached by the filters of
``plugins/filter/deploy.py`` and by the unit tests.

Per-host state, as the role records it on each app host (see ``host_state``):

- ``previous``: the release the host ran when the run started ('' when none);
- ``progress``: ``{step, drained, release, unchanged}`` once the host entered the rollout
  (``step`` is ``switch`` after the drain, ``done`` after its gate passed and it is back in
  the load balancers; ``unchanged`` when it already ran the release);
- ``failure``: ``{host, step, task, msg}`` when it failed (``step`` ``prepare`` means before
  any host was switched);
- ``gate``: the status of its last health gate (``ok``, ``warn``, ``crit``, ...);
- ``rolled_back``: true/false once the automatic rollback handled it, with
  ``rollback_failure`` saying why it could not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import json
import os
import re

from ansible_collections.bosun.platform.plugins.module_utils._app_release import RELEASE_ID_PATTERN, RELEASE_ID_RE

SOURCES = ("file", "git", "url")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
ARCHIVE_SUFFIX_RE = re.compile(r"\.(tar\.gz|tgz|tar\.zst|tar)$")
CREDENTIALS_RE = re.compile(r"//[^/\s]*@")
PASSED = ("ok", "warn")


def redact_url(url):
    """A repository URL without the credentials it may carry (``https://token@host/...``)."""
    return CREDENTIALS_RE.sub("//", str(url or ""))


def release_id_problem(release, what="release id"):
    """'' when ``release`` is a valid release id, else the reason."""
    if isinstance(release, str) and RELEASE_ID_RE.fullmatch(release):
        return ""
    return (
        "%s %s must match %s as a whole (1 to 128 letters, digits, '.', '_', '+', '-', the first a letter or digit)"
        % (
            what,
            json.dumps(release if isinstance(release, str) else str(release)),
            RELEASE_ID_PATTERN,
        )
    )


def request(
    source, release="", artifact="", git_ref="", repo="", artifact_dir=".", artifact_pattern="app-{release}.tar.gz"
):
    """What the controller must look at to resolve a deploy's release.

    Returns ``{source, release, artifact, ref, read_version, ls_remote, error}``: ``artifact``
    is the tarball's path for the file source (``artifact`` as given, made absolute, else the
    directory and pattern with the release); ``read_version`` says whether the release id
    comes from the tarball's VERSION file; ``ls_remote`` whether the git ref must be resolved
    to a commit. ``error`` is '' or why the deploy is refused before anything runs.
    """
    source = str(source or "file")
    release = "" if release is None else str(release)
    artifact = str(artifact or "")
    ref = str(git_ref or release or "HEAD")
    result = {
        "source": source,
        "release": release,
        "artifact": "",
        "ref": ref,
        "read_version": False,
        "ls_remote": False,
        "error": "",
    }
    if source not in SOURCES:
        result["error"] = "deploy: the source %s is not file, git or url." % source
        return result
    if source == "file":
        if not release and not artifact:
            result["error"] = (
                "deploy: give the release to deploy, -e release=ID (the tarball %s/%s), "
                "or the tarball, -e artifact=PATH." % (artifact_dir or "<bosun_deploy_artifact_dir>", artifact_pattern)
            )
            return result
        if artifact:
            result["artifact"] = os.path.realpath(artifact)
        else:
            result["artifact"] = "%s/%s" % (artifact_dir or ".", str(artifact_pattern).replace("{release}", release))
        result["read_version"] = not release
    elif source == "url":
        if not release:
            result["error"] = (
                "deploy: give the release to deploy, -e release=ID "
                "(app_artifact_url and app_artifact_checksum name its tarball)."
            )
            return result
    else:
        if not repo:
            result["error"] = (
                "deploy: set app_git_repo for the app hosts; "
                "-e git_ref=BRANCH|TAG|COMMIT picks the commit (default HEAD)."
            )
            return result
        result["ls_remote"] = not COMMIT_RE.match(ref)
    if release:
        problem = release_id_problem(release)
        if problem:
            result["error"] = "deploy: %s." % problem
    return result


def resolve(req, repo="", artifact_stat=None, version=None, ls_remote=None):
    """The release every host gets, from the request and what the controller found.

    ``artifact_stat`` is the ``stat`` result of the tarball (file source), ``version`` the
    result of reading its VERSION file, ``ls_remote`` the result of ``git ls-remote``.
    Returns ``{mode, source, release, artifact, checksum, git_commit, error}``.
    """
    source = req["source"]
    run = {
        "mode": "deploy",
        "source": source,
        "release": req.get("release", ""),
        "artifact": "",
        "checksum": "",
        "git_commit": "",
        "error": "",
    }
    if source == "file":
        stat = (artifact_stat or {}).get("stat") or {}
        if not stat.get("isreg"):
            run["error"] = "deploy: the artifact %s does not exist or is not a file." % req["artifact"]
            return run
        run["artifact"] = req["artifact"]
        run["checksum"] = "sha256:%s" % (stat.get("checksum") or "")
        if not run["release"]:
            version = version or {}
            text = str(version.get("stdout") or "").strip()
            if version.get("rc", 1) == 0 and RELEASE_ID_RE.fullmatch(text):
                run["release"] = text
            else:
                run["release"] = ARCHIVE_SUFFIX_RE.sub("", os.path.basename(req["artifact"]))
    elif source == "git":
        ref = req["ref"]
        if COMMIT_RE.match(ref):
            commit = ref
        else:
            lines = str((ls_remote or {}).get("stdout") or "").split()
            commit = lines[0] if lines else ""
        if not commit:
            run["error"] = "deploy: git ref %s is not in %s (%s)." % (
                ref,
                redact_url(repo),
                redact_url(str((ls_remote or {}).get("stderr") or "")).strip() or "no match",
            )
            return run
        run["git_commit"] = commit
        run["artifact"] = "%s@%s" % (redact_url(repo), commit)
        run["checksum"] = "git:%s" % commit
        run["release"] = run["release"] or "g" + commit[:12]
    else:
        run["artifact"] = "app_artifact_url"
        run["checksum"] = "app_artifact_checksum"
    problem = release_id_problem(run["release"])
    if problem:
        run["error"] = "deploy: %s; name the release with -e release=ID." % problem
    return run


# The checks of the deploy's preflight per data tier: (group, base check, the host's
# variable merged into it). Elasticsearch's connection is the host's bosun_elasticsearch.
PREFLIGHT_TIERS = (
    ("db", {"name": "PostgreSQL", "type": "postgres", "labels": {"tier": "db"}}, "bosun_health_postgres"),
    ("cache", {"name": "Redis", "type": "redis", "labels": {"tier": "cache"}}, "bosun_health_redis"),
    (
        "search",
        {"name": "Elasticsearch", "type": "elasticsearch", "labels": {"tier": "search"}},
        "bosun_health_elasticsearch",
    ),
)
PREFLIGHT_DISK = {"name": "disk /", "type": "disk", "disk": {"path": "/"}}


def preflight_checks(host_vars, groups):
    """The ``health_check`` checks the deploy's preflight runs on one data host.

    ``host_vars`` are the host's variables, ``groups`` the names of its groups. One check per
    data tier the host is in (PostgreSQL, Redis, Elasticsearch), each merged recursively with
    the host's ``bosun_health_<service>`` settings (a list in them replaces the default's),
    then the root disk.
    """
    host_vars = host_vars or {}
    groups = set(groups or [])
    checks = []
    for group, base, settings in PREFLIGHT_TIERS:
        if group not in groups:
            continue
        check = copy.deepcopy(base)
        if group == "search":
            check["elasticsearch"] = host_vars.get("bosun_elasticsearch") or {}
        checks.append(_merge(check, host_vars.get(settings) or {}))
    checks.append(copy.deepcopy(PREFLIGHT_DISK))
    return checks


def preflight_problems(results):
    """The lines that refuse a deploy, from the looped ``health_check`` results of the data tier."""
    bad = []
    for result in results or []:
        host = result.get("item", "?")
        if result.get("unreachable"):
            bad.append("%s: unreachable" % host)
        for check in result.get("checks") or []:
            if check.get("status") == "crit":
                bad.append("%s %s: %s" % (host, check.get("name", "?"), check.get("message", "")))
    return bad


def previous_good(ledger, current, releases, previous=""):
    """The release a rollback goes back to on one host.

    The newest release the host's ledger (JSON lines, as text or base64 from ``slurp``)
    records as deployed with result ``ok``, other than the current one and still installed;
    without one, the ``previous`` link (after an automatic rollback it points at the failed
    release, which is why the ledger comes first).
    """
    text = ledger or ""
    if text and not text.lstrip().startswith("{"):
        try:
            text = base64.b64decode(text).decode("utf-8", "replace")
        except (ValueError, TypeError):
            text = ""
    installed = set(releases or [])
    good = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("result") != "ok":
            continue
        release = record.get("release")
        if isinstance(release, str) and release and release != current and release in installed:
            good = release
    return good or (previous or "")


def rollback_target(given, hosts):
    """The one release a rollback goes to, or why it is refused.

    ``hosts`` maps each app host to ``{good, releases}`` (its previous good release and the
    releases installed on it). Returns ``{release, error}``.
    """
    given = "" if given is None else str(given)
    names = list(hosts)
    if given and release_id_problem(given):
        return {"release": "", "error": "rollback refused, nothing was changed: %s." % release_id_problem(given)}
    if given:
        targets = [given]
    else:
        targets = []
        for name in names:
            good = hosts[name].get("good") or ""
            if good not in targets:
                targets.append(good)
    if len(targets) > 1:
        by_host = ", ".join("%s: %s" % (name, hosts[name].get("good") or "none") for name in names)
        return {
            "release": "",
            "error": "rollback refused, nothing was changed: the app hosts are on different releases "
            "and their previous releases differ (%s); name the release with -e release=ID." % by_host,
        }
    target = targets[0] if targets else ""
    if not target:
        return {
            "release": "",
            "error": "rollback refused, nothing was changed: there is no previous good release to go back to; "
            "name one with -e release=ID.",
        }
    missing = [name for name in names if target not in (hosts[name].get("releases") or [])]
    if missing:
        return {
            "release": target,
            "error": "rollback refused, nothing was changed: release %s is not installed on %s."
            % (target, ", ".join(missing)),
        }
    return {"release": target, "error": ""}


def to_drain(batch, states):
    """The hosts of a batch to take out of the load balancers (a host already out is not drained again)."""
    return [name for name in batch if not ((states.get(name) or {}).get("progress") or {}).get("drained")]


def passed_gate(batch, states):
    """The hosts of a batch whose health gate passed, to put back into the load balancers."""
    return [name for name in batch if (states.get(name) or {}).get("gate") in PASSED]


def gate_checks(port=8000, path="/health", http=None, unit="", extra=None):
    """The checks of the health gate on one app host: its /health, its unit, and any extra checks."""
    url = {"url": "http://127.0.0.1:%s%s" % (port, path)}
    checks = [{"name": "app health", "type": "http", "labels": {"tier": "app"}, "http": _merge(url, http or {})}]
    if unit:
        checks.append({"name": "app unit", "type": "systemd", "labels": {"tier": "app"}, "systemd": {"unit": unit}})
    return checks + list(extra or [])


def gate_message(gate, release, timeout):
    """'' when the gate passed, else the failure of the host in one line."""
    gate = gate or {}
    if gate.get("unreachable"):
        return "unreachable: %s" % (gate.get("msg") or "no answer")
    if gate.get("status") in PASSED:
        return ""
    bad = [
        "%s: %s" % (check.get("name", "?"), check.get("message", ""))
        for check in gate.get("checks") or []
        if check.get("status") not in PASSED
    ]
    return "health gate failed on release %s after %s s: %s" % (
        release,
        timeout,
        "; ".join(bad) or gate.get("msg") or "no result",
    )


def failure(host, step, task="", msg=""):
    """One failure record."""
    return {"host": host, "step": step, "task": task or "", "msg": msg or "failed"}


def unfinished(batch, states):
    """Failure records for the hosts of a batch that neither finished nor recorded a failure."""
    records = []
    for name in batch:
        state = states.get(name) or {}
        progress = state.get("progress") or {}
        if state.get("failure") or progress.get("step") == "done":
            continue
        records.append(
            failure(name, progress.get("step") or "drain", "", "did not finish its batch (unreachable or interrupted)")
        )
    return records


def failures(states, hosts):
    """The failure records of the hosts, in the hosts' order."""
    return [states[name]["failure"] for name in hosts if (states.get(name) or {}).get("failure")]


def rollback_plan(states, hosts):
    """The hosts the automatic rollback moves back, in order.

    After a failed rollout batch: the failed hosts first (they are out of the load balancers),
    then the hosts switched in earlier batches. A failure during the preparation switched
    nobody: nothing to roll back.
    """
    failed = [f["host"] for f in failures(states, hosts) if f.get("step") != "prepare"]
    if not failed:
        return []
    switched = [
        name
        for name in hosts
        if (states.get(name) or {}).get("progress") and not states[name]["progress"].get("unchanged")
    ]
    plan = []
    for name in failed + switched:
        if name not in plan:
            plan.append(name)
    return plan


def outcome(run, states, hosts, smoke_failed=False, rollback_hosts=None):
    """The result of the run: ``{result, failed_hosts, rolled_back, not_rolled_back, message, summary}``.

    ``result`` is ``ok``; ``failed, rolled back`` (a rollout batch failed and every host the
    rollback handled went back); ``refused`` (the preparation failed: no host was switched);
    or ``failed`` (the smoke test failed, or the rollback did not bring every host back).
    ``message`` is the one line the play fails with ('' when it does not fail).
    """
    mode = run.get("mode", "deploy")
    release = run.get("release", "")
    found = failures(states, hosts)
    rollback_hosts = list(rollback_hosts or [])
    rolled_back = [name for name in rollback_hosts if (states.get(name) or {}).get("rolled_back")]
    not_rolled_back = [name for name in rollback_hosts if name not in rolled_back]
    prepare = [f for f in found if f.get("step") == "prepare"]
    rollout = [f for f in found if f.get("step") != "prepare"]
    rollback_failed = [name for name in hosts if (states.get(name) or {}).get("rollback_failure")]
    if not found and not smoke_failed:
        result = "ok"
    elif rollout and not rollback_failed and not not_rolled_back:
        result = "failed, rolled back"
    elif prepare:
        result = "refused"
    else:
        result = "failed"
    failed_hosts = []
    for record in found:
        if record["host"] not in failed_hosts:
            failed_hosts.append(record["host"])
    lines = []
    if found:
        # A failed run-once step of the preparation fails every host: name it once, by the
        # host whose message says more than "failed".
        named = [f for f in prepare if f.get("msg") != "failed"] or prepare
        seen = set()
        for record in rollout + named[:1]:
            if record["host"] in seen:
                continue
            seen.add(record["host"])
            task = " (%s)" % record["task"] if record.get("task") else ""
            lines.append(
                "%s failed at %s%s: %s;" % (record["host"], record["step"], task, record.get("msg") or "failed")
            )
        if rollback_hosts:
            lines.append("rolled back to the release they ran before: %s;" % (", ".join(rolled_back) or "none"))
            for name in not_rolled_back:
                lines.append(
                    "NOT rolled back: %s (%s);" % (name, (states.get(name) or {}).get("rollback_failure") or "?")
                )
        if prepare:
            lines.append("no host was switched.")
    message = " ".join(["%s of release %s FAILED:" % (mode, release)] + lines) if found else ""
    unchanged = [name for name in hosts if ((states.get(name) or {}).get("progress") or {}).get("unchanged")]
    summary = "%s of release %s done on %s (%s already on it)." % (
        mode,
        release,
        ", ".join(hosts),
        ", ".join(unchanged) or "no host",
    )
    return {
        "result": result,
        "failed_hosts": failed_hosts,
        "rolled_back": rolled_back,
        "not_rolled_back": not_rolled_back,
        "message": message,
        "summary": summary,
    }


def url_checks(kind, paths, base, server_name="", validate_certs=False, ca_cert_data="", status_codes=(200,)):
    """``health_check`` http checks of paths through the load balancer's own loopback.

    Under the site's public name (Host, SNI and the certificate's name, like curl
    --resolve), verified against ``ca_cert_data`` when ``validate_certs`` is on.
    """
    checks = []
    for path in paths or []:
        checks.append(
            {
                "name": "%s %s" % (kind, path),
                "type": "http",
                "http": {
                    "url": "%s%s" % (base, path),
                    "connect_address": "127.0.0.1",
                    "validate_certs": bool(validate_certs),
                    "ca_cert_data": ca_cert_data or "",
                    "status_codes": [int(code) for code in status_codes],
                    "headers": {"Host": server_name} if server_name else {},
                },
            }
        )
    return checks


def log_line(record):
    """The line of the controller's deployment log for one run."""
    line = "%s %s release=%s result=%s user=%s duration=%ss hosts=%s" % (
        record.get("finished", ""),
        record.get("mode", ""),
        record.get("release", ""),
        record.get("result", ""),
        record.get("user", ""),
        record.get("duration", ""),
        ",".join(record.get("hosts") or []),
    )
    if record.get("failed_hosts"):
        line += " failed=%s" % ",".join(record["failed_hosts"])
    return line


# The steps of one host's move, in order; a failure is recorded against one of them.
STEPS = ("drain", "switch", "gate", "enable", "done")


def failed_move(host, failed_task=None, failed_result=None, progress=None):
    """The record of a host whose move failed: ``{host, step, task, msg}``.

    The step is the one the failed task declares (its ``deploy_step`` task variable, set on
    the health gate's tasks), else the one the host recorded last (``progress.step``), else
    ``drain`` (nothing was recorded: the drain failed).
    """
    task = failed_task if isinstance(failed_task, dict) else {}
    result = failed_result if isinstance(failed_result, dict) else {}
    progress = progress if isinstance(progress, dict) else {}
    declared = (task.get("vars") or {}).get("deploy_step")
    step = declared or progress.get("step") or "drain"
    if step not in STEPS:
        raise ValueError("deploy step %r is not one of %s" % (step, ", ".join(STEPS)))
    return failure(str(host), step, str(task.get("name") or ""), str(result.get("msg") or ""))


def dump_label(release):
    """The label of the restore point taken before the deploy of ``release``."""
    return "pre-deploy-%s" % re.sub(r"[^A-Za-z0-9_-]", "_", str(release))


def _merge(base, extra):
    merged = dict(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
