#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: acme_renewal
short_description: Decide whether an ACME certificate must be renewed, keep the back-off after a failure
version_added: 0.1.0
description:
  - Reads the live certificate (the first certificate of a full chain file) and decides whether
    it must be renewed, because there is none yet, it is unreadable, it is a self-signed placeholder,
    it lacks one of O(names), it expires in fewer than O(remaining_days) days, or O(force) is set.
  - Keeps a back-off record after a failed attempt (O(action=failed)) so that the ACME CA is not
    asked again before O(backoff) seconds have passed, whatever runs the job (a person, AWX, a
    systemd timer or cron). Certificate authorities rate-limit failed validations (Let's
    Encrypt's limits are per account and name); the back-off keeps a broken renewal job from
    using them up. O(retry_now) asks the CA anyway.
  - With O(action=decide), when renewal is due but the back-off is running, the task fails with
    a message that names the failed attempt, its error and when the CA will be asked again, and
    still returns every field. When renewal is not due, a back-off does not matter.
  - Writes Prometheus textfile metrics (O(metrics_path)) on every action outside check mode, so
    the expiry, the last failure and the back-off are visible without running Ansible.
  - Never reads a private key. Only the C(CERTIFICATE) blocks of O(certificate_path) are decoded,
    and nothing of the file's content is returned beyond the certificate's public facts.
author: bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.attributes
options:
  action:
    description:
      - V(decide) reports whether the certificate must be renewed and whether the CA may be asked now.
      - V(failed) records a failed attempt (its time, O(error) and the count of attempts since the
        last success), which starts the back-off.
      - V(succeeded) removes the back-off record and reports on the new certificate.
    type: str
    choices: [decide, failed, succeeded]
    default: decide
  certificate_path:
    description:
      - The live full chain, leaf first, in PEM. A missing file means there is no certificate yet; a
        file without a valid PEM certificate counts as unreadable. Either way renewal is due.
    type: path
    required: true
  names:
    description:
      - DNS names the certificate must cover. Each must be listed among the certificate's subject
        alternative names (case and a trailing dot do not matter; a wildcard entry does not cover
        another name); a missing one makes renewal due.
    type: list
    elements: str
    required: true
  remaining_days:
    description: Renew when fewer than this many days of validity remain.
    type: int
    default: 30
  force:
    description:
      - Renew even when nothing else makes renewal due (reason V(forced)). The back-off still applies.
      - Ignored with O(action=succeeded).
    type: bool
    default: false
  state_path:
    description:
      - 'JSON file of the back-off record, C({"last_failure": "<ISO 8601 UTC>", "message": "...", "attempts": N}).'
      - Written atomically with mode C(0600); its directory is created with mode C(0700) when missing.
        A record that cannot be read is ignored with a warning (the certificate must not expire for it).
    type: path
    required: true
  backoff:
    description: Seconds after a failed attempt during which the CA is not asked again.
    type: int
    default: 3600
  retry_now:
    description: Ask the CA even while the back-off after a failure is running.
    type: bool
    default: false
  error:
    description:
      - With O(action=failed), the error message of the failed attempt (the CA's or the client's),
        stored and returned as given (RV(last_failure.message)).
    type: str
    default: ''
  metrics_path:
    description:
      - Prometheus textfile (node_exporter's textfile collector) written atomically on every action,
        except in check mode. Its name must end in C(.prom); its directory is created with mode C(0755)
        when missing.
      - "Gauges, each labelled C(names) (O(names) joined by commas):
        C(bosun_tls_certificate_expiry_timestamp_seconds) (0 without a readable certificate),
        C(bosun_tls_certificate_days_left) (0 without one), C(bosun_acme_last_failure_timestamp_seconds)
        (0 when none), C(bosun_acme_backoff_until_timestamp_seconds) (0 when none) and
        C(bosun_acme_renewal_due) (0 or 1, RV(due))."
    type: path
attributes:
  check_mode:
    support: full
    details:
      - O(action=decide) changes nothing. O(action=failed) reports a change, O(action=succeeded) reports one
        when a back-off record exists; in check mode neither writes the record nor the metrics.
  diff_mode:
    support: none
    details: No diff is produced; RV(last_failure) and RV(backoff_until) describe the record.
  platform:
    support: full
    platforms: posix
requirements:
  - cryptography (the C(python3-cryptography) package) on the managed host.
notes:
  - The decision needs no network and no key; run it on every host that serves the certificate.
    The certificate itself is issued by an ACME client (such as C(community.crypto.acme_certificate))
    when RV(renew) is true.
  - After a failed renewal the old certificate stays live; the job fails with the CA's error, and
    the next runs fail with the same error and the time of the next attempt until O(backoff) has
    passed or O(retry_now) is set.
"""

EXAMPLES = r"""
- name: Is the certificate due, and may the CA be asked now?
  bosun.platform.acme_renewal:
    certificate_path: /etc/ssl/bosun/fullchain.pem
    names: [shop.example.com, www.shop.example.com]
    remaining_days: 30
    state_path: /var/lib/bosun/acme/backoff.json
    metrics_path: /var/lib/prometheus/node-exporter/bosun_acme.prom
    retry_now: "{{ nginx_acme_retry_now | default(false) }}"
  register: acme

- name: Record a failed attempt (starts the back-off)
  bosun.platform.acme_renewal:
    action: failed
    error: "{{ acme_issue.msg | default('unknown error') }}"
    certificate_path: /etc/ssl/bosun/fullchain.pem
    names: [shop.example.com, www.shop.example.com]
    state_path: /var/lib/bosun/acme/backoff.json
    metrics_path: /var/lib/prometheus/node-exporter/bosun_acme.prom
  when: acme_issue is failed

- name: Clear the back-off after the new certificate went live
  bosun.platform.acme_renewal:
    action: succeeded
    certificate_path: /etc/ssl/bosun/fullchain.pem
    names: [shop.example.com, www.shop.example.com]
    state_path: /var/lib/bosun/acme/backoff.json
    metrics_path: /var/lib/prometheus/node-exporter/bosun_acme.prom
"""

RETURN = r"""
renew:
  description:
    - Whether to ask the ACME CA for a certificate now. True when renewal is due (RV(due)) and no
      back-off is running, or O(retry_now) is set.
  returned: always
  type: bool
  sample: true
due:
  description: Whether the certificate must be renewed, whatever the back-off (see RV(reason)).
  returned: always
  type: bool
  sample: true
reason:
  description:
    - "Why renewal is due or not, for example V(no certificate yet), V(forced), C(names missing from
      the certificate: www.example.com), C(expires at 2026-12-20T08:00:00Z, 10.00 days left: fewer
      than 30), C(placeholder: the certificate is self-signed (...)), C(certificate ... unreadable: ...)
      or C(not due: valid until ...)."
  returned: always
  type: str
  sample: "expires at 2026-12-20T08:00:00Z, 10.00 days left: fewer than 30"
not_after:
  description: Expiry of the certificate (ISO 8601 UTC); null without a readable certificate.
  returned: always
  type: str
  sample: "2026-12-20T08:00:00Z"
days_left:
  description: Days until the expiry (negative once expired, two decimals); null without a readable certificate.
  returned: always
  type: float
  sample: 10.0
serial:
  description: Serial number of the certificate in lowercase hexadecimal; null without a readable certificate.
  returned: always
  type: str
  sample: 3f9a0c4e1b7d2a55
issuer:
  description: Issuer of the certificate (RFC 4514); null without a readable certificate.
  returned: always
  type: str
  sample: CN=Pebble Intermediate CA 1d2f3c
names_covered:
  description: The DNS names the certificate lists (subject alternative names, lowercase); empty without one.
  returned: always
  type: list
  elements: str
  sample: [shop.example.com, www.shop.example.com]
names_missing:
  description: The names of O(names) the certificate does not list (all of them without a readable certificate).
  returned: always
  type: list
  elements: str
  sample: []
placeholder:
  description: Whether the certificate is self-signed (its issuer is its subject), like the lab's placeholder.
  returned: always
  type: bool
  sample: false
ocsp_url:
  description:
    - The OCSP responder of the certificate (its Authority Information Access); null when it names
      none. nginx can staple OCSP responses only when there is one.
  returned: always
  type: str
  sample: http://ocsp.example.net/
last_failure:
  description: The record of the last failed attempt since the last success (after the action); null when none.
  returned: always
  type: dict
  contains:
    last_failure:
      description: When the attempt failed (ISO 8601 UTC).
      type: str
      returned: always
      sample: "2026-12-07T11:00:00Z"
    message:
      description: The error of the attempt, as given in O(error) with O(action=failed).
      type: str
      returned: always
      sample: "Failed to validate challenge for shop.example.com"
    attempts:
      description: Failed attempts since the last success.
      type: int
      returned: always
      sample: 1
backoff_until:
  description:
    - RV(last_failure) plus O(backoff) (ISO 8601 UTC), the time before which the CA is not asked again.
      Null when no failure is recorded; a past time when the back-off is over (see RV(backoff_active)).
  returned: always
  type: str
  sample: "2026-12-07T12:00:00Z"
backoff_active:
  description: Whether the back-off is still running.
  returned: always
  type: bool
  sample: false
"""

import datetime
import os

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.bosun.platform.plugins.module_utils import _acme
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module


def argument_spec():
    return dict(
        action=dict(type="str", default="decide", choices=["decide", "failed", "succeeded"]),
        certificate_path=dict(type="path", required=True),
        names=dict(type="list", elements="str", required=True),
        remaining_days=dict(type="int", default=30),
        force=dict(type="bool", default=False),
        state_path=dict(type="path", required=True),
        backoff=dict(type="int", default=3600),
        retry_now=dict(type="bool", default=False),
        error=dict(type="str", default=""),
        metrics_path=dict(type="path"),
    )


def work(module):
    p = module.params
    if not _acme.HAS_CRYPTOGRAPHY:
        raise ModuleFailure(
            missing_required_lib("cryptography (the python3-cryptography package)"),
            exception=str(_acme.CRYPTOGRAPHY_IMPORT_ERROR),
        )
    names = [n for n in p["names"] if _acme.normalise_name(n)]
    if not names:
        raise ModuleFailure("acme_renewal: names must hold at least one DNS name")
    for option in ("remaining_days", "backoff"):
        if p[option] < 0:
            raise ModuleFailure("acme_renewal: %s must not be negative (got %d)" % (option, p[option]))
    metrics_path = p["metrics_path"]
    if metrics_path and not metrics_path.endswith(".prom"):
        raise ModuleFailure(
            "acme_renewal: metrics_path %s must end in .prom (node_exporter's textfile collector)" % metrics_path
        )

    now = datetime.datetime.now(_acme.UTC)
    state_path = p["state_path"]
    state, problem = _acme.read_state(state_path)
    if problem:
        module.warn(problem)
    changed = False
    try:
        if p["action"] == "failed":
            state = _acme.record_failure(state, p["error"], now)
            changed = True
            if not module.check_mode:
                _acme.write_state(state_path, state)
        elif p["action"] == "succeeded":
            changed = os.path.lexists(state_path)
            state = None
            if changed and not module.check_mode:
                os.unlink(state_path)
    except OSError as exc:
        raise ModuleFailure("acme_renewal: cannot update the back-off record %s: %s" % (state_path, exc)) from None

    info, cert_problem = _acme.read_certificate(p["certificate_path"])
    verdict = _acme.decide(
        info,
        cert_problem,
        names,
        state,
        now,
        remaining_days=p["remaining_days"],
        force=p["force"] and p["action"] != "succeeded",
        backoff=p["backoff"],
        retry_now=p["retry_now"],
        certificate_path=p["certificate_path"],
    )
    blocked = verdict.pop("blocked")
    if metrics_path and not module.check_mode:
        try:
            _acme.write_metrics(metrics_path, verdict, names)
        except OSError as exc:
            raise ModuleFailure(
                "acme_renewal: cannot write the metrics file %s: %s" % (metrics_path, exc), **verdict
            ) from None
    if blocked and p["action"] == "decide":
        raise ModuleFailure(blocked, changed=False, **verdict)
    return dict(changed=changed, **verdict)


def main():
    run_module(argument_spec(), work, supports_check_mode=True)


if __name__ == "__main__":
    main()
