"""scripts/check_changelog_fragment.py on throwaway git repositories.

A change to plugins/, roles/ or playbooks/ since the base must add a changelog fragment; with
no base (a fresh clone without origin/main and without BASE) there is nothing to compare.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "check_changelog_fragment.py")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "BASE"}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    env.update(extra)
    return env


class Repo:
    def __init__(self, path):
        self.path = str(path)
        os.makedirs(self.path)
        self.git("init", "-q", "-b", "main")
        self.write("README.md", "collection\n")
        self.write("plugins/modules/widget.py", "# widget\n")
        self.write("changelogs/fragments/.keep", "")
        self.commit("initial")

    def git(self, *args):
        return subprocess.run(
            ["git", *args], cwd=self.path, env=_env(), check=True, capture_output=True, text=True
        ).stdout.strip()

    def write(self, rel, text):
        full = os.path.join(self.path, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def upstream_here(self):
        """origin/main at HEAD, as in a clone of main."""
        self.git("update-ref", "refs/remotes/origin/main", "HEAD")

    def check(self, **env):
        return subprocess.run(
            [sys.executable, SCRIPT, "--repo", self.path], env=_env(**env), capture_output=True, text=True, check=False
        )


@pytest.fixture(name="repo")
def _repo(tmp_path):
    return Repo(tmp_path / "collection")


def test_plugin_change_without_fragment_fails_naming_paths(repo):
    repo.upstream_here()
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.write("roles/web/tasks/main.yml", "---\n[]\n")
    repo.write("docs/widget.md", "doc\n")
    repo.commit("change widget")
    result = repo.check()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "plugins/modules/widget.py" in result.stdout
    assert "roles/web/tasks/main.yml" in result.stdout
    assert "docs/widget.md" not in result.stdout
    assert "origin/main" in result.stdout


def test_plugin_change_with_fragment_passes(repo):
    repo.upstream_here()
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.write("changelogs/fragments/1-widget.yml", "---\nbugfixes:\n  - widget - fixed.\n")
    repo.commit("change widget with a fragment")
    result = repo.check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_uncommitted_changes_count(repo):
    """Edits not yet committed are part of the change, and so is an untracked fragment."""
    repo.upstream_here()
    repo.write("playbooks/site.yml", "---\n[]\n")
    assert repo.check().returncode == 1
    repo.write("changelogs/fragments/2-site.yaml", "---\nminor_changes:\n  - site.yml.\n")
    assert repo.check().returncode == 0


def test_keep_file_or_deleted_fragment_is_not_a_fragment(repo):
    repo.write("changelogs/fragments/old.yml", "---\nbugfixes:\n  - old.\n")
    repo.commit("pending fragment")
    repo.upstream_here()
    repo.git("rm", "-q", "changelogs/fragments/old.yml")
    repo.write("changelogs/fragments/notes.txt", "not a fragment\n")
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.commit("change widget, drop a fragment")
    result = repo.check()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "plugins/modules/widget.py" in result.stdout


def test_base_variable_wins(repo):
    first = repo.git("rev-parse", "HEAD")
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.commit("change widget")
    result = repo.check(BASE=first)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "plugins/modules/widget.py" in result.stdout
    # A BASE that is not a commit is a CI mistake, not a pass.
    assert repo.check(BASE="no-such-ref").returncode == 2


def test_no_base_passes_with_nothing_to_compare(repo):
    """A fresh clone without origin/main: nothing to compare, even after changes to plugins/."""
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.commit("change widget")
    result = repo.check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to compare" in result.stdout


def test_head_at_base_passes_with_nothing_to_compare(repo):
    """CI's clean clone of main: origin/main is HEAD."""
    repo.write("plugins/modules/widget.py", "# widget, changed\n")
    repo.commit("change widget")
    repo.upstream_here()
    result = repo.check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to compare" in result.stdout


def test_no_base_still_checks_uncommitted_changes(repo):
    """Without a base, edits not yet committed are compared against HEAD."""
    repo.write("roles/web/defaults/main.yml", "---\nweb_port: 80\n")
    result = repo.check()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "roles/web/defaults/main.yml" in result.stdout
