"""The wheels of the control host's pinned Ansible, for a host without a package index.

    python3 wheelhouse.py PYTHON_VERSION      (e.g. 3.11; prints the wheelhouse's path)

Kept between runs in .cache/wheelhouse/cp<version>-<hash of the pins>. The control
scenario and the production rehearsal both need it and may run at the same time, so it is
made under a lock and moved into place only when complete.
"""

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Debian 12 has glibc 2.36 and Debian 13 2.41: manylinux up to 2_34 fits both.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")


def requirements():
    defaults = yaml.safe_load((ROOT / "roles" / "control" / "defaults" / "main.yml").read_text())
    return list(defaults["control_ansible_requirements"])


def wheelhouse(python_version):
    wanted = requirements()
    key = hashlib.sha1(" ".join(wanted).encode(), usedforsecurity=False).hexdigest()[:12]
    cache = ROOT / ".cache" / "wheelhouse"
    path = cache / ("cp%s-%s" % (python_version.replace(".", ""), key))
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            tmp = Path(str(path) + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            argv = ["python3", "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--implementation", "cp"]
            argv += ["--python-version", python_version]
            for platform in PLATFORMS:
                argv += ["--platform", platform]
            subprocess.run(argv + ["--dest", str(tmp)] + wanted, check=True)
            tmp.rename(path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(wheelhouse(sys.argv[1]))
