"""Make this checkout importable and findable as the collection ``bosun.platform``.

Modules and module_utils import each other by their collection name, as Ansible loads
them, and Ansible finds collections under ``<path>/ansible_collections/<ns>/<name>``. A
checkout is not laid out that way, so ``.cache/collections`` holds that layout as a
relative symlink back to the checkout. Running this file creates it.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collections_path():
    """Return ROOT/.cache/collections, holding ansible_collections/bosun/platform -> ROOT."""
    base = os.path.join(ROOT, ".cache", "collections")
    link_dir = os.path.join(base, "ansible_collections", "bosun")
    link = os.path.join(link_dir, "platform")
    if os.path.realpath(link) != ROOT:
        os.makedirs(link_dir, exist_ok=True)
        tmp_link = "%s.%d" % (link, os.getpid())
        os.symlink(os.path.join("..", "..", "..", ".."), tmp_link)
        os.replace(tmp_link, link)
    return base


def install():
    """Put the collection on sys.path (idempotent) and return the collections path."""
    path = collections_path()
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


if __name__ == "__main__":
    print(collections_path())
