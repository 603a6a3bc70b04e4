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
  - A lock older than O(stale_after) belongs to a job that died; the next job breaks it and
    reports the previous holder in RV(broken).
  - Run it once per play on a single host (C(run_once) with C(delegate_to)), the same host
    for every job.
author: bosun.platform maintainers (@bosun-platform)
options:
  path:
    description: Lock file. Its directory is created when missing.
    type: path
    default: /var/lib/bosun/platform.lock
  state:
    description:
      - V(acquired) takes the lock (or confirms it when O(token) is the holder's).
      - V(released) releases the lock held with O(token).
      - V(query) only reports the current holder.
    type: str
    choices: [acquired, released, query]
    default: acquired
  owner:
    description: Who takes the lock, for the message another job sees (user and controller).
    type: str
    default: unknown
  job:
    description: What takes the lock (playbook, job template, tags).
    type: str
    default: unknown
  token:
    description:
      - The token returned by a previous acquire. Required with O(state=released) unless O(force=true).
      - With O(state=acquired), a token equal to the holder's makes the call a no-op.
    type: str
  stale_after:
    description: Seconds after which a lock counts as abandoned and is broken. V(0) never breaks one.
    type: int
    default: 7200
  wait:
    description: Seconds to wait for a held lock to be released before failing.
    type: int
    default: 0
  force:
    description: Break a held lock (acquire) or remove a lock held by another job (release).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Check mode reports whether the lock would be taken or released and fails when it is held.
notes:
  - Failing to take a held lock fails the task with a message naming the holder, the job and its age.
"""

EXAMPLES = r"""
- name: Take the platform lock
  bosun.platform.platform_lock:
    owner: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    job: deploy.yml release {{ release_id }}
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
  sample: {"owner": "alice@laptop", "job": "deploy.yml", "started": "2026-11-26T10:00:00Z", "host": "lb1"}
broken:
  description: The record of a stale (or forced) lock that was broken to take this one; null otherwise.
  returned: state=acquired
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.bosun.platform.plugins.module_utils import _lock


def _public(holder):
    """The holder record without its token (a token is only for its own job)."""
    if holder is None:
        return None
    return dict((k, v) for k, v in holder.items() if k != "token")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/bosun/platform.lock"),
            state=dict(type="str", default="acquired", choices=["acquired", "released", "query"]),
            owner=dict(type="str", default="unknown"),
            job=dict(type="str", default="unknown"),
            token=dict(type="str", no_log=False),
            stale_after=dict(type="int", default=7200),
            wait=dict(type="int", default=0),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "released" and not p["token"] and not p["force"]:
        module.fail_json(
            msg="platform lock %s: releasing needs the token returned when it was acquired "
            "(or force=true to remove whatever lock is there)" % p["path"]
        )
    path = p["path"]
    directory = os.path.dirname(path) or "."
    try:
        if p["state"] == "query":
            module.exit_json(changed=False, holder=_public(_lock.read_lock(path)))
        if p["state"] == "released":
            result = _lock.release(path, p["token"], force=p["force"], check_mode=module.check_mode)
            module.exit_json(changed=result["changed"], holder=_public(result["holder"]))
        if not os.path.isdir(directory):
            if not module.check_mode:
                os.makedirs(directory, 0o755)
        result = _lock.acquire(
            path,
            owner=p["owner"],
            job=p["job"],
            stale_after=p["stale_after"],
            token=p["token"],
            force=p["force"],
            wait=p["wait"],
            check_mode=module.check_mode,
        )
    except _lock.LockHeld as exc:
        module.fail_json(msg=str(exc), holder=_public(exc.holder))
    except (_lock.LockError, OSError) as exc:
        module.fail_json(msg="platform lock %s: %s" % (path, exc))
    module.exit_json(
        changed=result["changed"],
        token=result["token"],
        holder=_public(result["holder"]),
        broken=_public(result["broken"]),
    )


if __name__ == "__main__":
    main()
