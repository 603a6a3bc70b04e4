# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the ``deploy`` role: the decisions of a deploy and a rollback.

Each filter is a thin wrapper over ``plugins/module_utils/_deploy.py``, where the logic and
its unit tests are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible_collections.bosun.platform.plugins.module_utils import _deploy

# The facts the role records on each app host, by the name of the state's field.
STATE_FACTS = {
    "previous": "deploy_previous",
    "progress": "deploy_progress",
    "failure": "deploy_failure",
    "gate_result": "deploy_gate_result",
    "rolled_back": "deploy_rolled_back",
    "rollback_failure": "deploy_rollback_failure",
}


def _mapping(value, name):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnsibleFilterError("%s expects a mapping, got %s" % (name, type(value).__name__))
    return value


def _hosts(value, name):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError("%s expects a list of host names, got %r" % (name, value))
    return [str(host) for host in value]


def deploy_request(
    source, release="", artifact="", git_ref="", repo="", artifact_dir=".", artifact_pattern="app-{release}.tar.gz"
):
    """What the controller looks at to resolve the release (see _deploy.request)."""
    return _deploy.request(source, release, artifact, git_ref, repo, artifact_dir, artifact_pattern)


def deploy_resolve(request, repo="", artifact_stat=None, version=None, ls_remote=None):
    """The release every host gets (see _deploy.resolve)."""
    run = _deploy.resolve(_mapping(request, "deploy_resolve"), repo, artifact_stat, version, ls_remote)
    run["dump_label"] = _deploy.dump_label(run["release"]) if run["release"] else ""
    return run


def deploy_preflight_checks(host_vars, groups):
    """The preflight's ``health_check`` checks for one data host (see _deploy.preflight_checks)."""
    if isinstance(groups, str) or not isinstance(groups, (list, tuple)):
        raise AnsibleFilterError("deploy_preflight_checks expects the host's group names, got %r" % (groups,))
    return _deploy.preflight_checks(_mapping(host_vars, "deploy_preflight_checks"), list(groups))


def deploy_preflight(results):
    """The problems of the data tier that refuse a deploy, one line each."""
    return _deploy.preflight_problems(results or [])


def deploy_states(hostvars, hosts):
    """The state each host recorded in this run: {host: {previous, progress, failure, gate, ...}}."""
    states = {}
    for host in _hosts(hosts, "deploy_states"):
        try:
            facts = hostvars[host]
        except KeyError:
            facts = {}
        state = {}
        for field, fact in STATE_FACTS.items():
            value = facts.get(fact) if hasattr(facts, "get") else None
            state[field] = value
        gate = state.pop("gate_result") or {}
        state["gate"] = gate.get("status") if isinstance(gate, Mapping) else None
        states[host] = state
    return states


def deploy_batch(states, batch):
    """The decisions for one rollout batch: ``{drain, passed, unfinished}``."""
    states = _mapping(states, "deploy_batch")
    batch = _hosts(batch, "deploy_batch")
    return {
        "drain": _deploy.to_drain(batch, states),
        "passed": _deploy.passed_gate(batch, states),
        "unfinished": _deploy.unfinished(batch, states),
    }


def deploy_gate_checks(port=8000, path="/health", http=None, unit="", extra=None):
    """The checks of the health gate on one app host."""
    return _deploy.gate_checks(port, path, _mapping(http, "deploy_gate_checks"), unit, extra)


def deploy_gate_verdict(gate, release, timeout):
    """'' when the health gate passed, else the host's failure in one line."""
    return _deploy.gate_message(_mapping(gate, "deploy_gate_verdict"), release, timeout)


def deploy_rollback_target(hostvars, hosts, given=""):
    """The one release a rollback goes to, or why it is refused: ``{release, error, by_host}``.

    Each host's previous good release comes from its ledger (registered as
    ``deploy_ledger_content``) and the ``app_state`` its ``state`` entry point read.
    """
    goods = {}
    for host in _hosts(hosts, "deploy_rollback_target"):
        facts = hostvars[host]
        state = facts.get("app_state") or {}
        ledger = facts.get("deploy_ledger_content") or {}
        goods[host] = {
            "good": _deploy.previous_good(
                ledger.get("content", ""),
                state.get("current", ""),
                state.get("releases") or [],
                state.get("previous", ""),
            ),
            "releases": list(state.get("releases") or []),
        }
    target = _deploy.rollback_target(given, goods)
    target["by_host"] = dict((host, value["good"]) for host, value in goods.items())
    return target


def deploy_rollback_plan(states, hosts):
    """The hosts the automatic rollback moves back, failed hosts first."""
    return _deploy.rollback_plan(_mapping(states, "deploy_rollback_plan"), _hosts(hosts, "deploy_rollback_plan"))


def deploy_outcome(states, run, hosts, smoke_failed=False, rollback_hosts=None):
    """The run's result, failed hosts, failure message and summary line."""
    return _deploy.outcome(
        _mapping(run, "deploy_outcome"),
        _mapping(states, "deploy_outcome"),
        _hosts(hosts, "deploy_outcome"),
        bool(smoke_failed),
        list(rollback_hosts or []),
    )


def deploy_url_checks(paths, kind, base, server_name="", validate_certs=False, ca_cert_data="", status_codes=None):
    """``health_check`` http checks of paths through the load balancer."""
    return _deploy.url_checks(kind, paths, base, server_name, validate_certs, ca_cert_data, status_codes or [200])


def deploy_dump_label(release):
    """The label of the restore point taken before the deploy of ``release``."""
    if release is None or not str(release):
        raise AnsibleFilterError("deploy_dump_label expects a release id, got %r" % (release,))
    return _deploy.dump_label(release)


def deploy_failure(host, failed_task=None, failed_result=None, progress=None):
    """The failure record of a host whose move failed (the rollout's rescue)."""
    try:
        return _deploy.failed_move(host, failed_task, failed_result, progress)
    except ValueError as e:
        raise AnsibleFilterError("deploy_failure: %s" % e) from e


def deploy_log_line(record):
    """The controller's deployment-log line of a run record."""
    return _deploy.log_line(_mapping(record, "deploy_log_line"))


class FilterModule:
    def filters(self):
        return dict(
            deploy_request=deploy_request,
            deploy_resolve=deploy_resolve,
            deploy_preflight=deploy_preflight,
            deploy_preflight_checks=deploy_preflight_checks,
            deploy_states=deploy_states,
            deploy_batch=deploy_batch,
            deploy_gate_checks=deploy_gate_checks,
            deploy_gate_verdict=deploy_gate_verdict,
            deploy_rollback_target=deploy_rollback_target,
            deploy_rollback_plan=deploy_rollback_plan,
            deploy_outcome=deploy_outcome,
            deploy_url_checks=deploy_url_checks,
            deploy_log_line=deploy_log_line,
            deploy_dump_label=deploy_dump_label,
            deploy_failure=deploy_failure,
        )
