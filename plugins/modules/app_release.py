#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: app_release
short_description: Install, switch to, prune and list the releases of an app on a host
version_added: 0.1.0
description:
  - Manages the release layout of the C(bosun.platform.app) role under O(root) -
    C(releases/<id>/), C(shared/), C(venvs/), C(artifacts/) and the C(current) and C(previous) symlinks.
  - V(installed) installs release O(release) from a tarball already on the host (O(artifact)). The
    release directory carries an unfinished marker (C(.bosun-unfinished)) from the start; the tarball is
    unpacked (refused, with the member named - absolute names, C(..), a name that appears twice, anything
    written through a symlink, symlinks that are absolute or lead outside the release at any step, hard
    links to anything but an earlier file of the tarball, devices and fifos; O(strip_components) leading
    components removed; files owned by root and group O(group), set without following symlinks); the
    release's own copies of O(shared_paths) are replaced by links
    into C(shared/); the virtualenv of its requirements file is built or reused; O(build_command)
    runs; then the record C(.bosun-release.json) is written and the marker removed. A finished release
    is left alone; an unfinished one (an interrupted install) is removed and installed again.
  - V(installed) with O(prepare_only=true) only creates the empty release directory with its marker
    (for a tarball still to be fetched) and leaves a finished release alone.
  - V(current) points C(previous) at the release C(current) pointed to, then replaces C(current) by a
    temporary symlink renamed over it (a reader sees the old or the new release, never none). A release
    that is missing or unfinished is refused. With O(prune=true) it prunes in the same call, after
    the switch.
  - V(pruned) keeps the O(keep) newest finished releases plus C(current), C(previous) and O(release);
    removes unfinished releases whose marker is older than O(unfinished_max_age) (a younger one may be an
    install running now), with their tarballs in C(artifacts/). Directories without a marker are never touched.
  - V(query) changes nothing and returns the releases.
author: bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.attributes
options:
  state:
    description: What to do (see the description).
    type: str
    choices: [installed, current, pruned, query]
    default: installed
  root:
    description:
      - Root of the app, holding C(releases/), C(shared/), C(venvs/), C(artifacts/), C(current) and C(previous).
    type: path
    required: true
  release:
    description:
      - Release id (letters, digits, C(._+-), at most 128, the first a letter or digit; the whole id must match,
        so a trailing newline is refused). Required with V(installed) and V(current); with V(pruned) it is kept
        whatever its age. Checked with every O(state) when given, so that a role can have an id checked by
        V(query) before using it in a path.
    type: str
    default: ""
  group:
    description: Group owning the release's files (V(installed)).
    type: str
    default: root
  artifact:
    description: Release tarball on the host (V(installed)); gzip, bzip2, xz or plain tar.
    type: path
  strip_components:
    description: Leading path components removed from the tarball's members.
    type: int
    default: 0
  remove_artifact:
    description: Remove O(artifact) once the release is installed.
    type: bool
    default: false
  prepare_only:
    description: With V(installed), only create the release directory with its unfinished marker.
    type: bool
    default: false
  shared_paths:
    description: Paths in the release replaced by links to the same paths under C(shared/).
    type: list
    elements: str
    default: [.env]
  python_requirements:
    description:
      - Requirements file in the release. When it exists the release gets the virtualenv
        C(venvs/<python>-<first 16 hex of its sha256>), linked as C(.venv), built with O(python) and pip
        unless a complete one (its C(.bosun-complete) marker) exists. Empty for apps that are not Python.
    type: str
    default: requirements.txt
  python_wheelhouse:
    description: Directory of wheels in the release; when it exists pip installs from it only (C(--no-index)).
    type: str
    default: wheels
  pip_extra_args:
    description: More arguments for C(pip install).
    type: list
    elements: str
    default: []
  python:
    description: Python that creates the virtualenvs; its symlink target (e.g. C(python3.11)) names them.
    type: path
    default: /usr/bin/python3
  build_command:
    description: argv run as the module's user in the release directory before the release is recorded.
    type: list
    elements: str
    default: []
  record:
    description:
      - More fields for the release's record (e.g. C(source), C(artifact)).
      - C(release), C(virtualenv) and C(installed) are set by the module.
    type: dict
    default: {}
  prune:
    description: With V(current), prune after the switch as V(pruned) does.
    type: bool
    default: false
  keep:
    description: Finished releases kept, newest first (by the time of their record).
    type: int
    default: 5
  unfinished_max_age:
    description: Seconds after which an unfinished release counts as a failed install and is removed.
    type: int
    default: 3600
