# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""load: load average per CPU core, as a percentage (0.6 per core is 60 %).

In a container whose /proc/loadavg is the machine's (Docker, Podman, systemd-nspawn without
lxcfs), the load average measures every container and process of the machine, not this
host: it is reported and not judged there (shared_loadavg). Under lxcfs, which gives each
container its own /proc/loadavg, it is judged as on a virtual machine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import OK, UNKNOWN, Threshold

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


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def shared_loadavg(read=_read, exists=os.path.exists):
    """The kind of container this runs in when its /proc/loadavg is the machine's, else None."""
    kind = (read("/run/systemd/container") or "").strip()
    if not kind:
        if exists("/.dockerenv"):
            kind = "docker"
        elif exists("/run/.containerenv"):
            kind = "podman"
    if not kind:
        return None
    for line in (read("/proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == "/proc/loadavg":
            return None  # lxcfs: the container's own load average
    return kind


def run(probe, options):
    period = (options or {}).get("period") or 5
    try:
        averages = os.getloadavg()
    except OSError as exc:
        probe.fail("cannot read the load average: %s" % exc, status=UNKNOWN)
    ncpu = cores()
    load = averages[{1: 0, 5: 1, 15: 2}[period]]
    per_core = round(100.0 * load / ncpu, 1)
    shared = shared_loadavg()
    if shared:
        probe.metric(
            "per_core",
            per_core,
            "load %.2f per core (%s %%), the machine's: not judged in a %s container"
            % (load / ncpu, fmt_num(per_core), shared),
            status=OK,
        )
    else:
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
    if shared:
        probe.message += " (the machine's load, shared by its %s containers: not judged)" % shared
