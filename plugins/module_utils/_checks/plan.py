# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""From validated module parameters to runnable checks: names, options, thresholds, secrets.

Everything a user can get wrong in ``checks`` is reported here, all at once, naming the check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils._checks import registry, spec
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

# Top-level connection options that only one family has apply to that family's checks
# always; one that several families have (login_user, ca_cert ...) applies only when the
# task has checks of just one of those families, since module_defaults cannot say which
# family it was meant for.
SHARED_CONNECTION_OPTIONS = sorted(
    name for name in spec.toplevel_connection_options() if sum(name in args for args in spec.FAMILIES.values()) > 1
)


class PlanError(ValueError):
    """The checks cannot run as given; the message names every problem found."""


class Plan:
    """One check, ready to run."""

    __slots__ = ("index", "name", "type", "kind", "options", "timeout", "thresholds", "labels", "secrets")

    def __init__(self, *, index, name, type_name, kind, options, timeout, thresholds, labels, secrets):
        self.index = index
        self.name = name
        self.type = type_name
        self.kind = kind
        self.options = options
        self.timeout = timeout
        self.thresholds = thresholds
        self.labels = labels
        self.secrets = secrets


def _label(index, check):
    return "checks[%d]%s" % (index, " (%s)" % check["name"] if check.get("name") else "")


def _number(value):
    if isinstance(value, bool):
        raise ValueError("not a number")
    return float(value)


def thresholds_for(kind, check, problems, where):
    """Effective Threshold of each metric: type defaults, then ``thresholds``, then warn/crit."""
    result = dict((name, t) for name, t in kind.METRICS.items() if t is not None)
    tunable = registry.tunable_metrics(kind)
    for name, bounds in (check.get("thresholds") or {}).items():
        if name not in tunable:
            problems.append(
                "%s: thresholds.%s: %s checks have %s"
                % (where, name, kind.TYPE, ", ".join(tunable) if tunable else "no numeric thresholds")
            )
            continue
        if not isinstance(bounds, dict) or not set(bounds) <= {"warn", "crit"}:
            problems.append("%s: thresholds.%s must be a dict with warn and/or crit" % (where, name))
            continue
        try:
            result[name] = result[name].with_bounds(
                *[None if bounds.get(k) is None else _number(bounds[k]) for k in ("warn", "crit")]
            )
        except (TypeError, ValueError):
            problems.append("%s: thresholds.%s: warn and crit must be numbers" % (where, name))
    if check.get("warn") is not None or check.get("crit") is not None:
        primary = registry.primary_metric(kind)
        if primary not in tunable:
            problems.append("%s: warn/crit do not apply to %s checks (no numeric value)" % (where, kind.TYPE))
        else:
            result[primary] = result[primary].with_bounds(check.get("warn"), check.get("crit"))
    for name, threshold in result.items():
        if threshold.warn is None or threshold.crit is None:
            continue
        if threshold.higher_is_worse and threshold.warn > threshold.crit:
            problems.append(
                "%s: %s: warn (%s) must not be above crit (%s)" % (where, name, threshold.warn, threshold.crit)
            )
        if not threshold.higher_is_worse and threshold.warn < threshold.crit:
            problems.append(
                "%s: %s: lower values are worse, so warn (%s) must not be below crit (%s)"
                % (where, name, threshold.warn, threshold.crit)
            )
    return result


def connection_defaults(params, families_present):
    """Top-level connection options per family, from what the task was given."""
    given = dict((k, params.get(k)) for k in spec.toplevel_connection_options() if params.get(k) is not None)
    out = {}
    notes = []

    def holders(name):
        return sorted(f for f in families_present if name in spec.FAMILIES[f])

    for family, args in spec.FAMILIES.items():
        values = {}
        for name, value in given.items():
            if name not in args:
                continue
            if len(holders(name)) > 1:
                continue
            values[name] = int(value) if name == "connect_timeout" and args[name]["type"] == "int" else value
        out[family] = values
    skipped = sorted(k for k in given if len(holders(k)) > 1)
    if skipped:
        kinds = sorted(set(f for k in skipped for f in holders(k)))
        both = "both %s and %s" % tuple(kinds) if len(kinds) == 2 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
        notes.append(
            "top-level %s ignored: this task has %s checks, so it is not clear which they are for; "
            "give them in each check's %s options" % (", ".join(skipped), both, "/".join(kinds))
        )
    return out, notes


def type_options(kind, check, toplevel):
    """A check's options with every key present: its own, then top-level, then defaults."""
    given = check.get(kind.TYPE) or {}
    family = getattr(kind, "FAMILY_ARGS", None)
    options = {}
    for name in spec.type_options(kind):
        value = given.get(name)
        if value is None and family and name in family:
            value = toplevel.get(name)
            if value is None:
                value = family[name].get("default")
        if value is None and name in kind.OPTIONS:
            value = kind.OPTIONS[name].get("default")
        options[name] = value
    return options


def default_name(kind, options):
    target = kind.target(options) if hasattr(kind, "target") else ""
    return ("%s %s" % (kind.TYPE, target)).strip()


def build(params):
    """(plans, warnings); raises PlanError listing every problem."""
    checks = params.get("checks") or []
    problems = []
    if not checks:
        problems.append("checks is empty: give at least one check")
    if (params.get("concurrency") or 0) < 1:
        problems.append("concurrency must be at least 1")
    if (params.get("overall_timeout") or 0) <= 0:
        problems.append("overall_timeout must be more than 0")
    families = set(c["type"] for c in checks if c.get("type") in spec.FAMILIES)
    toplevel, warnings = connection_defaults(params, families)

    plans = []
    names = {}
    for index, check in enumerate(checks):
        where = _label(index, check)
        kind = registry.get(check["type"])
        for other in registry.CHECK_TYPES:
            if other != kind.TYPE and check.get(other) is not None:
                problems.append("%s: type is %s but options are given for %s" % (where, kind.TYPE, other))
        if getattr(kind, "REQUIRED", False) and check.get(kind.TYPE) is None:
            problems.append("%s: %s checks need their options under the key %s" % (where, kind.TYPE, kind.TYPE))
            continue
        if (check.get("timeout") or 0) <= 0:
            problems.append("%s: timeout must be more than 0" % where)
        options = type_options(kind, check, toplevel.get(kind.TYPE, {}))
        if hasattr(kind, "validate"):
            problems.extend("%s: %s" % (where, p) for p in kind.validate(options))
        thresholds = thresholds_for(kind, check, problems, where)
        name = check.get("name") or default_name(kind, options)
        if name in names:
            problems.append(
                "%s: the name %r is already used by checks[%d]; names must be unique" % (where, name, names[name])
            )
        names.setdefault(name, index)
        secrets = list(kind.secrets(options)) if hasattr(kind, "secrets") else []
        plans.append(
            Plan(
                index=index,
                name=name,
                type_name=kind.TYPE,
                kind=kind,
                options=options,
                timeout=float(check.get("timeout") or 5.0),
                thresholds=thresholds,
                labels=check.get("labels") or {},
                secrets=[s for s in secrets if s],
            )
        )
    if problems:
        raise PlanError("invalid checks: " + "; ".join(problems))
    return plans, warnings


__all__ = ["Plan", "PlanError", "Threshold", "build"]
