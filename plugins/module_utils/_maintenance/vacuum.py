# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VACUUM (ANALYZE) per table, with guard rails.

1. Refuse to start while a transaction older than ``max_xact_age`` is open in the database:
   VACUUM cannot remove the dead rows such a transaction may still see, so the run would
   scan and achieve nothing. The message names each such session (pid, user, application,
   state, age), never its query text.
2. Choose tables: the listed ones (in that order) or every user table (most dead tuples
   first, so a time budget is spent where it helps most). A table is skipped when it has
   fewer than ``min_dead_tuples`` dead tuples or its dead ratio n_dead/(n_live+n_dead) is
   below ``min_dead_ratio`` (both from pg_stat_all_tables), or when the login role may not
   vacuum it.
3. Vacuum each chosen table with ``lock_timeout``: a table whose lock is not granted in
   time is skipped (naming who holds the conflicting lock) instead of waiting, and
   blocking every session that queues behind the VACUUM. ``statement_timeout`` is the time
   left of ``time_budget``: a VACUUM still running when the budget ends is cancelled, and
   the tables not reached are reported as skipped (budget).
4. Per table: seconds, dead tuples before (statistics) and after (statistics, read again
   after VACUUM), and tuples removed as VACUUM VERBOSE reports them (falling back to the
   difference of the statistics when the output cannot be read).

Check mode runs the same steps; in place of VACUUM it takes VACUUM's lock (SHARE UPDATE
EXCLUSIVE, same lock_timeout) in a transaction it rolls back, so lock skips are predicted
too. It cannot know how long VACUUM would take, so budget skips are not predicted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.bosun.platform.plugins.module_utils._maintenance.session import (
    LOCK_NOT_AVAILABLE,
    QUERY_CANCELED,
    UNDEFINED_TABLE,
    StatementError,
    parse_vacuum_verbose,
    refusal_in,
)
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.spec import (
    MaintenanceError,
    display_name,
    fmt_number,
    fmt_seconds,
)

VACUUMED = "vacuumed"
SKIPPED = "skipped"


def dead_ratio(live, dead):
    """n_dead / (n_live + n_dead); 0 for an empty table."""
    live, dead = int(live or 0), int(dead or 0)
    total = live + dead
    return float(dead) / total if total else 0.0


def _pct(ratio):
    return "%.1f%%" % (ratio * 100)


def threshold_skip(table, min_dead_ratio, min_dead_tuples):
    """``(reason, detail)`` when the table does not need a VACUUM, else None."""
    dead, live = int(table["dead"] or 0), int(table["live"] or 0)
    ratio = dead_ratio(live, dead)
    figures = "%s dead of %s tuples (%s)" % (fmt_number(dead), fmt_number(live + dead), _pct(ratio))
    if dead < min_dead_tuples:
        return "dead_tuples", "%s: fewer than min_dead_tuples %s" % (figures, fmt_number(min_dead_tuples))
    if ratio < min_dead_ratio:
        return "dead_ratio", "%s: below min_dead_ratio %s" % (figures, _pct(min_dead_ratio))
    return None


def choose_tables(survey, wanted, resolve, db):
    """The tables to consider, in order.

    ``wanted`` entries are matched against ``schema.table`` written plainly (``sales
    dept.Q1 'totals'``) first, then read as SQL (``"sales dept"."Q1"``, or an
    unqualified name on the search_path) by ``resolve(name) -> oid``. An entry that is
    neither is an error naming it, raised before anything is vacuumed.
    """
    if not wanted:
        return sorted(survey, key=lambda t: (-int(t["dead"] or 0), t["schema"], t["name"]))
    by_plain = {}
    for table in survey:
        by_plain.setdefault(display_name(table["schema"], table["name"]), []).append(table)
    by_oid = dict((table["oid"], table) for table in survey)
    chosen, seen, missing = [], set(), []
    for raw in wanted:
        entry = str(raw)
        plain = by_plain.get(entry, [])
        table = plain[0] if len(plain) == 1 else by_oid.get(resolve(entry))
        if table is None:
            missing.append(entry)
        elif table["oid"] not in seen:
            seen.add(table["oid"])
            chosen.append(table)
    if missing:
        raise MaintenanceError(
            "tables: %s not found in database '%s' (or not a table/materialized view this role can see); "
            'write schema.table, e.g. public.orders or "my schema"."my table"'
            % (", ".join("'%s'" % m for m in missing), db)
        )
    return chosen


def describe_session(row):
    parts = ["pid %s" % row["pid"]] if row.get("pid") is not None else []
    parts.append("user %s" % row.get("user"))
    if row.get("application"):
        parts.append("application '%s'" % row["application"])
    if row.get("client"):
        parts.append("from %s" % row["client"])
    parts.append("state '%s'" % row.get("state"))
    parts.append("open for %s (%d s)" % (fmt_seconds(row.get("age")), int(row.get("age") or 0)))
    return ", ".join(parts)


def refusal_message(db, max_age, rows):
    return (
        "refusing to vacuum database '%s': %d transaction(s) open longer than max_xact_age %d s; VACUUM cannot "
        "remove dead rows such a transaction may still see. %s. End it (or run report with "
        "terminate_idle_in_transaction), or set max_xact_age: 0 to vacuum anyway"
        % (db, len(rows), max_age, "; ".join(describe_session(r) for r in rows))
    )


def _entry(table, action, reason=None, detail=None):
    return dict(
        table=display_name(table["schema"], table["name"]),
        schema=table["schema"],
        name=table["name"],
        action=action,
        reason=reason,
        detail=detail,
        seconds=0.0,
        dead_tuples_before=int(table["dead"] or 0),
        live_tuples_before=int(table["live"] or 0),
        dead_ratio=round(dead_ratio(table["live"], table["dead"]), 4),
        dead_tuples_after=None,
        removed=None,
        dead_not_removable=None,
    )


