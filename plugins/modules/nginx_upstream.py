#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: nginx_upstream
short_description: Write an nginx upstream's membership file, and mark its members down (drain) or up
version_added: 0.1.0
description:
  - The one writer of the membership file of an upstream, C(<conf_dir>/bosun/upstream-<name>.conf), which
    the C(bosun.platform.nginx) role includes in the upstream block. The file holds a
    C(# bosun-upstream-state:) line (the members and the drain state, as JSON) and one C(server) line per member.
  - With O(servers) (the role passes its inventory's members) the file is written from them, created when missing;
    the drain state is O(down), or the file's own when O(down) is not given. Without O(servers) the members and the
    current drain state are read from the file's state line, so no inventory variables of the load balancer are
    needed (it works delegated from an app host, as the role's C(upstream) entry point runs in a deploy).
  - O(hosts) and O(state) then mark members down or up. Refuses member names the upstream does not have, and marking
    every non-backup member down unless O(allow_all_down=true).
  - Refuses a member that would not render as one plain C(server) line (the same checks as the role's preflight),
    naming the member and the field, and changes nothing. Without O(servers) a state line of the file holding such a
    member is refused the same way; with O(servers) the file is written whole, replacing one this module cannot read
    (its drain state is then not kept). Names are letters, digits, C(_), C(.), C(:) and C(-); an address is a host
    name, an IPv4 address, an IPv6 address (without brackets) or
    C(unix:/path) (letters, digits, C(_ . @ % + = , ~ / -));
    C(port) is an integer from 1 to 65535, C(weight) 1 or more, C(max_fails) 0 or more, and
    C(fail_timeout) an nginx time (C(10s), C(1m), C(500ms), C(1h30m), or seconds as digits). So a
    newline, C(;), C({) or C(#) in a value never adds directives of its own.
  - The file's text is the same whoever asks for it (a role run with the members and the drain state the file already
    has reports no change, and so does a file written by earlier releases of the role). It goes live only after the
    whole configuration tested clean with it, by O(validator) (the role's configuration test, C(nginx -t) on a private
    copy of O(conf_dir)); then it replaces the live file atomically and nginx is reloaded (O(reload)). When the test
    fails the live file is kept.
  - With O(state=down) and O(wait=true) it then waits until this host holds no established TCP
    connection to the drained members' addresses and ports (read with C(ss)), at most
    O(drain_timeout) seconds.
author: bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.attributes
  - ansible.builtin.files
options:
  name:
    description: Upstream name (letters, digits, C(_)); names its membership file.
    type: str
    default: app
  servers:
    description:
      - The upstream's members, to write the whole file from them instead of reading them from its state line. The
        order is the order of the C(server) lines.
      - Each member is checked as described above; names must be unique, and at least one member is needed.
    type: list
    elements: dict
    suboptions:
      name:
        description: Member name (what O(hosts) and O(down) name).
        type: str
        required: true
      address:
        description: Host name, IPv4 address, IPv6 address without brackets, or C(unix:/path).
        type: str
        required: true
      port:
        description: Port, 1 to 65535 (kept in the state line but not written for a C(unix:) member).
        type: int
        required: true
      weight:
        description: nginx C(weight), 1 or more (1 is not written).
        type: int
        default: 1
      max_fails:
        description: nginx C(max_fails), 0 or more.
        type: int
        default: 3
      fail_timeout:
        description: nginx C(fail_timeout), an nginx time.
        type: str
        default: 10s
      backup:
        description: A backup member (nginx C(backup)).
        type: bool
        default: false
  down:
    description:
      - With O(servers), every member marked down, replacing the file's drain state (the role passes
        C(nginx_upstream_down), so a role run resets the drain state). Written as given; the O(allow_all_down) guard
        applies to O(hosts).
      - Not given, the file keeps its drain state for the members that remain.
    type: list
    elements: str
  hosts:
    description: Member names to mark (after O(servers) and O(down) are applied). Empty changes nothing.
    type: list
    elements: str
    default: []
  state:
    description: V(down) takes the members out (and waits for their connections to close); V(up) puts them back.
    type: str
    choices: [down, up]
    default: down
  conf_dir:
    description: nginx's configuration directory; the membership file and O(main_conf) are relative to it.
    type: path
    default: /etc/nginx
  main_conf:
    description: Main configuration file, relative to O(conf_dir), that C(nginx -t) reads.
    type: str
    default: nginx.conf
  nginx_binary:
    description: nginx executable (looked up in C(PATH) when not absolute), for the configuration test and
      O(reload=signal).
    type: str
    default: nginx
  validator:
    description:
      - The configuration test, run as C(<validator> CANDIDATE RELPATH CONF_DIR MAIN_CONF NGINX) before the file goes
        live; it exits 0 when C(nginx -t) passes with the candidate in place and prints nginx's messages otherwise.
      - The default is the script the C(bosun.platform.nginx) role installs, which copies O(conf_dir) to a private
        temporary directory, puts the candidate there and runs C(nginx -t) on the copy.
    type: path
    default: /usr/local/sbin/bosun-nginx-validate
  reload:
    description:
      - How nginx is told to read the new membership when the file changed.
      - V(systemd) runs C(systemctl reload) of O(service); V(signal) runs C(nginx -c <main_conf> -s reload);
        V(none) does not reload (the role notifies its handler instead).
    type: str
    choices: [systemd, signal, none]
    default: systemd
  service:
    description: systemd unit of nginx (O(reload=systemd)).
    type: str
    default: nginx
  wait:
    description: With O(state=down), wait for the drained members' connections to close.
    type: bool
    default: true
  drain_timeout:
    description: Seconds to wait, in all, for the drained members' connections to close.
    type: int
    default: 60
  fail_on_timeout:
    description: Fail when connections remain after O(drain_timeout) (the members stay marked down either way).
    type: bool
    default: true
  allow_all_down:
    description: Allow marking every non-backup member down through O(hosts) (nginx then answers 502).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports exactly whether the file would change (and refuses what a real run refuses, including a
        configuration that fails the configuration test); writes nothing, does not reload and does not wait.
      - When O(validator) is not installed yet (a check run before the role's first run) the test is skipped with
        a warning; a real run fails without it.
  diff_mode:
    support: full
    details: The membership file's text before and after (also in check mode).
  platform:
    support: full
    platforms: linux
    details: Connections are counted with C(ss) (iproute2), so the load balancer must run Linux.
notes:
  - The connections counted are every established TCP connection of this host to the members'
    addresses and ports; on a load balancer those are nginx's.
  - C(ss) (iproute2) must be installed when there is something to wait for.
  - Marking down what is down (or up what is up) writes nothing and reloads nothing; a drain still
    waits for the connections. Requests in flight finish; old nginx workers close after nginx's
    C(worker_shutdown_timeout).
  - A member on a unix socket (C(unix:/path)) is marked like any other, but not waited for (it has no
    TCP connection to count) and is absent from RV(remaining_connections).
  - O(mode), O(owner) and O(group) apply to the file; without them a rewritten file keeps its own and a new one is
    created with mode C(0644).
"""

EXAMPLES = r"""
- name: Write the upstream's members (what the nginx role does), every member in rotation
  bosun.platform.nginx_upstream:
    name: app
    servers:
      - {name: app1, address: 10.110.0.11, port: 8000}
      - {name: app2, address: 10.110.0.12, port: 8000, weight: 2}
    down: []
    reload: none
    owner: root
    group: root
    mode: "0644"
  notify: Reload nginx

- name: Take app2 out of the upstream and wait for its requests in flight
  bosun.platform.nginx_upstream:
    name: app
    hosts: [app2]
    state: down
    drain_timeout: 60
  delegate_to: lb1

- name: Put it back
  bosun.platform.nginx_upstream:
    name: app
    hosts: [app2]
    state: up
  delegate_to: lb1

- name: An nginx not run by systemd (reloaded by signal), drained without failing on a timeout
  bosun.platform.nginx_upstream:
    name: app
    hosts: [app1]
    conf_dir: /opt/nginx/conf
    reload: signal
    fail_on_timeout: false
"""

RETURN = r"""
upstream:
  description: The upstream's name.
  returned: always
  type: str
  sample: app
state:
  description: The state asked for.
  returned: always
  type: str
  sample: down
hosts:
  description: The members asked for.
  returned: always
  type: list
  elements: str
  sample: [app2]
path:
  description: The membership file.
  returned: always
  type: str
  sample: /etc/nginx/bosun/upstream-app.conf
down:
  description: Every member marked down after the call.
  returned: always
  type: list
  elements: str
  sample: [app2]
up:
  description: Every member not marked down after the call, in the file's order.
  returned: always
  type: list
  elements: str
  sample: [app1]
remaining_connections:
  description:
    - Per drained member, the established connections still open when the wait ended.
    - Empty when nothing was waited for.
  returned: always
  type: dict
  sample: {"app2": 0}
drained:
  description: False when connections to the drained members remained after O(drain_timeout).
  returned: always
  type: bool
  sample: true
reloaded:
  description: Whether nginx was reloaded.
  returned: always
  type: bool
waited:
  description: Seconds spent waiting for the connections to close.
  returned: always
  type: float
  sample: 2.04
delta:
  description: The same time as C(H:MM:SS.ffffff), like the command module's.
  returned: always
  type: str
  sample: "0:00:02.040000"
diff:
  description: The membership file's text before (empty when it was missing) and after.
  returned: when run with C(--diff) and the file could be read or written
  type: dict
  contains:
    before:
      description: The file's text before.
      type: str
    after:
      description: The file's text after (the text it would have, in check mode).
      type: str
    before_header:
      description: The file's path (with C( (absent)) when it was missing).
      type: str
    after_header:
      description: The file's path.
      type: str
"""

import datetime
import errno
import os
import re

from ansible_collections.bosun.platform.plugins.module_utils import _nginx_upstream as nu
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module


def argument_spec():
    return dict(
        name=dict(type="str", default="app"),
        servers=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                address=dict(type="str", required=True),
                port=dict(type="int", required=True),
                weight=dict(type="int", default=1),
                max_fails=dict(type="int", default=3),
                fail_timeout=dict(type="str", default="10s"),
                backup=dict(type="bool", default=False),
            ),
        ),
        down=dict(type="list", elements="str"),
        hosts=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="down", choices=["down", "up"]),
        conf_dir=dict(type="path", default="/etc/nginx"),
        main_conf=dict(type="str", default="nginx.conf"),
        nginx_binary=dict(type="str", default="nginx"),
        validator=dict(type="path", default=nu.VALIDATOR),
        reload=dict(type="str", default="systemd", choices=["systemd", "signal", "none"]),
        service=dict(type="str", default="nginx"),
        wait=dict(type="bool", default=True),
        drain_timeout=dict(type="int", default=60),
        fail_on_timeout=dict(type="bool", default=True),
        allow_all_down=dict(type="bool", default=False),
    )


def work(module):
    p = module.params
    if not re.match(r"^[A-Za-z0-9_]+$", p["name"]):
        raise ModuleFailure('nginx: upstream name "%s" may only have letters, digits and _' % p["name"])
    relpath = nu.relpath_for(p["name"])
    path = os.path.join(p["conf_dir"], relpath)
    result = dict(
        upstream=p["name"],
        state=p["state"],
        hosts=p["hosts"],
        path=path,
        changed=False,
        reloaded=False,
        remaining_connections={},
        drained=True,
        waited=0.0,
        delta=str(datetime.timedelta(0)),
    )

    def run(argv):
        return module.run_command(argv)

    try:
        try:
            with open(path) as f:
                old = f.read()
        except (IOError, OSError) as exc:
            if p["servers"] is None:
                raise nu.UpstreamError(
                    "nginx: %s is missing on this load balancer (%s): run the bosun.platform.nginx role on it "
                    "first, and check the upstream name (%s)." % (path, exc.strerror or exc, p["name"])
                ) from None
            if exc.errno != errno.ENOENT:
                raise
            old = None  # the members are declared: the file is created
        if p["servers"] is None:
            header, current = nu.parse(old, path)
        else:
            # The members are declared: the file is written whole. A file this module cannot
            # read (hand-edited, tampered) is replaced; its drain state is then not kept.
            header, current = nu.header_for(p["name"]), None
            if old is not None:
                try:
                    old_header, current = nu.parse(old, path)
                    header = nu.header_to_keep(p["name"], old_header)
                except nu.UpstreamError:
                    current = None
            current = nu.declare(p["name"], p["servers"], p["down"], current, path)
        if p["servers"] is None or p["hosts"]:
            new_state, summary = nu.plan(current, p["hosts"], p["state"], p["allow_all_down"])
        else:
            new_state, summary = current, nu.summarize(current)
        result.update(down=summary["down"], up=summary["up"])
        new = nu.render(header, new_state)
        if module._diff:
            result["diff"] = nu.diff(path, old, new)
        content_changed = new != old
        nginx = p["nginx_binary"]
        if content_changed:
            if module.check_mode and not os.path.exists(p["validator"]):
                module.warn(
                    "nginx: %s would be tested by %s, which is not installed yet (the bosun.platform.nginx role "
                    "installs it before it writes the file); check mode skipped the test." % (path, p["validator"])
                )
            else:
                if not os.access(p["validator"], os.X_OK):
                    raise nu.UpstreamError(
                        "nginx: the configuration test %s is missing or not executable on this load balancer, so %s "
                        "was not changed: run the bosun.platform.nginx role on it (it installs the test), or set "
                        "validator." % (p["validator"], path)
                    )
                if not os.path.isabs(nginx):
                    nginx = module.get_bin_path(nginx, required=True)
                ok, message = nu.test_config(
                    run, p["validator"], p["conf_dir"], p["main_conf"], relpath, new, nginx, module.tmpdir
                )
                if not ok:
                    raise nu.UpstreamError(
                        "nginx: the configuration test failed with the new %s (kept as it was): %s" % (path, message)
                    )
            if not module.check_mode:
                nu.write(path, new)
                if p["reload"] == "systemd":
                    argv = [module.get_bin_path("systemctl", required=True), "reload", p["service"]]
                elif p["reload"] == "signal":
                    if not os.path.isabs(nginx):
                        nginx = module.get_bin_path(nginx, required=True)
                    argv = [nginx, "-c", os.path.join(p["conf_dir"], p["main_conf"]), "-s", "reload"]
                else:
                    argv = None
                if argv:
                    rc, out, err = module.run_command(argv)
                    if rc != 0:
                        raise nu.UpstreamError(
                            "nginx: %s is written but the reload failed (%s, rc %s): %s"
                            % (path, " ".join(argv), rc, (err or out).strip())
                        )
                    result["reloaded"] = True
        file_args = module.load_file_common_arguments(p, path=path)
        result["changed"] = module.set_fs_attributes_if_different(file_args, content_changed)
        # a unix socket member has no TCP connection to count: nothing to wait for
        tcp = [s for s in summary["drained"] if not nu.is_unix(s["address"])]
        if p["state"] == "down" and p["wait"] and not module.check_mode and tcp:
            members = [(s["name"], nu.resolve(s["address"], s["port"]), s["port"]) for s in tcp]
            ss = module.get_bin_path("ss", required=True)
            counts, waited, drained = nu.wait_drained(run, ss, members, p["drain_timeout"])
            result.update(
                remaining_connections=counts,
                drained=drained,
                waited=round(waited, 3),
                delta=str(datetime.timedelta(seconds=waited)),
            )
    except nu.UpstreamError as exc:
        raise ModuleFailure(str(exc), **result) from None
    except (IOError, OSError) as exc:
        raise ModuleFailure("nginx: upstream %s (%s): %s" % (p["name"], path, exc), **result) from None
    if not result["drained"] and p["fail_on_timeout"]:
        busy = ", ".join(name for name, count in sorted(result["remaining_connections"].items()) if count)
        raise ModuleFailure(
            "nginx: after %s s this load balancer still holds established connections to %s (%s); they are "
            "marked down and get no new requests. Raise drain_timeout, or set fail_on_timeout: false to go on anyway."
            % (p["drain_timeout"], busy, result["remaining_connections"]),
            **result,
        )
    return result


def main():
    run_module(
        argument_spec(), work, supports_check_mode=True, required_by={"down": ("servers",)}, add_file_common_args=True
    )


if __name__ == "__main__":
    main()
