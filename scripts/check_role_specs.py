"""Check that each role's defaults/main.yml and meta/argument_specs.yml agree.

- every variable in defaults/main.yml is declared in the options of an entry point;
- an option declared with a default has the same default in defaults/main.yml (values
  that are Jinja expressions are not compared);
- an option with a default in the spec is present in defaults/main.yml.

Exit 1 with one line per disagreement.
"""

import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def check_role(role_dir):
    name = os.path.basename(role_dir)
    defaults_file = os.path.join(role_dir, "defaults", "main.yml")
    specs_file = os.path.join(role_dir, "meta", "argument_specs.yml")
    problems = []
    if not os.path.exists(specs_file):
        return ["%s: meta/argument_specs.yml is missing" % name]
    defaults = load(defaults_file) if os.path.exists(defaults_file) else {}
    entries = load(specs_file).get("argument_specs") or {}
    if "main" not in entries:
        return ["%s: argument_specs has no main entry point" % name]
    options = {}
    for entry in entries.values():
        options.update((entry or {}).get("options") or {})
    for var in sorted(defaults):
        if var not in options:
            problems.append("%s: %s is in defaults/main.yml but not in argument_specs" % (name, var))
    for opt, spec in sorted(options.items()):
        if "default" not in spec:
            continue
        if opt not in defaults:
            problems.append("%s: %s has a default in argument_specs but not in defaults/main.yml" % (name, opt))
            continue
        value = defaults[opt]
        if isinstance(value, str) and "{{" in value:
            continue
        if value != spec["default"]:
            problems.append(
                "%s: %s defaults to %r in defaults/main.yml but %r in argument_specs"
                % (name, opt, value, spec["default"])
            )
    return problems


def main():
    roles_dir = os.path.join(ROOT, "roles")
    problems = []
    roles = sorted(d for d in os.listdir(roles_dir) if os.path.isdir(os.path.join(roles_dir, d)))
    for role in roles:
        problems.extend(check_role(os.path.join(roles_dir, role)))
    for line in problems:
        print(line)
    print("role specs: %d roles checked, %d disagreements" % (len(roles), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
