# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""disk: used space and used inodes of the filesystem holding a path (as df counts them)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import cause, fmt_bytes, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

TYPE = "disk"
OPTIONS = dict(path=dict(type="path", default="/"))
METRICS = dict(
    used=Threshold(70, 85, unit="%"),
    inodes=Threshold(70, 85, unit="%"),
)


def target(options):
    return (options or {}).get("path") or "/"


def usage(path):
    """(space used %, inodes used % or None, free bytes, size bytes), as df computes them."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    space = 100.0 * used / (used + avail) if used + avail else 0.0
    inodes = None
    if st.f_files:
        inodes = 100.0 * (st.f_files - st.f_ffree) / st.f_files
    return space, inodes, avail, used + avail


def run(probe, options):
    path = target(options)
    try:
        space, inodes, free, size = usage(path)
    except OSError as exc:
        probe.fail("%s: %s" % (path, cause(exc)))
    space = round(space, 1)
    probe.metric("used", space, "disk %s %s %%" % (path, fmt_num(space)))
    if inodes is not None:
        inodes = round(inodes, 1)
        probe.metric("inodes", inodes, "inodes %s %s %%" % (path, fmt_num(inodes)), headline=False)
    probe.message = "%s: %s %% used (%s free of %s), inodes %s" % (
        path,
        fmt_num(space),
        fmt_bytes(free),
        fmt_bytes(size),
        "%s %%" % fmt_num(inodes) if inodes is not None else "not counted by this filesystem",
    )
