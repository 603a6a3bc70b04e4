# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""load: load average per CPU core, as a percentage (0.6 per core is 60 %)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import UNKNOWN, Threshold

TYPE = "load"
OPTIONS = dict(period=dict(type="int", default=5, choices=[1, 5, 15]))
METRICS = dict(per_core=Threshold(60, 80, unit="%"))


def target(options):
    return ""


def cores():
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run(probe, options):
    period = (options or {}).get("period") or 5
    try:
        averages = os.getloadavg()
    except OSError as exc:
        probe.fail("cannot read the load average: %s" % exc, status=UNKNOWN)
    ncpu = cores()
    load = averages[{1: 0, 5: 1, 15: 2}[period]]
    per_core = round(100.0 * load / ncpu, 1)
    probe.metric("per_core", per_core, "load %.2f per core (%s %%)" % (load / ncpu, fmt_num(per_core)))
    probe.message = "load average %.2f %.2f %.2f on %d core%s: %s-min %s %% per core" % (
        averages[0],
        averages[1],
        averages[2],
        ncpu,
        "" if ncpu == 1 else "s",
        period,
        fmt_num(per_core),
    )
