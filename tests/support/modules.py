"""Run a module of this collection the way Ansible runs it on a host.

The module's arguments go into a JSON file (never into argv, so the passwords of the
awkward-input tests do not show in the process list), the module runs in a fresh Python
process, and its JSON result comes back as a dict with ``rc`` added.
"""

import json
import os
import subprocess
import sys
import tempfile

from tests.support.collection import collections_path


def run_module(name, args, check_mode=False, timeout=600, env=None):
    """Run ``bosun.platform.<name>`` with ``args`` and return its result."""
    payload = dict(args)
    payload["_ansible_check_mode"] = bool(check_mode)
    fd, path = tempfile.mkstemp(prefix="bosun-args-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": payload}, f)
        run_env = dict(os.environ if env is None else env)
        run_env["PYTHONPATH"] = os.pathsep.join(filter(None, [collections_path(), run_env.get("PYTHONPATH")]))
        proc = subprocess.run(
            [sys.executable, "-m", "ansible_collections.bosun.platform.plugins.modules.%s" % name, path],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        os.unlink(path)
    try:
        result = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(
            "module %s printed no JSON (rc=%s)\nstdout: %s\nstderr: %s"
            % (name, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        ) from exc
    result["rc"] = proc.returncode
    result["_stderr"] = proc.stderr
    return result
