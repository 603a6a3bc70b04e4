# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Statuses, threshold classification and aggregation of health check results.

A threshold pair (warn, crit) reads the way operators write it:

* higher is worse (usage %, latency): ``value < warn`` is ok, ``warn <= value <= crit``
  is warn, ``value > crit`` is crit. So "< 70 ok, 70-85 warn, > 85 crit" is (70, 85).
* lower is worse (days until expiry, hit rate): ``value >= warn`` is ok,
  ``crit <= value < warn`` is warn, ``value < crit`` is crit. So "warn < 21, crit < 7"
  is (21, 7).

Either bound may be None (no such level). A value of None (not measurable) is ok: the
check says so in its text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

OK = "ok"
WARN = "warn"
UNKNOWN = "unknown"
CRIT = "crit"

# Worst last. "unknown" (the check could not measure on this host) ranks above warn and
# below crit: it never passes for healthy with fail_on=warn, and never fails fail_on=crit.
STATUSES = (OK, WARN, UNKNOWN, CRIT)
SEVERITY = dict((status, rank) for rank, status in enumerate(STATUSES))

FAIL_ON = ("crit", "warn", "never")


class Threshold:
    """Default warn/crit bounds of one metric, its unit and direction."""

    __slots__ = ("warn", "crit", "higher_is_worse", "unit")

    def __init__(self, warn=None, crit=None, higher_is_worse=True, unit=""):
        self.warn = warn
        self.crit = crit
        self.higher_is_worse = higher_is_worse
        self.unit = unit

    def with_bounds(self, warn=None, crit=None):
        """A copy with warn/crit replaced where given."""
        return Threshold(
            self.warn if warn is None else warn, self.crit if crit is None else crit, self.higher_is_worse, self.unit
        )

    def __repr__(self):
        return "Threshold(warn=%r, crit=%r, higher_is_worse=%r)" % (self.warn, self.crit, self.higher_is_worse)


def classify(value, threshold):
    """ok, warn or crit for ``value`` against ``threshold`` (see the module docstring)."""
    if value is None or threshold is None:
        return OK
    warn, crit = threshold.warn, threshold.crit
    if threshold.higher_is_worse:
        if crit is not None and value > crit:
            return CRIT
        if warn is not None and value >= warn:
            return WARN
        return OK
    if crit is not None and value < crit:
        return CRIT
    if warn is not None and value < warn:
        return WARN
    return OK


def worst(statuses):
    """The most severe of ``statuses`` (ok for none)."""
    result = OK
    for status in statuses:
        if SEVERITY[status] > SEVERITY[result]:
            result = status
    return result


def reaches(status, fail_on):
    """Whether a check in ``status`` makes a task with ``fail_on`` fail."""
    if fail_on == "never":
        return False
    if fail_on == "warn":
        return SEVERITY[status] >= SEVERITY[WARN]
    return status == CRIT


def summarize(results):
    """Counts per status plus the total."""
    counts = dict((status, 0) for status in STATUSES)
    for result in results:
        counts[result["status"]] += 1
    counts["total"] = len(results)
    return counts


def failing(results, fail_on):
    """The results that make the task fail, worst first (input order within a status)."""
    hits = [r for r in results if reaches(r["status"], fail_on)]
    return sorted(hits, key=lambda r: -SEVERITY[r["status"]])


def failure_message(results, fail_on, limit=20):
    """'2 of 5 checks failed (fail_on=crit): db crit: ...; web crit: ...'."""
    hits = failing(results, fail_on)
    if not hits:
        return ""
    parts = ["%s %s: %s" % (r["name"], r["status"], r["message"]) for r in hits[:limit]]
    if len(hits) > limit:
        parts.append("and %d more" % (len(hits) - limit))
    return "%d of %d checks failed (fail_on=%s): %s" % (len(hits), len(results), fail_on, "; ".join(parts))


def summary_message(results):
    """'20 checks: 19 ok, 1 warn'."""
    counts = summarize(results)
    parts = ["%d %s" % (counts[s], s) for s in STATUSES if counts[s]]
    return "%d checks: %s" % (counts["total"], ", ".join(parts) or "none")