def _holders_text(holders):
    if not holders:
        return ""
    return " (held by %s)" % "; ".join(
        "pid %s user %s application '%s' %s" % (h["pid"], h.get("user"), h.get("application") or "", h["mode"])
        for h in holders
    )


def vacuum_one(session, table, entry, params, check_mode, remaining):
    """Vacuum (or, in check mode, probe) one table and fill in ``entry``.

    Returns True when the time budget ran out during it.
    """
    schema, name = table["schema"], table["name"]
    lock_timeout = params["lock_timeout"]
    try:
        if check_mode:
            notices = session.probe_lock(schema, name, lock_timeout, remaining)
        else:
            notices = session.vacuum(schema, name, params["analyze"], lock_timeout, remaining)
    except StatementError as exc:
        entry["action"] = SKIPPED
        if exc.code == LOCK_NOT_AVAILABLE:
            entry["reason"] = "lock_timeout"
            entry["detail"] = "lock not granted within lock_timeout %ss%s" % (
                lock_timeout,
                _holders_text(session.lock_holders(table["oid"])),
            )
            return False
        if exc.code == QUERY_CANCELED:
            entry["reason"] = "budget"
            entry["detail"] = "cancelled: time_budget %ss ran out during this table" % params["time_budget"]
            return True
        if exc.code == UNDEFINED_TABLE:
            entry["reason"] = "dropped"
            entry["detail"] = "the table was dropped during the run"
            return False
        if not session.alive:
            raise
        entry["reason"] = "error"
        entry["detail"] = exc.message
        return False
    refused = refusal_in(notices)
    if refused:
        entry.update(action=SKIPPED, reason="refused", detail="the server skipped it: %s" % refused)
        return False
    entry["action"] = VACUUMED
    if check_mode:
        entry["detail"] = "would be vacuumed (check mode; lock available)"
        return False
    removed, not_removable = parse_vacuum_verbose(notices)
    after = session.dead_tuples(table["oid"])
    entry["dead_tuples_after"] = after.get("dead")
    if removed is None and after.get("dead") is not None:
        removed = max(0, entry["dead_tuples_before"] - int(after["dead"]))
    entry["removed"] = removed
    entry["dead_not_removable"] = not_removable
    entry["detail"] = "%s tuples removed" % fmt_number(removed)
    if not_removable:
        entry["detail"] += ", %s dead but not yet removable (an older transaction still sees them)" % fmt_number(
            not_removable
        )
    return False


def run(session, params, check_mode=False, clock=time.monotonic, start=None):
    """The vacuum action. ``start`` is when the run began (the budget counts from it)."""
    start = clock() if start is None else start
    db = params["db"]
    result = dict(changed=False, tables=[], vacuumed=0, skipped=0, elapsed=0.0, budget_exhausted=False, warnings=[])

    max_age = params["max_xact_age"]
    if max_age:
        if not session.sees_all_sessions():
            result["warnings"].append(
                "login_user %s cannot see other users' transactions (grant it pg_monitor or pg_read_all_stats): "
                "the max_xact_age check sees only its own role's sessions" % params["login_user"]
            )
        blocking = session.long_transactions(max_age)
        if blocking:
            result["blocking_transactions"] = blocking
            result["elapsed"] = round(clock() - start, 3)
            raise MaintenanceError(refusal_message(db, max_age, blocking), result)

    survey = session.survey()
    tables = choose_tables(survey, params.get("tables") or [], session.resolve, db)

    budget = params["time_budget"] or 0
    exhausted = False
    for table in tables:
        entry = _entry(table, SKIPPED)
        result["tables"].append(entry)
        skip = threshold_skip(table, params["min_dead_ratio"], params["min_dead_tuples"])
        if skip:
            entry["reason"], entry["detail"] = skip
            continue
        if not table.get("can_vacuum", True):
            entry["reason"] = "permission"
            entry["detail"] = (
                "login_user %s is neither its owner nor the database owner nor a superuser" % (params["login_user"])
            )
            continue
        remaining = None
        if budget:
            remaining = budget - (clock() - start)
            if exhausted or remaining <= 0:
                exhausted = True
                entry["reason"] = "budget"
                entry["detail"] = "not reached: time_budget %ss used up" % budget
                continue
        began = clock()
        if vacuum_one(session, table, entry, params, check_mode, remaining):
            exhausted = True
        entry["seconds"] = round(clock() - began, 3)
        if entry["reason"] == "error":
            result["warnings"].append("%s: %s" % (entry["table"], entry["detail"]))

    result["vacuumed"] = sum(1 for e in result["tables"] if e["action"] == VACUUMED)
    result["skipped"] = len(result["tables"]) - result["vacuumed"]
    result["changed"] = result["vacuumed"] > 0
    result["budget_exhausted"] = exhausted
    result["elapsed"] = round(clock() - start, 3)
    result["msg"] = summary(db, result, check_mode)
    return result


def summary(db, result, check_mode):
    reasons = {}
    for entry in result["tables"]:
        if entry["action"] == SKIPPED:
            reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    text = "%s %d of %d table(s) of database '%s'" % (
        "would vacuum" if check_mode else "vacuumed",
        result["vacuumed"],
        len(result["tables"]),
        db,
    )
    if reasons:
        text += "; skipped: %s" % ", ".join("%d %s" % (n, r) for r, n in sorted(reasons.items()))
    if not check_mode:
        text += "; %s tuples removed" % fmt_number(sum(e["removed"] or 0 for e in result["tables"]))
    text += " in %ss" % result["elapsed"]
    if result["budget_exhausted"]:
        text += " (time budget exhausted)"
    return text
