# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The content of Elasticsearch's file-realm ``users`` file for the wanted users.

Run on the host as ``python3 -c <this file> <path of the users file in place>``, with
the wanted users on standard input as JSON, ``[[name, password], ...]`` (passwords never
in argv). Prints ``{"content": "<name>:<bcrypt hash>\\n..."}``.

A user whose hash in the file in place still matches the password keeps it, so the same
passwords give the same file (bcrypt salts are random). New hashes are bcrypt with cost
10 and the ``$2a$`` prefix, what ``elasticsearch-users`` writes.
"""

import json
import sys

import bcrypt

PREFIXES = ("$2a$", "$2b$", "$2y$")


def read_hashes(path):
    hashes = {}
    try:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                entry = raw.strip()
                if not entry or entry.startswith("#") or ":" not in entry:
                    continue
                name, hashed = entry.split(":", 1)
                hashes[name] = hashed
    except FileNotFoundError:
        pass
    return hashes


def matches(password, hashed):
    if not hashed.startswith(PREFIXES):
        return False
    try:
        # $2y$ is $2b$ under another name; python3-bcrypt knows $2a$ and $2b$.
        return bcrypt.checkpw(password, ("$2b$" + hashed[4:] if hashed.startswith("$2y$") else hashed).encode("ascii"))
    except ValueError:
        return False


def main():
    wanted = json.load(sys.stdin)
    current = read_hashes(sys.argv[1])
    lines = []
    for name, password in wanted:
        secret = password.encode("utf-8")
        hashed = current.get(name, "")
        if not matches(secret, hashed):
            hashed = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10, prefix=b"2a")).decode("ascii")
        lines.append("%s:%s\n" % (name, hashed))
    json.dump({"content": "".join(lines)}, sys.stdout)


if __name__ == "__main__":
    main()
