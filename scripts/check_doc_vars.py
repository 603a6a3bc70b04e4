"""Check that every variable the docs name exists in the collection.

A doc (README.md, docs/**/*.md) names a variable when a token with one of the collection's
prefixes (bosun_, one per role: common_, postgresql_, ...) appears in a code span or a
fenced code block. The token must be one of:

- an option of a role's argument spec (roles/*/meta/argument_specs.yml, any entry point);
- a name a role defines or reads: a key in roles/*/vars/ or defaults/, a set_fact or
  register name, a prefixed name in the Jinja of its tasks, vars and templates;
- a name a playbook documents or reads: any prefixed token in playbooks/**/*.yml, header
  comments included;
- a module, filter or lookup of the collection (plugins/*/NAME.py or NAME.yml), or a name
  the collection's Python code writes (a metric, a result key) as a string literal;
- or one of ALLOWED below.

Tokens that end in `_` (`bosun_backup_login_*`, `bosun_health_<check>`) and file names
(`bosun_wal.py`, `bosun_backup_app.prom`) are not variables and are skipped.

Exit 1 with one `file:line: name` line per unknown name.
"""

import ast
import glob
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The collection-wide prefix; each role adds `<role>_` (roles/ is read at run time).
BASE_PREFIXES = ("bosun_", "common_", "postgresql_", "redis_", "nginx_", "app_", "maintenance_schedule_", "control_")

# Names in the docs that are legitimately something else than a variable. Keep it short,
# one reason per entry.
ALLOWED = {
    "redis_server": "a pytest fixture (tests/integration/conftest.py), named in docs/development.md",
    "bosun_private_cidr": "the example inventory's VPC range, which its group_vars pass to role options",
}

FILE_SUFFIXES = (
    "py",
    "prom",
    "json",
    "jsonl",
    "yml",
    "yaml",
    "j2",
    "service",
    "timer",
    "sh",
    "conf",
    "md",
    "txt",
    "log",
    "tar",
    "gz",
    "zst",
    "dump",
)

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1")


def prefixes(root=ROOT):
    names = set(BASE_PREFIXES)
    for role in glob.glob(os.path.join(root, "roles", "*", "")):
        names.add(os.path.basename(os.path.dirname(role)) + "_")
    return tuple(sorted(names, key=len, reverse=True))


def token_re(prefix_list):
    alternatives = "|".join(re.escape(p) for p in prefix_list)
    # Not inside a longer identifier or a path; optionally internal (`__`).
    return re.compile(r"(?<![A-Za-z0-9_/$-])((?:__)?(?:%s)[A-Za-z0-9_]*)" % alternatives)


def tokens_in_text(text, regex):
    """Every prefixed token of a piece of text, minus partial names and file names."""
    found = []
    for match in regex.finditer(text):
        name = match.group(1)
        rest = text[match.end() :]
        if name.endswith("_"):
            continue  # bosun_backup_login_*, bosun_health_<check>
        if rest[:1] in ("*", "<"):
            continue
        suffix = re.match(r"\.([A-Za-z0-9]+)\b", rest)
        if suffix and suffix.group(1) in FILE_SUFFIXES:
            continue
        found.append(name)
    return found


def doc_tokens(path, regex):
    """(line number, name) for each prefixed token in a code span or code block of a doc."""
    out = []
    in_block = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                in_block = not in_block
                continue
            if in_block:
                parts = [line]
            else:
                parts = [m.group(2) for m in INLINE.finditer(line)]
            for part in parts:
                out.extend((number, name) for name in tokens_in_text(part, regex))
    return out


def _walk_keys(node, found, regex):
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and regex.fullmatch(key):
                found.add(key)
            _walk_keys(value, found, regex)
    elif isinstance(node, list):
        for item in node:
            _walk_keys(item, found, regex)


def _task_names(node, found):
    """set_fact keys and register names anywhere in a task file."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "register" and isinstance(value, str):
                found.add(value)
            elif key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                found.update(k for k in value if isinstance(k, str))
            elif key == "loop_control" and isinstance(value, dict) and "loop_var" in value:
                found.add(str(value["loop_var"]))
            _task_names(value, found)
    elif isinstance(node, list):
        for item in node:
            _task_names(item, found)


def _load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            return list(yaml.safe_load_all(f))
    except (yaml.YAMLError, UnicodeDecodeError):
        return []


def _code_lines(path):
    """A file's text without its comment lines (a comment mentions, it does not read)."""
    try:
        with open(path, encoding="utf-8") as f:
            return "".join(line for line in f if not line.lstrip().startswith("#"))
    except UnicodeDecodeError:
        return ""


def known_names(root=ROOT):
    regex = token_re(prefixes(root))
    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    known = set(ALLOWED)

    for spec_file in glob.glob(os.path.join(root, "roles", "*", "meta", "argument_specs.yml")):
        for doc in _load_yaml(spec_file):
            for entry in ((doc or {}).get("argument_specs") or {}).values():
                known.update(((entry or {}).get("options") or {}).keys())

    for role in glob.glob(os.path.join(root, "roles", "*", "")):
        for sub in ("vars", "defaults"):
            for path in glob.glob(os.path.join(role, sub, "**", "*.yml"), recursive=True):
                for doc in _load_yaml(path):
                    if isinstance(doc, dict):
                        known.update(k for k in doc if isinstance(k, str) and ident.fullmatch(k))
        for path in glob.glob(os.path.join(role, "tasks", "**", "*.yml"), recursive=True):
            for doc in _load_yaml(path):
                _task_names(doc, known)
                _walk_keys(doc, known, regex)
        for sub in ("tasks", "vars", "defaults", "templates", "handlers", "files"):
            for path in glob.glob(os.path.join(role, sub, "**", "*"), recursive=True):
                if os.path.isfile(path):
                    known.update(regex.findall(_code_lines(path)))

    for path in glob.glob(os.path.join(root, "playbooks", "**", "*.yml"), recursive=True):
        with open(path, encoding="utf-8") as f:
            known.update(regex.findall(f.read()))  # header comments document, Jinja reads
        for doc in _load_yaml(path):
            _task_names(doc, known)

    for path in glob.glob(os.path.join(root, "plugins", "*", "*")):
        base = os.path.basename(path)
        if base.endswith((".py", ".yml")) and not base.startswith("_"):
            known.add(base.rsplit(".", 1)[0])
    for path in glob.glob(os.path.join(root, "plugins", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            try:
                tree = ast.parse(f.read())
            except SyntaxError:
                continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                known.update(m for m in regex.findall(node.value) if not m.endswith("_"))
    return known


def doc_files(root=ROOT):
    files = [os.path.join(root, "README.md")]
    files += sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))
    return [f for f in files if os.path.isfile(f)]


def check(files, known, root=ROOT):
    regex = token_re(prefixes(root))
    problems = []
    for path in files:
        for number, name in doc_tokens(path, regex):
            if name not in known:
                problems.append("%s:%d: %s" % (os.path.relpath(path, root), number, name))
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    files = [os.path.abspath(a) for a in argv] or doc_files()
    problems = check(files, known_names())
    for line in problems:
        print(line)
    if problems:
        print(
            "%d name(s) in the docs are not a role option, a playbook variable or a name the "
            "collection defines (scripts/check_doc_vars.py)" % len(problems),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
