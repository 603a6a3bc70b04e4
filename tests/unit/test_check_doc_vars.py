"""scripts/check_doc_vars.py: a doc naming a variable the collection does not have is reported."""

import importlib.util
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_doc_vars", os.path.join(ROOT, "scripts", "check_doc_vars.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cdv = _load_checker()


def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))
    return full


@pytest.fixture(name="tree")
def _tree(tmp_path):
    root = str(tmp_path)
    write(
        root,
        "roles/widget/meta/argument_specs.yml",
        """\
        argument_specs:
          main:
            options:
              widget_port: {type: int, default: 80}
          extra:
            options:
              widget_extra_mode: {type: str, default: a}
        """,
    )
    write(root, "roles/widget/vars/main.yml", "__widget_internal: 1\n")
    write(
        root,
        "roles/widget/tasks/main.yml",
        """\
        - name: Read a collection-wide knob
          ansible.builtin.set_fact:
            widget_fact: "{{ bosun_read_by_role | default(1) }}"
          register: widget_registered
        # bosun_only_in_a_role_comment is mentioned, never read
        """,
    )
    write(
        root,
        "playbooks/thing.yml",
        """\
        ---
        # Variables:
        #   bosun_thing_documented: 3
        - name: Thing
          hosts: "{{ bosun_thing_hosts | default('all') }}"
          tasks: []
        """,
    )
    write(root, "plugins/modules/widget_module.py", 'METRIC = "bosun_widget_last_status"\n')
    return root


def run(root, doc):
    path = write(root, "docs/page.md", doc)
    return cdv.check([path], cdv.known_names(root), root)


def test_unknown_variable_in_a_code_span_is_reported_with_file_and_line(tree):
    problems = run(tree, "Intro.\n\nSet `widget_prot: 8080` to move it.\n")
    assert problems == ["docs/page.md:3: widget_prot"]


def test_unknown_variable_in_a_code_block_is_reported(tree):
    doc = "```yaml\nwidget_port: 1\nbosun_thing_undocumented: 2\n```\n"
    assert run(tree, doc) == ["docs/page.md:3: bosun_thing_undocumented"]


def test_known_names_pass(tree):
    doc = (
        "`widget_port`, `widget_extra_mode`, `__widget_internal`, `widget_fact`, `widget_registered`,\n"
        "`bosun_read_by_role`, `bosun_thing_documented`, `-e bosun_thing_hosts=db`,\n"
        "`bosun.platform.widget_module` writes `bosun_widget_last_status`.\n"
    )
    assert run(tree, doc) == []


def test_a_name_only_in_a_role_comment_is_not_known(tree):
    assert run(tree, "`bosun_only_in_a_role_comment`\n") == ["docs/page.md:1: bosun_only_in_a_role_comment"]


def test_prose_partial_names_and_file_names_are_not_checked(tree):
    doc = (
        "widget_nonsense in prose is not a code span.\n"
        "`bosun_backup_login_*`, `bosun_health_<check>`, `widget_files.py`, `bosun_x_app.prom`,\n"
        "`/usr/local/lib/bosun/bosun_wal_tool`, `other_prefix_thing`\n"
    )
    assert run(tree, doc) == []


def test_the_role_directory_adds_its_prefix(tree):
    assert cdv.token_re(cdv.prefixes(tree)).findall("`widget_nope` `gadget_nope`") == ["widget_nope"]


def test_a_metric_with_labels_is_checked(tree):
    doc = '```yaml\nexpr: bosun_widget_last_status{host="a"} == 0 or bosun_widget_gone{name="x"} > 0\n```\n'
    assert run(tree, doc) == ["docs/page.md:2: bosun_widget_gone"]
