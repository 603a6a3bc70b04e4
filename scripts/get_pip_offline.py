"""Offline stand-in for get-pip.py, used by ansible-test's pip bootstrap.

ansible-test creates a virtual environment without pip and then runs get-pip.py, which it
downloads from a host that the test machines cannot reach. This script does the same job
with the interpreter's own ensurepip, then installs the packages ansible-test asked for
from the machine's configured package index.
"""

import os
import sys


def main():
    import ensurepip

    ensurepip.bootstrap(upgrade=True)

    # ensurepip points PIP_CONFIG_FILE at /dev/null while it runs; that would hide the
    # machine's pip configuration (index, CA bundle) from the install below.
    os.environ.pop("PIP_CONFIG_FILE", None)

    # get-pip.py understands these two flags, pip itself does not.
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]

    from pip._internal.cli.main import main as pip_main

    return pip_main(["install", *args])


if __name__ == "__main__":
    sys.exit(main())
