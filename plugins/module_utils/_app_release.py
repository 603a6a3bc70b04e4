# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Releases of an app on a host, laid out as the bosun.platform.app role lays them out.

    <root>/releases/<id>/      a release; .bosun-unfinished while it is installed,
                               .bosun-release.json (the record) once it is complete
    <root>/shared/             linked into every release (.env and the shared directories)
    <root>/venvs/<python>-<sha256 of the requirements, 16 hex>/   shared virtualenvs
    <root>/artifacts/          release tarballs
    <root>/current, previous   symlinks to releases

The functions take a ``Host`` (check mode, command runner) so that every decision is made
by the same code whether or not anything is changed; only the side effects are gated.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import shutil
import tarfile
import time

from ansible_collections.bosun.platform.plugins.module_utils import _io, _safe_tar

# The one definition of a release id (the app role passes ids to the module, which checks
# them): the whole id must match, so "1.0\n" is refused (a directory name with a newline, a
# forged line in the deploy ledger).
RELEASE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
RELEASE_ID_RE = re.compile(RELEASE_ID_PATTERN)
UNFINISHED_MARKER = ".bosun-unfinished"
FINISHED_MARKER = ".bosun-release.json"
VENV_MARKER = ".bosun-complete"


class ReleaseError(Exception):
    """A refusal or failure; the message names the release or path and the cause."""


class Host:
    """What the functions need from the module: check mode and a command runner.

    ``run(argv, cwd)`` returns (rc, stdout, stderr).
    """

    def __init__(self, check_mode, run):
        self.check_mode = check_mode
        self.run = run


class Layout:
    def __init__(self, root):
        self.root = root
        self.releases = os.path.join(root, "releases")
        self.shared = os.path.join(root, "shared")
        self.venvs = os.path.join(root, "venvs")
        self.artifacts = os.path.join(root, "artifacts")
        self.current = os.path.join(root, "current")
        self.previous = os.path.join(root, "previous")

    def release_dir(self, release):
        return os.path.join(self.releases, release)


def check_release_id(release):
    if not isinstance(release, str) or not RELEASE_ID_RE.fullmatch(release):
        raise ReleaseError(
            "app: release id %s must match %s as a whole (1 to 128 letters, digits, '.', '_', '+', '-', "
            "the first a letter or digit)."
            % (json.dumps(release if isinstance(release, str) else ""), RELEASE_ID_PATTERN)
        )


def is_finished(release_dir):
    return os.path.isfile(os.path.join(release_dir, FINISHED_MARKER)) and not os.path.lexists(
        os.path.join(release_dir, UNFINISHED_MARKER)
    )


def _link_id(path):
    """Release id a symlink points to ('' when it is not a symlink)."""
    if os.path.islink(path):
        return os.path.basename(os.readlink(path).rstrip("/"))
    return ""


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat() + "Z"


# --- Reading -----------------------------------------------------------------------------


def query(layout, now=None):
    """The releases on the host: what the role's fact app_state holds."""
    now = time.time() if now is None else now
    finished, unfinished, other, ages = [], [], [], {}
    if os.path.isdir(layout.releases):
        for name in os.listdir(layout.releases):
            path = os.path.join(layout.releases, name)
            if not os.path.isdir(path):
                continue
            record = os.path.join(path, FINISHED_MARKER)
            marker = os.path.join(path, UNFINISHED_MARKER)
            if os.path.lexists(marker):
                unfinished.append(name)
                ages[name] = now - os.lstat(marker).st_mtime
            elif os.path.isfile(record):
                finished.append((os.stat(record).st_mtime, name))
            elif not name.startswith("."):
                other.append(name)
    finished.sort(key=lambda item: (-item[0], item[1]))
    return {
        "root": layout.root,
        "current": _link_id(layout.current),
        "previous": _link_id(layout.previous),
        "releases": [name for _mtime, name in finished],
        "unfinished": sorted(unfinished),
        "other": sorted(other),
        "_unfinished_ages": ages,
    }


def public_state(state):
    return dict((key, value) for key, value in state.items() if not key.startswith("_"))


# --- Unpacking -----------------------------------------------------------------------------


def unpack(artifact, dest, strip_components, gid):
    """Unpack the tarball ``artifact`` into ``dest`` (root:gid), refusing anything that escapes it.

    The rules are those of ``_safe_tar`` (shared with bosun-wal's base backups): relative
    names without ``..``, each name once, nothing written through or following a symlink,
    symlinks that stay inside the release at every step, hard links to files of the same
    tarball only, no devices or fifos.
    """
    try:
        archive = tarfile.open(artifact, "r:*")
    except (tarfile.TarError, IOError, OSError) as exc:
        raise ReleaseError("app: cannot read the release tarball %s (%s)" % (artifact, exc)) from None
    with archive:
        try:
            _safe_tar.extract(archive, dest, artifact, strip_components, owner=(0, gid), implicit_dir_mode=0o755)
        except _safe_tar.ExtractError as exc:
            raise ReleaseError("app: %s" % exc) from None


