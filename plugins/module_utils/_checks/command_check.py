# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""command: a program (argv list, no shell) exits with an expected code; optional output regex.

The command runs in check mode too, like every check: give only commands without side effects.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import last_line, run_argv

TYPE = "command"
REQUIRED = True
OPTIONS = dict(
    argv=dict(type="list", elements="str", required=True),
    expected_rc=dict(type="list", elements="int", default=[0]),
    stdout_regex=dict(type="str"),
)
METRICS = dict(rc=None)


def target(options):
    argv = options.get("argv") or [""]
    return os.path.basename(argv[0])


def validate(options):
    problems = []
    if not options.get("argv"):
        problems.append("command.argv must name a program")
    if options.get("stdout_regex"):
        try:
            re.compile(options["stdout_regex"])
        except re.error as exc:
            problems.append("command.stdout_regex is not a valid regular expression: %s" % exc)
    return problems


def run(probe, options):
    argv = [str(a) for a in options["argv"]]
    name = os.path.basename(argv[0])
    rc, out, err = run_argv(argv, probe.remaining())
    expected = options.get("expected_rc") or [0]
    entry = probe.metric("rc", rc, "%s rc %s" % (name, rc), status="ok", unit="")
    if rc not in expected:
        entry["status"] = "crit"
        probe.fail(
            "%s exited %s, expected %s: %s"
            % (name, rc, "/".join(str(c) for c in expected), last_line(err) or last_line(out) or "no output")
        )
    if options.get("stdout_regex") and not re.search(options["stdout_regex"], out):
        probe.fail("%s exited %s but its output does not match %r" % (name, rc, options["stdout_regex"]))
    probe.message = "%s exited %s%s" % (name, rc, (": " + last_line(out)) if last_line(out) else "")