attributes:
  check_mode:
    support: full
    details:
      - Reports exactly what a real run would change and changes nothing. A release that is not installed
        is reported as installed by V(installed) and as switched to by V(current) (in a check run its install
        has not happened).
  diff_mode:
    support: partial
    details:
      - With V(current), the release the C(current) symlink points to before and after the switch (in check
        mode, after the switch a real run would make).
      - V(installed) and V(pruned) (also O(prune) with V(current)) produce no diff; RV(installed) and
        RV(pruned) say what changed.
  platform:
    support: full
    platforms: posix
notes:
  - Runs as root (the release belongs to root and O(group)); build and pip commands run as root too.
  - Commands are run by argv, never through a shell; their output is returned only in error messages
    (the last 2000 characters of a failed command's output). No file contents are returned; the app's
    environment file (C(shared/.env)) is only linked, never read.
  - Unpacked files keep their permission bits but never setuid or setgid; owners, modes and times are
    set on file descriptors, never through a path a symlink could redirect.
  - Any failure during an install leaves the unfinished marker, so the directory never counts as a
    release, a switch to it is refused, and the next install of that id starts over.
"""

EXAMPLES = r"""
- name: Install release 2024.06.1 from a tarball copied to the host
  bosun.platform.app_release:
    root: /srv/shop
    release: "2024.06.1"
    artifact: /srv/shop/artifacts/2024.06.1.tar.gz
    group: shop
    shared_paths: [.env, logs, uploads]
    record: {source: file, artifact: shop-2024.06.1.tar.gz}

- name: Make it current and prune, keeping 5 releases
  bosun.platform.app_release:
    state: current
    root: /srv/shop
    release: "2024.06.1"
    prune: true
    keep: 5
  register: switched

- name: Read the releases
  bosun.platform.app_release:
    state: query
    root: /srv/shop
  register: releases
"""

RETURN = r"""
id:
  description: The release id (V(installed)).
  returned: state=installed
  type: str
  sample: "2024.06.1"
path:
  description: The release directory (V(installed), V(current)).
  returned: state in (installed, current)
  type: str
  sample: /srv/shop/releases/2024.06.1
installed:
  description: True when this call installed the release (or would, in check mode); false when it was already finished.
  returned: state=installed
  type: bool
virtualenv:
  description: The release's virtualenv, empty when it has none (V(installed)).
  returned: state=installed
  type: str
  sample: /srv/shop/venvs/python3.11-0123456789abcdef
release:
  description: The release switched to (V(current)).
  returned: state=current
  type: str
switched:
  description: Whether C(current) changed (V(current)); C(changed) is also true when O(prune) removed releases.
  returned: state=current
  type: bool
previous_link:
  description: The release the C(previous) symlink points to after the switch (V(current) with O(prune)).
  returned: state=current and prune=true
  type: str
previous:
  description:
    - With V(current), the release that was current before (when it changed), else the release C(previous) points to.
    - With V(query) and V(pruned), the release the C(previous) symlink points to.
  returned: state in (current, query, pruned)
  type: str
  sample: "2024.05.3"
current:
  description: The release the C(current) symlink points to, empty when there is none.
  returned: state in (query, pruned), or current with prune
  type: str
root:
  description: The app's root.
  returned: state in (query, pruned), or current with prune
  type: str
releases:
  description: Finished release ids, newest first (after pruning).
  returned: state in (query, pruned), or current with prune
  type: list
  elements: str
unfinished:
  description: Release ids carrying the unfinished marker (after pruning).
  returned: state in (query, pruned), or current with prune
  type: list
  elements: str
other:
  description: Directories in C(releases/) without any marker (not made by the role or this module).
  returned: state in (query, pruned), or current with prune
  type: list
  elements: str
pruned:
  description: Release ids removed (or that would be, in check mode).
  returned: state=pruned, or current with prune
  type: list
  elements: str
diff:
  description: The release C(current) points to before and after the switch (V(current)).
  returned: state=current, when run with C(--diff)
  type: dict
  contains:
    before:
      description: The release id before, followed by a newline; empty when there was no C(current) symlink.
      type: str
      sample: "2024.05.3"
    after:
      description: The release id after (the one a real run switches to, in check mode), followed by a newline.
      type: str
      sample: "2024.06.1"
    before_header:
      description: The path of the C(current) symlink (with C( (absent)) when there was none).
      type: str
    after_header:
      description: The path of the C(current) symlink.
      type: str
"""

import grp

from ansible_collections.bosun.platform.plugins.module_utils import _app_release as ar
from ansible_collections.bosun.platform.plugins.module_utils._module import ModuleFailure, run_module


def argument_spec():
    return dict(
        state=dict(type="str", default="installed", choices=["installed", "current", "pruned", "query"]),
        root=dict(type="path", required=True),
        release=dict(type="str", default=""),
        group=dict(type="str", default="root"),
        artifact=dict(type="path"),
        strip_components=dict(type="int", default=0),
        remove_artifact=dict(type="bool", default=False),
        prepare_only=dict(type="bool", default=False),
        shared_paths=dict(type="list", elements="str", default=[".env"]),
        python_requirements=dict(type="str", default="requirements.txt"),
        python_wheelhouse=dict(type="str", default="wheels"),
        pip_extra_args=dict(type="list", elements="str", default=[]),
        python=dict(type="path", default="/usr/bin/python3"),
        build_command=dict(type="list", elements="str", default=[]),
        record=dict(type="dict", default={}),
        prune=dict(type="bool", default=False),
        keep=dict(type="int", default=5),
        unfinished_max_age=dict(type="int", default=3600),
    )


def work(module):
    p = module.params
    try:
        return _work(module, p)
    except (IOError, OSError) as exc:
        raise ModuleFailure(
            "app: %s of release %s under %s failed: %s" % (p["state"], p["release"] or "-", p["root"], exc)
        ) from None


def _work(module, p):
    layout = ar.Layout(p["root"])

    def run(argv, cwd):
        # The virtualenv must be readable by the app's user whatever the login umask is
        # (the common role sets UMASK 027 for logins, and Debian 13 applies it to SSH sessions).
        return module.run_command(argv, cwd=cwd, umask=0o022)

    host = ar.Host(module.check_mode, run)
    if p["release"]:
        ar.check_release_id(p["release"])
    if p["state"] == "query":
        return dict(changed=False, **ar.public_state(ar.query(layout)))
    if p["state"] == "pruned":
        state = ar.prune(host, layout, p["keep"], p["unfinished_max_age"], protect=[p["release"]])
        return dict(changed=bool(state["pruned"]), **state)
    if p["state"] == "current":
        result = ar.switch(host, layout, p["release"])
        public = dict((k, v) for k, v in result.items() if not k.startswith("_"))
        public["switched"] = result["changed"]
        if module._diff:
            public["diff"] = ar.switch_diff(layout, result)
        if p["prune"]:
            state = ar.prune(
                host,
                layout,
                p["keep"],
                p["unfinished_max_age"],
                protect=[p["release"]],
                current=result["_current"],
                previous=result["_previous_after"],
            )
            public.update((key, state[key]) for key in ("root", "current", "releases", "unfinished", "other", "pruned"))
            public["previous_link"] = state["previous"]
            public["changed"] = result["changed"] or bool(state["pruned"])
        return public
    try:
        gid = grp.getgrnam(p["group"]).gr_gid
    except KeyError:
        if not module.check_mode:
            raise ModuleFailure("app: release %s: the group %s does not exist" % (p["release"], p["group"])) from None
        gid = 0
    return ar.install(host, layout, p["release"], p, gid)


def main():
    run_module(
        argument_spec(),
        work,
        supports_check_mode=True,
        errors=(ar.ReleaseError,),
        required_if=[("state", "installed", ["release"]), ("state", "current", ["release"])],
    )


if __name__ == "__main__":
    main()
