"""Fail when a change to plugins/, roles/ or playbooks/ comes without a changelog fragment.

The change is everything between the base and the working tree: the commits since the base,
staged and unstaged edits and untracked files. It needs a fragment: a .yml or .yaml file
added (or edited) under changelogs/fragments/ (docs/development.md, "Changelog"). A change
that needs no release note adds a fragment with only a `trivial:` section.

The base is the merge base of HEAD with
- the commit in the BASE environment variable, when set (CI sets it to the target branch);
  a BASE that is not a commit here is an error (exit 2), not a pass;
- else origin/main, when the clone has it.

Without a base (a fresh clone without origin/main) only uncommitted changes are compared,
against HEAD. When there is nothing to compare (no base and a clean tree, or HEAD at the base
and a clean tree, as in CI's clean clone of main) the check passes and says so.

Exit 0 when fine, 1 naming the changed paths when a fragment is missing, 2 on a bad BASE.
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCHED = ("plugins/", "roles/", "playbooks/")
FRAGMENTS = "changelogs/fragments/"
FRAGMENT_SUFFIXES = (".yml", ".yaml")
UPSTREAM = "origin/main"
PREFIX = "changelog fragment:"


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)


def commit_of(repo, ref):
    result = git(repo, "rev-parse", "--verify", "--quiet", ref + "^{commit}")
    return result.stdout.strip() if result.returncode == 0 else None


def find_base(repo, base_env):
    """(merge-base sha or None, description); raises ValueError for a bad BASE."""
    if base_env:
        if commit_of(repo, base_env) is None:
            raise ValueError(f"BASE={base_env} is not a commit in this clone (fetch it, or deepen the history)")
        result = git(repo, "merge-base", "HEAD", base_env)
        if result.returncode != 0:
            raise ValueError(f"HEAD and BASE={base_env} have no merge base (deepen the history)")
        sha = result.stdout.strip()
        return sha, f"the merge base with BASE={base_env} ({sha[:12]})"
    if commit_of(repo, "refs/remotes/" + UPSTREAM) is None:
        return None, f"no base: BASE unset, no {UPSTREAM}"
    result = git(repo, "merge-base", "HEAD", UPSTREAM)
    if result.returncode != 0:
        return None, f"no base: no merge base with {UPSTREAM}, a shallow clone?"
    sha = result.stdout.strip()
    return sha, f"the merge base with {UPSTREAM} ({sha[:12]})"


def changed_files(repo, base):
    """{path: status letter} of the working tree against base, untracked files as 'A'."""
    changes = {}
    diff = git(repo, "diff", "--name-status", "--no-renames", "-z", base)
    if diff.returncode != 0:
        raise RuntimeError(f"git diff {base} failed: {diff.stderr.strip()}")
    fields = diff.stdout.split("\0")
    for status, path in zip(fields[0::2], fields[1::2]):
        if path:
            changes[path] = status[:1]
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "-z")
    for path in untracked.stdout.split("\0"):
        if path:
            changes[path] = "A"
    return changes


def is_fragment(path, status):
    return (
        status in ("A", "M")
        and path.startswith(FRAGMENTS)
        and "/" not in path[len(FRAGMENTS) :]
        and path.endswith(FRAGMENT_SUFFIXES)
    )


def check(repo, base_env):
    """(exit code, message lines)."""
    if git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return 0, [f"{PREFIX} not a git work tree: nothing to compare"]
    head = commit_of(repo, "HEAD")
    if head is None:
        return 0, [f"{PREFIX} no commit yet: nothing to compare"]
    try:
        base, described = find_base(repo, base_env)
    except ValueError as exc:
        return 2, [f"{PREFIX} {exc}"]
    changes = changed_files(repo, base or head)
    if base is None:
        if not changes:
            return 0, [f"{PREFIX} {described}; nothing uncommitted: nothing to compare"]
        described = f"HEAD ({described}; only uncommitted changes compared)"
    elif not changes and base == head:
        return 0, [f"{PREFIX} HEAD is {described} and nothing is uncommitted: nothing to compare"]
    watched = sorted(path for path in changes if path.startswith(WATCHED))
    fragments = sorted(path for path, status in changes.items() if is_fragment(path, status))
    if not watched:
        return 0, [f"{PREFIX} nothing under {', '.join(WATCHED)} changed since {described}"]
    if fragments:
        return 0, [f"{PREFIX} {len(watched)} changed file(s) since {described}, fragment(s): {', '.join(fragments)}"]
    lines = [
        f"{PREFIX} missing. These files changed since {described}",
        f"and no .yml file was added under {FRAGMENTS}:",
    ]
    lines += [f"  {changes[path]} {path}" for path in watched]
    lines.append(
        f"Add {FRAGMENTS}<change>.yml (docs/development.md, 'Changelog'); "
        "a change with no release note adds one with only a 'trivial:' section."
    )
    return 1, lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=ROOT, help="the collection's git work tree (default: this checkout)")
    args = parser.parse_args(argv)
    code, lines = check(args.repo, os.environ.get("BASE", "").strip())
    print("\n".join(lines), file=sys.stderr if code == 2 else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main())
