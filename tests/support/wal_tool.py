"""bosun-wal installed for the tests the way the postgresql role installs it on a db host.

PostgreSQL runs the tool as its own user (archive_command, restore_command, and the
restore_command of a cluster being recovered), so the tests must not run it from the
checkout: a clone may live where only its owner can read (a 0700 ``mktemp -d`` folder,
/root). The files to copy and the command's wrapper come from the role itself
(``__postgresql_wal_tool_files`` in roles/postgresql/vars/main.yml and
templates/bosun-wal.j2), so the tests and the role cannot drift apart.
"""

import atexit
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


def tool_files():
    """[{src, dest}]: the collection files that make up the tool and their installed names."""
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["__postgresql_wal_tool_files"]


def install(base):
    """Install the tool under ``base`` (lib/ and bin/bosun-wal), every level mode 0755 and
    every file 0644, owned by the user running the tests. Returns {lib, command}."""
    lib = os.path.join(base, "lib")
    bindir = os.path.join(base, "bin")
    for directory in (base, lib, bindir):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)
    files = tool_files()
    for item in files:
        dest = os.path.join(lib, item["dest"])
        shutil.copyfile(os.path.join(ROOT, item["src"]), dest)
        os.chmod(dest, 0o644)
    with open(os.path.join(ROLE, "templates", "bosun-wal.j2"), encoding="utf-8") as f:
        template = jinja2.Template(f.read(), keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    command = os.path.join(bindir, "bosun-wal")
    with open(command, "w", encoding="utf-8") as f:
        f.write(template.render({"__postgresql_wal_tool_dir": lib, "__postgresql_wal_tool_files": files}))
    os.chmod(command, 0o755)
    return {"lib": lib, "command": command}


def command():
    """The tool's command, installed once per test process in a temporary directory that
    every user can read (removed when the process ends)."""
    if not _installed:
        base = tempfile.mkdtemp(prefix="bosun-wal-tool-")
        atexit.register(shutil.rmtree, base, True)
        _installed.update(install(base))
    return _installed["command"]
