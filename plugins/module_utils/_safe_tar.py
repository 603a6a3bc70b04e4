# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Extract a tar archive into a directory so that no member can reach outside it.

Used for release tarballs (``_app_release.unpack``) and base backups (``bosun-wal``'s
``extract_tar``, PITR recovery and base backup verification). Standard library only: the
postgresql role installs this file beside bosun-wal on the db hosts (as
``bosun_safe_tar.py``).

The rules, for every member in archive order:

* its name is relative and has no ``..``; once normalised (``./a//b`` is ``a/b``) it
  appears only once: a later member can never replace or re-point an earlier one;
* nothing is written through a symlink and no symlink is followed: every path is opened one
  component at a time from the destination with ``O_NOFOLLOW``, files are created with
  ``O_EXCL``, owners, modes and times are set on file descriptors (symlinks: ``lchown``);
* a symlink is relative, and its target, resolved in the archive's own tree (with the
  archive's other symlinks), never leaves the destination, not even for one step (``..``
  above the destination); checked when it is written and again for every symlink once the
  archive is complete, since a later symlink can change where an earlier one leads;
* a hard link names a regular file extracted before it from the same archive;
* devices, fifos and other special files are refused.

The first refusal stops the extraction with ``ExtractError`` naming the archive and the
member; what was extracted before it stays (the callers extract into a directory of their
own, which they discard), minus any symlink that would lead outside.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import shutil
import tarfile
import zlib

MAX_SYMLINK_HOPS = 40  # as the Linux kernel (ELOOP)
OWNER_FROM_ARCHIVE = "archive"

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_FD_CACHE = 128

DIRECTORY = "directory"
FILE = "regular file"
SYMLINK = "symlink"
IMPLICIT = "directory made for its contents"


class ExtractError(Exception):
    """A refused member or a failed extraction; the message names the archive and the member."""


