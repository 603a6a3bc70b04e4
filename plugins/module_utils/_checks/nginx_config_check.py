# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx_config: ``nginx -t`` accepts the configuration."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import last_line, run_argv

TYPE = "nginx_config"
OPTIONS = dict(
    binary=dict(type="str", default="nginx"),
    config=dict(type="path"),
    prefix=dict(type="path"),
)
METRICS = dict(valid=None)


def target(options):
    return (options or {}).get("config") or ""


def argv(options):
    options = options or {}
    out = [options.get("binary") or "nginx", "-t", "-q"]
    if options.get("prefix"):
        out += ["-p", options["prefix"]]
    if options.get("config"):
        out += ["-c", options["config"]]
    return out


def run(probe, options):
    rc, out, err = run_argv(argv(options), probe.remaining())
    if rc != 0:
        probe.metric("valid", False, "nginx config invalid", status="crit", unit="")
        lines = (err + "\n" + out).splitlines()
        reason = [line for line in lines if "[emerg]" in line] or [line for line in lines if "failed" in line]
        probe.fail("nginx config invalid: %s" % (last_line("\n".join(reason[:1])) or last_line(err) or "rc=%s" % rc))
    probe.metric("valid", True, "nginx config valid", status="ok", unit="")
    probe.message = "nginx -t: configuration is valid"
