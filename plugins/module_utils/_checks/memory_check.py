# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""memory: used memory % = (MemTotal - MemAvailable) / MemTotal, from /proc/meminfo."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import fmt_bytes, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import UNKNOWN, Threshold

TYPE = "memory"
OPTIONS = {}
METRICS = dict(used=Threshold(70, 85, unit="%"))
MEMINFO = "/proc/meminfo"


def target(options):
    return ""


def meminfo(path=MEMINFO):
    """/proc/meminfo as a dict of bytes."""
    values = {}
    with open(path, "r") as handle:
        for line in handle:
            key, _sep, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def run(probe, options, path=MEMINFO):
    try:
        info = meminfo(path)
        total, available = info["MemTotal"], info["MemAvailable"]
    except (OSError, KeyError) as exc:
        probe.fail("cannot read memory usage from %s: %s" % (path, exc), status=UNKNOWN)
    used = round(100.0 * (total - available) / total, 1) if total else 0.0
    probe.metric("used", used, "memory %s %%" % fmt_num(used))
    probe.message = "memory %s %% used (%s available of %s)" % (fmt_num(used), fmt_bytes(available), fmt_bytes(total))