def split_name(name, strip_components=0):
    """The components of a member name without its first ``strip_components`` ones.

    None when nothing is left (the member is skipped). ValueError for an absolute name or
    one with a ``..`` component.
    """
    if name.startswith("/"):
        raise ValueError("an absolute name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("a .. in the name")
    if len(parts) <= strip_components:
        return None
    return tuple(parts[strip_components:])


def _components(target):
    return [part for part in target.split("/") if part not in ("", ".")]


def resolve(links, directory, target):
    """Where a symlink in ``directory`` (a tuple of components) pointing to ``target`` leads.

    ``links`` maps the archive's symlinks (component tuples) to their targets; they are
    followed as the kernel would, components that are not symlinks count as directories.
    Returns the components of the result; ValueError when a step leaves the destination.
    """
    if not target:
        raise ValueError("its target is empty")
    if target.startswith("/"):
        raise ValueError("its target is an absolute path")
    parts = list(directory)
    pending = list(reversed(_components(target)))
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if not parts:
                raise ValueError("it leads outside the destination")
            parts.pop()
            continue
        parts.append(part)
        link = links.get(tuple(parts))
        if link is not None:
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise ValueError("it is a loop of symlinks")
            parts.pop()
            if link.startswith("/"):
                raise ValueError("it leads through a symlink to an absolute path")
            pending.extend(reversed(_components(link)))
    return tuple(parts)


class _Extraction:
    def __init__(self, dest, what, strip_components, owner, implicit_dir_mode):
        self.dest = dest
        self.what = what
        self.strip = strip_components
        self.owner = owner
        self.implicit_dir_mode = implicit_dir_mode
        self.kinds = {}  # components -> DIRECTORY, FILE, SYMLINK, IMPLICIT
        self.names = {}  # components -> the member's name as in the archive
        self.links = {}  # components -> symlink target
        self.dirs = {}  # components -> (mode, owner ids or None, mtime or None)
        self.fds = {}  # components -> open directory descriptor
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}
        os.close(self.root_fd)

    def refuse(self, name, why):
        raise ExtractError("%s: refusing the member %r: %s" % (self.what, name, why))

    def ids(self, member):
        if self.owner == OWNER_FROM_ARCHIVE:
            return (member.uid, member.gid) if os.geteuid() == 0 else None
        return self.owner

    # -- directories, opened without following anything --------------------------------------
    def dir_fd(self, parts, name):
        if not parts:
            return self.root_fd
        fd = self.fds.get(parts)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], name)
        try:
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            self.kinds[parts] = IMPLICIT
            self.dirs[parts] = (self.implicit_dir_mode, self.owner if isinstance(self.owner, tuple) else None, None)
            fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                self.refuse(name, "%s is not a directory in the destination" % "/".join(parts))
            raise
        self.fds[parts] = fd
        return fd

    # -- one member ---------------------------------------------------------------------------
    def member(self, archive, member):
        name = member.name
        try:
            parts = split_name(name, self.strip)
        except ValueError as exc:
            self.refuse(name, str(exc))
        if parts is None:
            return
        if len(self.fds) > _FD_CACHE:
            for fd in self.fds.values():
                os.close(fd)
            self.fds = {}
        for depth in range(1, len(parts)):
            kind = self.kinds.get(parts[:depth])
            if kind == SYMLINK:
                self.refuse(
                    name,
                    "its directory %r is a symlink of the archive; nothing is written through a symlink"
                    % self.names[parts[:depth]],
                )
            if kind == FILE:
                self.refuse(name, "its directory %r is a regular file of the archive" % self.names[parts[:depth]])
        seen = self.kinds.get(parts)
        if seen == IMPLICIT and not member.isdir():
            self.refuse(name, "it is a directory already, made for the earlier members inside it")
        if seen is not None and seen != IMPLICIT:
            self.refuse(
                name,
                "an earlier member has the same name (%r, a %s); a name may appear once" % (self.names[parts], seen),
            )
        if not (member.isdir() or member.isfile() or member.issym() or member.islnk()):
            what = "a fifo" if member.isfifo() else "a device node" if member.isdev() else "a special file"
            self.refuse(name, "%s (devices, fifos and other special files are refused)" % what)
        try:
            self._write(archive, member, name, parts)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                self.refuse(name, "%s exists in the destination already" % "/".join(parts))
            raise ExtractError(
                "%s: cannot extract the member %r into %s: %s" % (self.what, name, self.dest, exc.strerror or exc)
            ) from None
        self.names[parts] = name

    def _write(self, archive, member, name, parts):
        parent = self.dir_fd(parts[:-1], name)
        base = parts[-1]
        ids = self.ids(member)
        if member.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            self.dir_fd(parts, name)  # a directory, not a symlink or a file
            self.kinds[parts] = DIRECTORY
            self.dirs[parts] = ((member.mode & 0o777) | 0o700, ids, member.mtime)
        elif member.isfile():
            source = archive.extractfile(member)
            fd = os.open(base, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
            self.kinds[parts] = FILE
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
                out.flush()
                if ids is not None:
                    os.fchown(fd, ids[0], ids[1])
                os.fchmod(fd, member.mode & 0o777)
                _set_time(fd, member.mtime)
        elif member.issym():
            try:
                resolve(self.links, parts[:-1], member.linkname)
            except ValueError as exc:
                self.refuse(name, "the symlink -> %r: %s" % (member.linkname, exc))
            os.symlink(member.linkname, base, dir_fd=parent)
            self.kinds[parts] = SYMLINK
            self.links[parts] = member.linkname
            if ids is not None:
                os.chown(base, ids[0], ids[1], dir_fd=parent, follow_symlinks=False)
        else:
            try:
                source = split_name(member.linkname, self.strip)
            except ValueError as exc:
                self.refuse(name, "the hard link -> %r leads outside the destination (%s)" % (member.linkname, exc))
            if source is None or self.kinds.get(source) != FILE:
                self.refuse(
                    name,
                    "the hard link -> %r does not name a regular file extracted before it from this archive"
                    % member.linkname,
                )
            source_dir = self.dir_fd(source[:-1], name)
            os.link(source[-1], base, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
            self.kinds[parts] = FILE

    # -- once every member is written -----------------------------------------------------------
    def finish(self):
        escaping = []
        for parts, target in sorted(self.links.items()):
            try:
                resolve(self.links, parts[:-1], target)
            except ValueError as exc:
                escaping.append((parts, target, exc))
        if escaping:
            for parts, _target, _exc in escaping:
                os.unlink(parts[-1], dir_fd=self.dir_fd(parts[:-1], self.names[parts]))
            parts, target, exc = escaping[0]
            self.refuse(
                self.names[parts],
                "the symlink -> %r: %s once the archive is complete (a later member changed where it leads); "
                "%s removed"
                % (target, exc, "it was" if len(escaping) == 1 else "it and %d more were" % (len(escaping) - 1)),
            )
        # Deepest first, so that a directory's time is set after its contents changed.
        for parts in sorted(self.dirs, key=len, reverse=True):
            mode, ids, mtime = self.dirs[parts]
            fd = self.dir_fd(parts, "/".join(parts))
            if ids is not None:
                os.fchown(fd, ids[0], ids[1])
            os.fchmod(fd, mode)
            _set_time(fd, mtime)


def _set_time(fd, mtime):
    if mtime is None:
        return
    try:
        os.utime(fd, (mtime, mtime))
    except (OverflowError, ValueError):
        pass  # a time the file system cannot hold: the extraction time stays


def extract(archive, dest, what, strip_components=0, owner=None, implicit_dir_mode=0o755):
    """Extract the open ``tarfile.TarFile`` ``archive`` (stream mode works) into the directory ``dest``.

    ``what`` names the archive in messages (its path). ``strip_components`` drops leading
    name components (a member left without a name is skipped). ``owner``: None keeps the
    extracting user, a (uid, gid) tuple sets it on everything, OWNER_FROM_ARCHIVE the
    members' numeric ids when running as root. Directories get their mode from the archive
    plus owner rwx; directories the archive does not list get ``implicit_dir_mode``.
    Raises ExtractError (see the module's rules).
    """
    try:
        extraction = _Extraction(dest, what, strip_components, owner, implicit_dir_mode)
    except OSError as exc:
        raise ExtractError("%s: cannot open the destination %s: %s" % (what, dest, exc.strerror or exc)) from None
    try:
        for member in archive:
            extraction.member(archive, member)
        try:
            extraction.finish()
        except OSError as exc:
            raise ExtractError(
                "%s: cannot set the directories' modes in %s: %s" % (what, dest, exc.strerror or exc)
            ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ExtractError("%s: cannot read the archive: %s" % (what, exc)) from None
    finally:
        extraction.close()