# --- Installing ------------------------------------------------------------------------------


def _remove(path):
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def replace_symlink(target, link):
    """Point ``link`` at ``target`` atomically: a temp symlink beside it, renamed over it."""
    directory = os.path.dirname(link)
    tmp = os.path.join(directory, ".%s%s%d" % (os.path.basename(link), _io.TEMP_MARKER, os.getpid()))
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise
    _io.fsync_dir(directory)


def link_shared(layout, release_dir, shared_paths):
    """Replace the release's own copies of the shared paths by links into shared/."""
    for rel in shared_paths:
        parts = [part for part in rel.split("/") if part not in ("", ".")]
        if not parts or ".." in parts or rel.startswith("/"):
            raise ReleaseError("app: shared path %r must be a relative path inside the release" % rel)
        path = os.path.join(release_dir, *parts)
        _remove(path)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o755)
        os.symlink(os.path.join(layout.shared, *parts), path)


def python_tag(python):
    """python3.11 for /usr/bin/python3 -> python3.11 (the role's naming), else the file's name."""
    if os.path.islink(python):
        return os.path.basename(os.readlink(python))
    return "python3"


def sha256_file(path):
    return _io.sha256_file(path)


def virtualenv(host, layout, release, release_dir, requirements, wheelhouse, pip_extra_args, python):
    """Build or reuse the virtualenv of the release's requirements; link it as .venv. Its path, or ''."""
    if not requirements:
        return ""
    req_path = os.path.join(release_dir, requirements)
    if not os.path.isfile(req_path):
        return ""
    digest = sha256_file(req_path)
    venv = os.path.join(layout.venvs, "%s-%s" % (python_tag(python), digest[:16]))
    if not os.path.isfile(os.path.join(venv, VENV_MARKER)):
        _remove(venv)
        if not os.path.isdir(layout.venvs):
            os.makedirs(layout.venvs, 0o750)
        _command(host, [python, "-m", "venv", venv], release_dir, "create the virtualenv %s" % venv)
        argv = [
            os.path.join(venv, "bin", "pip"),
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "--requirement",
            req_path,
        ]
        wheels = os.path.join(release_dir, wheelhouse) if wheelhouse else ""
        if wheels and os.path.isdir(wheels):
            argv += ["--no-index", "--find-links", wheels]
        argv += list(pip_extra_args or [])
        _command(host, argv, release_dir, "install the requirements of release %s into %s" % (release, venv))
        _io.atomic_write(
            os.path.join(venv, VENV_MARKER),
            json.dumps({"requirements_sha256": digest, "built_for": release}) + "\n",
            mode=0o644,
        )
    link = os.path.join(release_dir, ".venv")
    _remove(link)
    os.symlink(venv, link)
    return venv


def _command(host, argv, cwd, what):
    rc, out, err = host.run(argv, cwd)
    if rc != 0:
        tail = (err or out or "").strip()[-2000:]
        raise ReleaseError("app: failed to %s (%s exited %s): %s" % (what, argv[0], rc, tail))
    return out


def start(host, layout, release, gid):
    """Make releases/<id> an empty directory carrying the unfinished marker (a leftover is removed)."""
    release_dir = layout.release_dir(release)
    if host.check_mode:
        return
    if os.path.lexists(release_dir):
        _remove(release_dir)
    if not os.path.isdir(layout.releases):
        raise ReleaseError(
            "app: %s does not exist: set the host up with the role's main entry point first" % layout.releases
        )
    os.mkdir(release_dir, 0o750)
    os.chown(release_dir, 0, gid)
    os.chmod(release_dir, 0o750)  # noqa: S103 - group read for the app, as the role's layout
    _io.atomic_write(
        os.path.join(release_dir, UNFINISHED_MARKER),
        json.dumps({"release": release, "started": _utc_now()}) + "\n",
        mode=0o644,
    )


