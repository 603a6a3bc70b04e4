"""bosun-wal installed for the tests the way the postgresql role installs it on a db host.

PostgreSQL runs the tool as its own user (archive_command, restore_command, and the
restore_command of a cluster being recovered), so the tests must not run it from the
checkout: a clone may live where only its owner can read (a 0700 ``mktemp -d`` folder,
/root). What is installed comes from the role itself (roles/postgresql/vars/main.yml:
``__postgresql_wal_library_dir`` and ``__postgresql_wal_tool_files``, the library; its
files/bosun_wal_cli.py, the command line), so the tests and the role cannot drift apart.

``load_cli`` loads that command line in the test process, with the collection's own WAL
library as the ``bosun_wal`` it imports, for unit tests of the command itself.
"""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile

import jinja2
import yaml

from tests.support.collection import ROOT

ROLE = os.path.join(ROOT, "roles", "postgresql")
# The system's Python, as on the db hosts (the tool is standard library only).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

_installed = {}


CLI = os.path.join(ROLE, "files", "bosun_wal_cli.py")
# The interpreter line the role puts before files/bosun_wal_cli.py (tasks/wal_archive.yml).
SHEBANG = "#!/usr/bin/python3\n"


def _role_vars():
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def library_dir():
    """__postgresql_wal_library_dir as the role computes it, for this checkout's role."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # noqa: S701 - a path, not HTML
    env.filters["dirname"] = os.path.dirname
    return env.from_string(_role_vars()["__postgresql_wal_library_dir"]).render(role_path=ROLE)


def tool_files():
    """[{src, dest}]: the library's files (``src`` relative to library_dir()) and their installed names."""
    return _role_vars()["__postgresql_wal_tool_files"]


def install(base):
    """Install the tool under ``base`` as the role does: lib/ holds the library and the command
    line (lib/bosun-wal), bin/bosun-wal links to it; every level mode 0755, every library
    file 0644, owned by the user running the tests. Returns {lib, command}."""
    lib = os.path.join(base, "lib")
    bindir = os.path.join(base, "bin")
    for directory in (base, lib, bindir):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
    source = library_dir()
    for item in tool_files():
        dest = os.path.join(lib, item["dest"])
        shutil.copyfile(os.path.join(source, item["src"]), dest)
        os.chmod(dest, 0o644)
    cli = os.path.join(lib, "bosun-wal")
    with open(CLI, encoding="utf-8") as f:
        text = f.read()
    with open(cli, "w", encoding="utf-8") as f:
        f.write(SHEBANG + text.rstrip() + "\n")  # the file lookup strips trailing whitespace
    os.chmod(cli, 0o755)
    command = os.path.join(bindir, "bosun-wal")
    os.symlink(cli, command)
    return {"lib": lib, "command": command}


def load_cli(library):
    """The command line (files/bosun_wal_cli.py) as a module, importing ``library`` (the
    collection's module_utils/_backup/wal.py) as its ``bosun_wal``; sys.path and sys.modules
    are left as they were."""
    path, before = list(sys.path), sys.modules.get("bosun_wal")
    sys.modules["bosun_wal"] = library
    try:
        spec = importlib.util.spec_from_file_location("bosun_wal_cli", CLI)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
        if before is None:
            del sys.modules["bosun_wal"]
        else:
            sys.modules["bosun_wal"] = before
    return module


def command():
    """The tool's command, installed once per test process in a temporary directory that
    every user can read (removed when the process ends)."""
    if not _installed:
        base = tempfile.mkdtemp(prefix="bosun-wal-tool-")
        atexit.register(shutil.rmtree, base, True)
        _installed.update(install(base))
    return _installed["command"]
