#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: platform_lock
short_description: Take or release the platform lock shared by deploys and maintenance jobs
version_added: 0.1.0
description:
  - One job at a time changes the platform. Deploy, rollback and maintenance playbooks take
    this lock first and release it at the end, whatever started them (a person, AWX, a
    systemd timer or cron), so two jobs never run over each other.
  - The lock is a JSON file on one host, created exclusively (C(O_EXCL)); it records the
    holder, the job, the start time and a random token. Only the token's holder releases it.
  - A live job's lock is never broken. Each job records its own time limit, O(stale_after)
    (by default its O(job_timeout) plus 15 minutes), and, when it has one, leaves a keeper on the
    lock host, a small detached process that lives while the lock is held (at most
    O(stale_after) seconds, by the monotonic clock). Another job breaks the lock only when that
    time limit has passed and the keeper (same pid, process start time, boot id and pid
    namespace) is no longer running, and reports the previous holder in RV(broken). A job
    without a time limit (O(job_timeout=0), the default) is never taken for dead; only
    O(break_lock) breaks its lock.
  - Every change of the lock file happens under C(flock) of C(<path>.guard), and a new lock is
    published with C(link()), so a lock is never overwritten and two jobs never both hold it.
  - Run it once per play on a single host (C(run_once) with C(delegate_to)), the same host
    for every job.
