# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""systemd: a unit is active (``systemctl is-active``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import last_line, run_argv
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import CRIT, OK, UNKNOWN, WARN

TYPE = "systemd"
REQUIRED = True
OPTIONS = dict(unit=dict(type="str", required=True))
METRICS = dict(state=None)

STATES = dict(
    active=OK,
    reloading=WARN,
    activating=WARN,
    refreshing=WARN,
    deactivating=CRIT,
    inactive=CRIT,
    failed=CRIT,
    maintenance=CRIT,
)


def target(options):
    return options.get("unit") or ""


def run(probe, options):
    unit = options["unit"]
    rc, out, err = run_argv(["systemctl", "is-active", "--", unit], probe.remaining())
    state = out.strip().splitlines()[0].strip() if out.strip() else ""
    if state not in STATES:
        probe.fail("cannot ask systemd about %s: %s" % (unit, last_line(err or out) or "rc=%s" % rc), status=UNKNOWN)
    probe.metric("state", state, "%s %s" % (unit, state), status=STATES[state], unit="")
    probe.message = "%s is %s" % (unit, state)
