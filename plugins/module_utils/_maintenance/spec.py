# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of postgresql_maintenance, their checks, and small helpers shared by the actions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.bosun.platform.plugins.module_utils._postgres import (
    POSTGRES_COMMON_ARGS,
    postgres_argument_spec,
)

ACTIONS = ["vacuum", "report"]
SLOW_ORDER = ["total_time", "mean_time"]

MAINTENANCE_ARGS = dict(
    action=dict(type="str", required=True, choices=ACTIONS),
    db=dict(type="str", required=True),
    # vacuum
    tables=dict(type="list", elements="str", default=[]),
    analyze=dict(type="bool", default=True),
    min_dead_ratio=dict(type="float", default=0.1),
    min_dead_tuples=dict(type="int", default=1000),
    lock_timeout=dict(type="float", default=5),
    time_budget=dict(type="float", default=1800),
    max_xact_age=dict(type="int", default=3600),
    # report
    top=dict(type="int", default=10),
    slow_queries_by=dict(type="str", default="total_time", choices=SLOW_ORDER),
    seq_scan_min_rows=dict(type="int", default=1000),
    reindex_invalid=dict(type="bool", default=False),
    terminate_idle_in_transaction=dict(type="int", default=0),
)

# Query texts from pg_stat_statements are shown, but never with more than this many characters.
QUERY_TEXT_MAX = 1000


def argument_spec():
    """The module's options: the shared connection options plus the maintenance ones."""
    return postgres_argument_spec(**dict((k, dict(v)) for k, v in MAINTENANCE_ARGS.items()))


def default_params(**over):
    """Every option at its default, updated with ``over`` (for callers outside Ansible)."""
    params = dict((k, v.get("default")) for k, v in POSTGRES_COMMON_ARGS.items())
    params.update((k, v.get("default")) for k, v in MAINTENANCE_ARGS.items())
    params.update(over)
    return params


class MaintenanceError(Exception):
    """The run failed or was refused; ``result`` holds what is known or was done before."""

    def __init__(self, message, result=None):
        super(MaintenanceError, self).__init__(message)
        self.message = message
        self.result = result or {}


def validate(params):
    """Refuse option values that make no sense, before anything connects."""
    problems = []
    if not params.get("db"):
        problems.append("db must name a database")
    ratio = params.get("min_dead_ratio")
    if ratio is None or not 0 <= ratio <= 1:
        problems.append("min_dead_ratio must be between 0 and 1 (got %s)" % ratio)
    for name, low in (
        ("min_dead_tuples", 0),
        ("max_xact_age", 0),
        ("time_budget", 0),
        ("terminate_idle_in_transaction", 0),
        ("seq_scan_min_rows", 0),
        ("top", 1),
    ):
        value = params.get(name)
        if value is None or value < low:
            problems.append("%s must be %s or more (got %s)" % (name, low, value))
    timeout = params.get("lock_timeout")
    if timeout is None or timeout <= 0:
        problems.append("lock_timeout must be more than 0 seconds (got %s)" % timeout)
    for entry in params.get("tables") or []:
        if entry is None or not str(entry).strip():
            problems.append("tables holds an empty entry")
            break
    if problems:
        raise MaintenanceError("; ".join(problems))


def quote_ident(name):
    """An SQL identifier, double-quoted (quotes inside doubled)."""
    return '"%s"' % str(name).replace('"', '""')


def qualified(schema, name):
    """``"schema"."name"`` for a statement."""
    return "%s.%s" % (quote_ident(schema), quote_ident(name))


def display_name(schema, name):
    """``schema.name`` as shown in results: raw names, as the operator writes them."""
    return "%s.%s" % (schema, name)


def ms(seconds):
    """A PostgreSQL duration setting in whole milliseconds (at least 1: 0 would mean no limit)."""
    return "%dms" % max(1, int(round(seconds * 1000)))


_PASSWORD_LITERAL = re.compile(r"(PASSWORD\s+)(?:E'(?:[^'\\]|''|\\.)*'?|'(?:[^']|'')*'?)", re.IGNORECASE)


def mask_query(text, secrets=()):
    """A query text safe to show: password literals masked, secrets redacted, length bounded."""
    if text is None:
        return None
    text = _PASSWORD_LITERAL.sub(r"\1'********'", str(text))
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "********")
    if len(text) > QUERY_TEXT_MAX:
        text = text[:QUERY_TEXT_MAX] + "..."
    return text


def fmt_seconds(seconds):
    """``95`` -> ``1m35s``; for messages."""
    seconds = int(round(seconds or 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh%02dm%02ds" % (hours, minutes, secs)
    if minutes:
        return "%dm%02ds" % (minutes, secs)
    return "%ds" % secs


def fmt_number(value):
    """``1234567`` -> ``1,234,567``."""
    return "{:,}".format(int(value or 0))
