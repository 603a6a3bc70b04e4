# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Membership files of nginx upstreams, their one writer (bosun.platform.nginx_upstream), and their drain.

The nginx role writes the file through the module (its members from the inventory), and
the role's `upstream` entry point rewrites it the same way with a new drain state. The
file is a few comment lines, a state line

    # bosun-upstream-state: {"down": [...], "name": "app", "servers": [...]}

and one ``server`` line per member. Everything here that decides (parse, declare, plan,
render, the ss filter and its parsing) is pure; the side effects (configuration test,
write, reload, wait) take a ``run`` callable (argv -> (rc, stdout, stderr)) so that they
can be tested without Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import tempfile
import time

from ansible_collections.bosun.platform.plugins.module_utils import _io

STATE_PREFIX = "# bosun-upstream-state: "

# The comment lines above the state line of a file the module writes anew. Files written
# by earlier releases (the role's template) begin with these very lines.
HEADER = (
    "# Ansible managed",
    '# Members of upstream "%s". Written by bosun.platform.nginx and by its',
    "# `upstream` entry point (drain: tasks_from: upstream), which reads the state line below.",
)

# The configuration test the nginx role installs (roles/nginx/files/bosun-nginx-validate).
VALIDATOR = "/usr/local/sbin/bosun-nginx-validate"

# What may enter a server line. Every field of a member is checked against these before
# anything is rendered: a newline, ";", "{" or "#" in an inventory value would otherwise
# add directives of its own to nginx's configuration. The role's preflight checks the
# same expressions (roles/nginx/vars/main.yml, __nginx_upstream_patterns; a unit test
# keeps the two equal). \Z, not $: $ also matches before a final newline.
PATTERNS = {
    "name": r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}\Z",
    # labels of letters, digits, _ and -, not only digits and dots (that is an IPv4 address)
    "hostname": (
        r"^(?![0-9.]+\Z)(?=.{1,253}\Z)[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
        r"(?:[.][A-Za-z0-9_][A-Za-z0-9_-]{0,62})*[.]?\Z"
    ),
    "ipv4": r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])[.]){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\Z",
    # groups of hex digits, at least two colons, at most one "::", an IPv4 tail allowed
    "ipv6": (
        r"^(?=[0-9A-Fa-f:.]{2,45}\Z)(?=.*:.*:)(?!.*::.*::)(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}"
        r"(?::?(?:[0-9]{1,3}[.]){3}[0-9]{1,3})?\Z"
    ),
    "unix": r"^unix:/[A-Za-z0-9_.@%+=,~/-]+\Z",
    "duration": r"^(?=[0-9])(?:[0-9]{1,9}(?:ms|[smhdwMy]))*[0-9]{0,9}\Z",
}
ADDRESS_KINDS = ("hostname", "ipv4", "ipv6", "unix")
UNIX_PREFIX = "unix:"


class UpstreamError(Exception):
    """A refusal or failure, with a message that names the file or upstream and the cause."""


def relpath_for(name):
    """Path of the membership file of upstream ``name``, relative to the configuration directory."""
    return "bosun/upstream-%s.conf" % name


def header_for(name):
    """The comment lines above the state line for upstream ``name``."""
    return [HEADER[0], HEADER[1] % name, HEADER[2]]