author: bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.attributes
options:
  path:
    description: Lock file. Its directory is created when missing.
    type: path
    default: /var/lib/bosun/platform.lock
  state:
    description:
      - V(acquired) takes the lock (or confirms it when O(token) is the holder's).
      - V(released) releases the lock held with O(token).
      - V(query) only reports the current holder and whether another job could break its lock now.
    type: str
    choices: [acquired, released, query]
    default: acquired
  taken_by:
    description:
      - Who takes the lock, for the message another job sees (user and controller).
      - The alias C(owner) is deprecated and will be removed in version 2.0.0 of the collection.
    type: str
    default: unknown
    aliases: [owner]
  job:
    description: What takes the lock (playbook, job template, tags).
    type: str
    default: unknown
  token:
    description:
      - The token returned by a previous acquire. Required with O(state=released) unless O(break_lock=true).
      - With O(state=acquired), a token equal to the holder's makes the call a no-op.
    type: str
  job_timeout:
    description:
      - The longest this job runs, in seconds, when something stops it then (the maintenance
        wrapper and AWX stop a job at its catalogue timeout). V(0) means not known.
      - With O(state=acquired), sets the default of O(stale_after).
      - The alias C(timeout) is deprecated and will be removed in version 2.0.0 of the collection.
    type: int
    default: 0
    aliases: [timeout]
  stale_after:
    description:
      - This job's own time limit, recorded in the lock it takes. After it, and only when the
        lock's keeper process is gone, another job may break the lock. V(0) never lets another
        job break it (only O(break_lock) does).
      - Default O(job_timeout) + 900 when O(job_timeout) is set, else V(0).
      - A lock written by an older version of this module, which records none, counts as
        stale after 7200 seconds.
    type: int
  wait_for_lock:
    description:
      - Seconds to wait for a held lock to be released before failing.
      - The alias C(wait) is deprecated and will be removed in version 2.0.0 of the collection.
    type: int
    default: 0
    aliases: [wait]
  break_lock:
    description:
      - Break a held lock (acquire) or remove a lock held by another job (release).
      - The alias C(force) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    default: false
    aliases: [force]
attributes:
  check_mode:
    support: full
    details: Check mode reports whether the lock would be taken or released and fails when it is held.
  diff_mode:
    support: none
    details: No diff is produced; RV(holder) names who holds the lock.
  platform:
    support: full
    platforms: posix
notes:
  - Failing to take a held lock fails the task with a message naming the holder, the job and its age,
    and why the lock still counts (its keeper is running, its time limit has not passed, or it set none).
  - The keeper ends within 2 seconds of the release. On a host without C(/proc) no keeper is
    started and the time limit alone counts.
  - To end a dead job's lock by hand, run the next job with O(break_lock=true); the keeper sees its
    token gone and exits.
"""

EXAMPLES = r"""
- name: Take the platform lock
  bosun.platform.platform_lock:
    taken_by: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    job: deploy.yml release {{ release_id }}
    # a scheduled job passes the timeout its scheduler enforces
    job_timeout: "{{ bosun_lock_timeout | default(0) }}"
  run_once: true
  delegate_to: "{{ bosun_lock_host }}"
  register: platform_lock

- name: Release it
  bosun.platform.platform_lock:
    state: released
    token: "{{ platform_lock.token }}"
  run_once: true
  delegate_to: "{{ bosun_lock_host }}"
"""

RETURN = r"""
token:
  description: Token of the lock now held by this job (state=acquired).
  returned: state=acquired
  type: str
holder:
  description:
    - The lock's record after the call (acquired), before it (released), or now (query).
    - Null when there is no lock.
  returned: always
  type: dict
  sample:
    owner: alice@laptop
    job: deploy.yml
    started: "2026-11-26T10:00:00Z"
    host: lb1
    stale_after: 11700
    expires: "2026-11-26T13:15:00Z"
    keeper:
      pid: 4242
      start: 123456
      boot_id: 6f1c0a2e-4c1e-4a8e-9a53-3b2f0f9c1d11
      pidns: "pid:[4026531836]"
      host: lb1
stale:
  description: Whether another job could break the lock now (see O(stale_after)); false when there is none.
  returned: state=query
  type: bool
reason:
  description: Why the lock is, or is not, stale (also when the lock is refused).
  returned: state=query and a lock is held, or the lock is held by another job
  type: str
broken:
  description: The record of a stale (or forced) lock that was broken to take this one; null otherwise.
  returned: state=acquired
  type: dict
"""

import os
import time

from ansible_collections.bosun.platform.plugins.module_utils import _lock
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, deprecated_alias, run_module


def argument_spec():
    return dict(
        path=dict(type="path", default="/var/lib/bosun/platform.lock"),
        state=dict(type="str", default="acquired", choices=["acquired", "released", "query"]),
        taken_by=dict(type="str", default="unknown", **deprecated_alias("owner")),
        job=dict(type="str", default="unknown"),
        token=dict(type="str", no_log=False),
        job_timeout=dict(type="int", default=0, **deprecated_alias("timeout")),
        stale_after=dict(type="int"),
        wait_for_lock=dict(type="int", default=0, **deprecated_alias("wait")),
        break_lock=dict(type="bool", default=False, **deprecated_alias("force")),
    )


def _public(holder):
    """The holder record without its token (a token is only for its own job)."""
    if holder is None:
        return None
    return dict((k, v) for k, v in holder.items() if k != "token")


def work(module):
    p = module.params
    if p["state"] == "released" and not p["token"] and not p["break_lock"]:
        raise ModuleFailure(
            "platform lock %s: releasing needs the token returned when it was acquired "
            "(or break_lock=true to remove whatever lock is there)" % p["path"]
        )
    path = p["path"]
    try:
        return _work(module, p, path)
    except _lock.LockHeld as exc:
        raise ModuleFailure(str(exc), holder=_public(exc.holder), reason=exc.reason) from None
    except (_lock.LockError, OSError) as exc:
        raise ModuleFailure("platform lock %s: %s" % (path, exc)) from None


def _work(module, p, path):
    if p["state"] == "query":
        holder = _lock.read_lock(path)
        if holder is None:
            return dict(changed=False, holder=None, stale=False)
        verdict = _lock.assess(holder, time.time())
        return dict(changed=False, holder=_public(holder), stale=verdict["stale"], reason=verdict["reason"])
    if p["state"] == "released":
        result = _lock.release(path, p["token"], break_lock=p["break_lock"], check_mode=module.check_mode)
        return dict(changed=result["changed"], holder=_public(result["holder"]))
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        if not module.check_mode:
            os.makedirs(directory, 0o755, exist_ok=True)  # another job may create it meanwhile
    result = _lock.acquire(
        path,
        owner=p["taken_by"],
        job=p["job"],
        stale_after=_lock.lease(p["job_timeout"], p["stale_after"]),
        token=p["token"],
        break_lock=p["break_lock"],
        wait=p["wait_for_lock"],
        check_mode=module.check_mode,
        keeper=True,
    )
    return dict(
        changed=result["changed"],
        token=result["token"],
        holder=_public(result["holder"]),
        broken=_public(result["broken"]),
    )


def main():
    run_module(argument_spec(), work, supports_check_mode=True)


if __name__ == "__main__":
    main()
