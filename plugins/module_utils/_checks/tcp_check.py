# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tcp: a TCP connection to host:port is accepted; the connect time is the value."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import cause, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

TYPE = "tcp"
REQUIRED = True
OPTIONS = dict(
    host=dict(type="str", default="127.0.0.1"),
    port=dict(type="int", required=True),
)
METRICS = dict(connect=Threshold(unit="ms"))


def target(options):
    return "%s:%s" % (options.get("host"), options.get("port"))


def run(probe, options):
    where = target(options)
    start = probe.clock()
    try:
        sock = socket.create_connection((options["host"], options["port"]), timeout=probe.remaining())
    except (OSError, ValueError) as exc:
        probe.fail("%s: %s" % (where, cause(exc, probe.timeout)))
    sock.close()
    latency = round((probe.clock() - start) * 1000.0, 1)
    probe.metric("connect", latency, "%s open %s ms" % (where, fmt_num(latency, 0)))
    probe.message = "%s accepts connections (%s ms)" % (where, fmt_num(latency, 0))