def parse(text, path="membership file"):
    """Split the file into (header lines before the state line, state dict)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(STATE_PREFIX):
            try:
                state = json.loads(line[len(STATE_PREFIX) :])
            except ValueError as exc:
                raise UpstreamError("nginx: the state line of %s is not valid JSON (%s)" % (path, exc)) from None
            if not isinstance(state, dict) or not isinstance(state.get("servers"), list):
                raise UpstreamError("nginx: the state line of %s has no list of servers" % path)
            state.setdefault("down", [])
            validate(state, path)
            return lines[:index], state
    raise UpstreamError(
        "nginx: %s has no line starting with %r: it was not written by the bosun.platform.nginx role"
        % (path, STATE_PREFIX.strip())
    )


def _matches(kind, value):
    return isinstance(value, str) and re.match(PATTERNS[kind], value) is not None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_unix(address):
    """True for a unix socket member (``unix:/path``): no port, no TCP connections to wait for."""
    return address.startswith(UNIX_PREFIX)


def member_problems(server):
    """What is wrong with one member (a dict of the state line), as ``field: reason`` strings."""
    problems = []

    def bad(field, reason):
        shown = json.dumps(server[field]) if field in server else "missing"
        problems.append("%s %s (%s)" % (field, shown, reason))

    if not _matches("name", server.get("name")):
        bad("name", "letters, digits, _ . : -")
    address = server.get("address")
    if not any(_matches(kind, address) for kind in ADDRESS_KINDS):
        bad(
            "address",
            "a host name, an IPv4 or IPv6 address without brackets or port, or unix:/path; the port is its own field",
        )
    if not (_is_int(server.get("port")) and 1 <= server["port"] <= 65535):
        bad("port", "an integer from 1 to 65535")
    if "weight" in server and not (_is_int(server["weight"]) and server["weight"] >= 1):
        bad("weight", "an integer of 1 or more")
    if not (_is_int(server.get("max_fails")) and server["max_fails"] >= 0):
        bad("max_fails", "an integer of 0 or more")
    fail_timeout = server.get("fail_timeout")
    if not (_matches("duration", fail_timeout) or (_is_int(fail_timeout) and fail_timeout >= 0)):
        bad("fail_timeout", "an nginx time such as 10s, 1m, 500ms or 1h30m")
    if not isinstance(server.get("backup", False), bool):
        bad("backup", "true or false")
    return problems


def validate(state, path="membership file"):
    """Refuse a state whose members would not render as plain server lines (UpstreamError)."""
    for index, server in enumerate(state["servers"]):
        if not isinstance(server, dict):
            raise UpstreamError("nginx: %s: member %d of the state line is not an object" % (path, index + 1))
        problems = member_problems(server)
        if problems:
            name = server.get("name")
            who = json.dumps(name) if isinstance(name, str) else "%d" % (index + 1)
            raise UpstreamError(
                'nginx: %s: member %s of upstream "%s" is refused, nothing was changed: %s'
                % (path, who, state.get("name", "?"), "; ".join(problems))
            )
    down = state.get("down")
    if not isinstance(down, list) or not all(isinstance(name, str) for name in down):
        raise UpstreamError("nginx: %s: the state line's down is not a list of member names" % path)


def _server_line(server, down):
    address = server["address"]
    if is_unix(address):
        line = "server %s" % address
    else:
        line = "server %s:%s" % ("[%s]" % address if ":" in address else address, server["port"])
    if int(server.get("weight", 1)) != 1:
        line += " weight=%s" % server["weight"]
    line += " max_fails=%s fail_timeout=%s" % (server["max_fails"], server["fail_timeout"])
    if server.get("backup", False):
        line += " backup"
    drained = server["name"] in down
    if drained:
        line += " down"
    line += ";  # %s%s" % (server["name"], " (drained)" if drained else "")
    return line


def render(header, state):
    """The file's text (header lines kept as they are).

    Byte for byte what the nginx role's template wrote in earlier releases, so a load
    balancer converged by them shows no change.
    """
    lines = list(header)
    lines.append(STATE_PREFIX + json.dumps(state, sort_keys=True))
    down = state.get("down", [])
    lines.extend(_server_line(server, down) for server in state["servers"])
    return "\n".join(lines) + "\n"


def header_to_keep(name, old_header):
    """Header lines for a declared file: the old file's when they are all comments, else ours.

    A file written by an earlier release (or under another ``ansible_managed`` text) keeps
    its comment lines, so declaring the members it already has changes nothing; anything
    but comments above the state line is replaced.
    """
    if old_header and all(line.startswith("#") for line in old_header):
        return list(old_header)
    return header_for(name)


def diff(path, before, after):
    """Ansible's diff of the membership file; ``before`` is None when the file is missing."""
    return {
        "before": before if before is not None else "",
        "after": after,
        "before_header": path if before is not None else "%s (absent)" % path,
        "after_header": path,
    }


def plan(state, hosts, wanted, allow_all_down=False):
    """The new state for marking ``hosts`` ``wanted`` (down/up); refuses unknown names and emptying.

    Returns (new_state, result) where result holds down, up and the members drained.
    """
    names = [server["name"] for server in state["servers"]]
    unknown = [host for host in hosts if host not in names]
    current_down = set(state.get("down", []))
    if wanted == "down":
        new_down = sorted(current_down | set(hosts))
    else:
        new_down = sorted(current_down - set(hosts))
    remaining = [server["name"] for server in state["servers"] if not server.get("backup", False)]
    remaining = [name for name in remaining if name not in new_down]
    problems = []
    if unknown:
        problems.append("unknown: %s." % ", ".join(unknown))
    if not allow_all_down and not remaining:
        problems.append(
            "marking %s down would leave no member up (set nginx_upstream_allow_all_down: true to do it anyway)."
            % ", ".join(hosts)
        )
    if problems:
        raise UpstreamError(
            'nginx: upstream "%s" has the members %s; %s' % (state.get("name", "?"), names, " ".join(problems))
        )
    new_state = dict(state)
    new_state["down"] = new_down
    return new_state, {
        "down": new_down,
        "up": [name for name in names if name not in new_down],
        "drained": [server for server in state["servers"] if server["name"] in hosts] if wanted == "down" else [],
    }