def install(host, layout, release, options, gid):
    """Install release ``release``; returns {id, path, installed, virtualenv, changed}.

    ``options``: artifact, strip_components, shared_paths, python_requirements,
    python_wheelhouse, pip_extra_args, python, build_command, record (extra record
    fields), remove_artifact, prepare_only.
    """
    check_release_id(release)
    release_dir = layout.release_dir(release)
    result = {"id": release, "path": release_dir, "installed": False, "virtualenv": "", "changed": False}
    if is_finished(release_dir):
        record = os.path.join(release_dir, FINISHED_MARKER)
        try:
            with open(record) as f:
                result["virtualenv"] = json.load(f).get("virtualenv", "")
        except (ValueError, AttributeError):
            pass
        return result
    result.update(installed=True, changed=True)
    if options.get("prepare_only"):
        start(host, layout, release, gid)
        return result
    if host.check_mode:
        return result
    artifact = options["artifact"]
    if not artifact or not os.path.isfile(artifact):
        raise ReleaseError("app: release %s: the tarball %s is not on this host" % (release, artifact))
    start(host, layout, release, gid)
    unpack(artifact, release_dir, options.get("strip_components") or 0, gid)
    link_shared(layout, release_dir, options.get("shared_paths") or [])
    result["virtualenv"] = virtualenv(
        host,
        layout,
        release,
        release_dir,
        options.get("python_requirements"),
        options.get("python_wheelhouse"),
        options.get("pip_extra_args"),
        options.get("python") or "/usr/bin/python3",
    )
    if options.get("build_command"):
        _command(host, list(options["build_command"]), release_dir, "build release %s" % release)
    record = dict(options.get("record") or {})
    record.update(release=release, virtualenv=result["virtualenv"], installed=_utc_now())
    _io.atomic_write(
        os.path.join(release_dir, FINISHED_MARKER),
        json.dumps(record, indent=4, sort_keys=True, separators=(",", ": ")) + "\n",
        mode=0o644,
    )
    os.unlink(os.path.join(release_dir, UNFINISHED_MARKER))
    _io.fsync_dir(release_dir)
    if options.get("remove_artifact"):
        os.unlink(artifact)
    return result


# --- Switching and pruning --------------------------------------------------------------------


def switch(host, layout, release):
    """Make ``release`` current (previous -> the replaced release); {release, path, previous, changed}."""
    check_release_id(release)
    release_dir = layout.release_dir(release)
    if not is_finished(release_dir) and not host.check_mode:
        why = (
            "its install did not finish"
            if os.path.lexists(os.path.join(release_dir, UNFINISHED_MARKER))
            else "it is not installed"
        )
        raise ReleaseError(
            "app: release %s is not a finished release in %s (%s); install it first (tasks_from: release)."
            % (release, layout.releases, why)
        )
    old = os.readlink(layout.current) if os.path.islink(layout.current) else ""
    previous_before = _link_id(layout.previous)
    changed = old != release_dir
    if changed and not host.check_mode:
        if old:
            if not (os.path.islink(layout.previous) and os.readlink(layout.previous) == old):
                replace_symlink(old, layout.previous)
        replace_symlink(release_dir, layout.current)
    return {
        "release": release,
        "path": release_dir,
        "previous": os.path.basename(old.rstrip("/")) if changed else previous_before,
        "changed": changed,
        "_current": release if changed else _link_id(layout.current),
        "_current_before": os.path.basename(old.rstrip("/")),
        "_previous_after": os.path.basename(old.rstrip("/")) if changed and old else previous_before,
    }


def switch_diff(layout, switched):
    """Ansible's diff of switch()'s result: the release ``current`` points to before and after."""
    before = switched["_current_before"]
    return {
        "before": before + "\n" if before else "",
        "after": switched["_current"] + "\n",
        "before_header": layout.current if before else "%s (absent)" % layout.current,
        "after_header": layout.current,
    }


def prune(host, layout, keep, max_age, protect=(), current=None, previous=None, now=None):
    """Remove finished releases beyond the ``keep`` newest and unfinished ones older than ``max_age``.

    current, previous and ``protect`` are kept whatever their age; directories without a
    marker are never touched. ``current``/``previous`` override the links (check mode
    predicts with the links a switch would have made). Returns the state after pruning.
    """
    state = query(layout, now)
    current = state["current"] if current is None else current
    previous = state["previous"] if previous is None else previous
    protected = set(name for name in [current, previous] + list(protect) if name)
    remove = [name for name in state["releases"][max(keep, 0) :] if name not in protected]
    remove += sorted(
        name for name, age in state["_unfinished_ages"].items() if age >= max_age and name not in protected
    )
    if not host.check_mode:
        for name in remove:
            _remove(layout.release_dir(name))
            artifact = os.path.join(layout.artifacts, name + ".tar.gz")
            if os.path.lexists(artifact):
                os.unlink(artifact)
    state = public_state(state)
    state.update(
        current=current,
        previous=previous,
        releases=[name for name in state["releases"] if name not in remove],
        unfinished=[name for name in state["unfinished"] if name not in remove],
        pruned=remove,
    )
    return state