def declare(name, servers, down=None, current=None, path="membership file"):
    """The state of a file whose members the caller declares (the nginx role, from its inventory).

    ``down`` is the complete drain state; None keeps the drain state of ``current`` (the
    file's parsed state, or None for a missing file) for the members that remain. Refuses
    an empty or invalid member list, duplicate names, and down names that are not members.
    """
    if not servers:
        raise UpstreamError(
            'nginx: upstream "%s" needs at least one member (servers is empty); nothing was changed' % name
        )
    state = {"name": name, "servers": [dict(server) for server in servers], "down": []}
    validate(state, path)
    names = [server["name"] for server in state["servers"]]
    twice = sorted(set(member for member in names if names.count(member) > 1))
    if twice:
        raise UpstreamError(
            'nginx: upstream "%s" has members named twice: %s; nothing was changed' % (name, ", ".join(twice))
        )
    if down is None:
        down = [member for member in (current or {}).get("down", []) if member in names]
    unknown = [member for member in down if member not in names]
    if unknown:
        raise UpstreamError(
            'nginx: upstream "%s" has the members %s; down names %s, which are not members; nothing was changed'
            % (name, names, ", ".join(unknown))
        )
    state["down"] = sorted(set(down))
    return state


def summarize(state):
    """down, up and drained (none) of a state that is written as declared."""
    down = state.get("down", [])
    return {
        "down": list(down),
        "up": [server["name"] for server in state["servers"] if server["name"] not in down],
        "drained": [],
    }


def resolve(address, port):
    """Every IP address of ``address`` (like ``getent ahosts``), formatted as ss prints peers."""
    try:
        infos = socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UpstreamError("nginx: cannot resolve the member address %s (%s)" % (address, exc)) from None
    ips = []
    for info in infos:
        ip = info[4][0]
        if ip not in ips:
            ips.append(ip)
    return ips


def peer(ip, port):
    return "%s:%s" % ("[%s]" % ip if ":" in ip else ip, port)


def ss_filter(members):
    """ss filter tokens for established connections to ``members`` ([(name, [ips], port)])."""
    tokens = []
    for _name, ips, port in members:
        for ip in ips:
            if tokens:
                tokens.append("or")
            tokens.extend(["(", "dst", "[%s]" % ip if ":" in ip else ip, "dport", "=", ":%s" % port, ")"])
    return tokens


def count_connections(ss_output, members):
    """Connections per member name in ``ss -H -t -n state established`` output (peer is column 4)."""
    counts = dict((name, 0) for name, _ips, _port in members)
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        for name, ips, port in members:
            if fields[3] in [peer(ip, port) for ip in ips]:
                counts[name] += 1
    return counts


def test_config(run, validator, conf_dir, main_conf, relpath, content, nginx="nginx", tmpdir=None):
    """Test the whole configuration as it would be with ``content`` at ``relpath``; (ok, message).

    ``validator`` is the nginx role's configuration test (bosun-nginx-validate): it copies
    ``conf_dir`` to a private temporary directory, puts the candidate in place there and
    runs ``nginx -t`` on the copy, so the live files are never touched. The candidate is
    handed to it in a private temporary file (in ``tmpdir``), removed afterwards.
    """
    fd, candidate = tempfile.mkstemp(prefix="bosun-nginx-upstream.", suffix=".conf", dir=tmpdir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        rc, out, err = run([validator, candidate, relpath, conf_dir, main_conf, nginx])
        return rc == 0, (err or out or "").strip()
    finally:
        os.unlink(candidate)


def write(path, content):
    """Atomically replace ``path``, keeping its mode and owner."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    _io.atomic_write(path, content, mode=(st.st_mode & 0o7777) if st else 0o644)
    if st is not None and (os.stat(path).st_uid, os.stat(path).st_gid) != (st.st_uid, st.st_gid):
        os.chown(path, st.st_uid, st.st_gid)


def wait_drained(run, ss, members, timeout, sleep=time.sleep, clock=time.monotonic):
    """Wait up to ``timeout`` s until ss lists no established connection to ``members``.

    Returns (counts per member at the end, seconds waited, drained).
    """
    start = clock()
    counts = dict((name, 0) for name, _ips, _port in members)
    if not members:
        return counts, 0.0, True
    argv = [ss, "-H", "-t", "-n", "state", "established"] + ss_filter(members)
    while True:
        rc, out, err = run(argv)
        if rc != 0:
            raise UpstreamError("nginx: %s failed (rc %s): %s" % (" ".join(argv), rc, (err or out).strip()))
        counts = count_connections(out, members)
        waited = clock() - start
        if not out.strip() or waited >= timeout:
            return counts, waited, not out.strip()
        sleep(min(1.0, max(0.0, timeout - waited)))
