#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_maintenance
short_description: VACUUM with guard rails, and a database health report with opt-in repairs
version_added: 0.1.0
description:
  - O(action=vacuum) runs C(VACUUM (VERBOSE, ANALYZE)) table by table, only on tables that
    need it (dead tuples at least O(min_dead_tuples) and a dead ratio of at least
    O(min_dead_ratio)), each with O(lock_timeout) so that a table locked by someone else is
    skipped instead of queueing (and blocking every session behind the VACUUM), within a
    total O(time_budget). It refuses to start while a transaction older than
    O(max_xact_age) is open in the database, naming it. Each table is reported with what
    was done or why it was skipped.
  - O(action=report) lists the slowest queries (pg_stat_statements), tables scanned
    sequentially more often than by index, indexes never used, invalid indexes and
    connection usage. With O(reindex_invalid=true) it rebuilds invalid indexes with
    C(REINDEX INDEX CONCURRENTLY); with O(terminate_idle_in_transaction) above 0 it ends
    sessions idle in a transaction longer than that.
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.postgres
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [vacuum, report]
  db:
    description: Database to work on.
    type: str
    required: true
  tables:
    description:
      - Tables (or materialized views) to consider for O(action=vacuum), vacuumed in this
        order. Each is V(schema.table) written plainly, as the names are (V(sales dept.Q1 totals)),
        or as SQL with double-quoted identifiers (V("sales dept"."Q1 totals"), a double quote
        inside a name doubled); an unqualified name is looked up on the search path.
      - Empty means every table of the database outside the system schemas, most dead
        tuples first.
      - A name that matches no table fails the task before anything is vacuumed.
    type: list
    elements: str
    default: []
  analyze:
    description: Run C(VACUUM (ANALYZE)), refreshing the planner's statistics too.
    type: bool
    default: true
  min_dead_ratio:
    description:
      - Skip a table whose dead tuples are less than this share of its tuples
        (C(n_dead_tup / (n_live_tup + n_dead_tup)) from C(pg_stat_all_tables)). 0 to 1.
    type: float
    default: 0.1
  min_dead_tuples:
    description: Skip a table with fewer dead tuples than this.
    type: int
    default: 1000
  lock_timeout:
    description:
      - Seconds VACUUM (and a rebuild of O(reindex_invalid)) may wait for its table lock.
        A table whose lock is not granted in time is skipped with reason V(lock_timeout),
        naming the sessions that hold a conflicting lock; the other tables are still done.
    type: float
    default: 5
  time_budget:
    description:
      - Seconds for the whole vacuum run, counted from the start of the task. A VACUUM
        still running when the budget ends is cancelled (its table is reported skipped with
        reason V(budget)), and so are the tables not reached. V(0) means no limit.
    type: float
    default: 1800
  max_xact_age:
    description:
      - Refuse to vacuum (the task fails) while a transaction in O(db) has been open longer
        than this many seconds, or a prepared transaction is older than that. The message
        names each one (pid, user, application, client, state, age). V(0) skips the check.
      - Use a O(login_user) with C(pg_monitor) (or a superuser). Other roles see only their
        own sessions' transactions, and the module warns about that.
    type: int
    default: 3600
  top:
    description: How many slow queries and sequentially scanned tables O(action=report) lists.
    type: int
    default: 10
  slow_queries_by:
    description: Order of the slow queries, by total or by mean execution time.
    type: str
    default: total_time
    choices: [total_time, mean_time]
  seq_scan_min_rows:
    description:
      - Tables with fewer live rows than this are left out of RV(seq_scan_tables);
        scanning a small table sequentially is the right plan.
    type: int
    default: 1000
  reindex_invalid:
    description:
      - Rebuild every invalid index with C(REINDEX INDEX CONCURRENTLY) (O(action=report)).
      - An index being built right now, and the leftovers of an interrupted
        C(REINDEX CONCURRENTLY) (names ending in C(_ccnew) or C(_ccold)), are not rebuilt.
      - A failed rebuild is a warning and an entry of RV(reindex_failed); the invalid
        C(_ccnew) index it leaves behind is dropped.
    type: bool
    default: false
  terminate_idle_in_transaction:
    description:
      - Above 0, O(action=report) ends (C(pg_terminate_backend)) every session of O(db)
        that has been idle in a transaction for longer than this many seconds. Never its
        own session. V(0) ends nothing.
    type: int
    default: 0
notes:
  - VACUUM and C(REINDEX CONCURRENTLY) cannot run in a transaction block; the module uses
    an autocommit connection.
  - Dead tuple counts come from the statistics views, which are updated asynchronously
    (within about a second of a transaction's end); RV(tables[].removed) comes from the
    VACUUM VERBOSE output.
  - Check mode runs the same steps but, in place of VACUUM or REINDEX, takes the same table
    lock (with O(lock_timeout)) in a transaction it rolls back, so the tables and indexes it
    reports are those a real run would do. It cannot predict budget skips, as it does not
    know how long a VACUUM would take. It ends no session.
  - The login role must own the tables (or the database), or be a superuser, to vacuum
    them; other tables are skipped with reason V(permission).
  - Only transactions in the same database count against O(max_xact_age); since PostgreSQL 14 a
    transaction in another database does not hold back this one's cleanup.
  - In a report, sessions are ended (O(terminate_idle_in_transaction)) before invalid indexes are
    rebuilt, as they would make C(REINDEX CONCURRENTLY) wait.
requirements:
  - PostgreSQL 12 or later (C(REINDEX CONCURRENTLY))
seealso:
  - module: bosun.platform.health_check
attributes:
  check_mode:
    support: partial
    details:
      - Predicts what a real run would vacuum, rebuild and end, but not the tables a real run
        skips for O(time_budget).
  diff_mode:
    support: none
    details: No diff is produced.
  action_group:
    support: full
    membership:
      - bosun.platform.postgres
  platform:
    support: full
    platforms: posix
"""

EXAMPLES = r"""
- name: Nightly vacuum of the tables that need it, within half an hour
  bosun.platform.postgresql_maintenance:
    action: vacuum
    db: app
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    time_budget: 1800
  register: vacuum_run

- name: Vacuum two busy tables even when little is dead, waiting at most 2 s for a lock
  bosun.platform.postgresql_maintenance:
    action: vacuum
    db: app
    tables: [public.orders, public.sessions]
    min_dead_ratio: 0.01
    min_dead_tuples: 100
    lock_timeout: 2

- name: Weekly report; rebuild invalid indexes and end sessions idle in a transaction for 10 minutes
  bosun.platform.postgresql_maintenance:
    action: report
    db: app
    top: 20
    reindex_invalid: true
    terminate_idle_in_transaction: 600
  register: db_report
"""

RETURN = r"""
msg:
  description: One line saying what was done (or would be, in check mode).
  returned: always
  type: str
  sample: "vacuumed 2 of 5 table(s) of database 'app'; skipped: 3 dead_ratio; 81,200 tuples removed in 3.41s"
tables:
  description:
    - Per table, in the order they were considered (O(action=vacuum)).
    - In check mode a table that would be vacuumed has RV(tables[].action=vacuumed), seconds
      of the lock probe and no after/removed figures.
  returned: action is vacuum
  type: list
  elements: dict
  contains:
    table:
      description: C(schema.table), names as they are (not quoted).
      type: str
    schema:
      description: Schema name.
      type: str
    name:
      description: Table name.
      type: str
    action:
      description: V(vacuumed) or V(skipped).
      type: str
    reason:
      description:
        - Why it was skipped; null when vacuumed. V(dead_tuples) or V(dead_ratio) (below a
          threshold), V(lock_timeout), V(budget), V(permission) (the login role may not
          vacuum it), V(refused) (the server skipped it with a warning), V(dropped),
          V(error) (also a warning).
      type: str
    detail:
      description: The same for a human, with the figures.
      type: str
    seconds:
      description: Time spent on the table.
      type: float
    dead_tuples_before:
      description: C(n_dead_tup) before.
      type: int
    live_tuples_before:
      description: C(n_live_tup) before.
      type: int
    dead_ratio:
      description: Dead share of the tuples before (0 to 1).
      type: float
    dead_tuples_after:
      description: C(n_dead_tup) read again after VACUUM; null when not vacuumed.
      type: int
    removed:
      description:
        - Dead tuples VACUUM removed, from its VERBOSE output (from the drop of
          C(n_dead_tup) when that output could not be read); null when not vacuumed.
      type: int
    dead_not_removable:
      description: Dead tuples VACUUM could not remove yet (an older transaction may still see them).
      type: int
  sample:
    - table: public.orders
      schema: public
      name: orders
      action: vacuumed
      reason: null
      detail: 8,000 tuples removed
      seconds: 0.412
      dead_tuples_before: 8000
      live_tuples_before: 2000
      dead_ratio: 0.8
      dead_tuples_after: 0
      removed: 8000
      dead_not_removable: 0
vacuumed:
  description: Number of tables vacuumed (would be, in check mode).
  returned: action is vacuum
  type: int
skipped:
  description: Number of tables skipped.
  returned: action is vacuum
  type: int
elapsed:
  description: Seconds the run took.
  returned: success
  type: float
budget_exhausted:
  description: Whether O(time_budget) ran out before every table was done.
  returned: action is vacuum
  type: bool
blocking_transactions:
  description: The transactions that made the module refuse (pid, user, application, client, state, age in seconds).
  returned: when the vacuum was refused because of O(max_xact_age)
  type: list
  elements: dict
slow_queries:
  description:
    - The O(top) statements of O(db) from pg_stat_statements by O(slow_queries_by); query
      texts are masked (password literals) and cut at 1000 characters.
    - Empty (and a RV(notes) entry) when pg_stat_statements is not installed in O(db).
  returned: action is report
  type: list
  elements: dict
  sample:
    - queryid: "-2382638726162717652"
      user: app
      calls: 1200
      total_ms: 5321.12
      mean_ms: 4.434
      rows: 1200
      query: SELECT * FROM orders WHERE customer = $1
seq_scan_tables:
  description:
    - Tables with at least O(seq_scan_min_rows) live rows scanned sequentially more often
      than by index, most rows read first (at most O(top)).
  returned: action is report
  type: list
  elements: dict
  sample:
    - table: public.orders
      seq_scan: 420
      idx_scan: 3
      seq_tup_read: 84000000
      live_tuples: 200000
      size_bytes: 44040192
unused_indexes:
  description:
    - Valid indexes never scanned since the statistics were reset, largest first. Indexes
      that enforce a constraint (primary key, unique, exclusion) are left out.
  returned: action is report
  type: list
  elements: dict
  sample:
    - index: public.orders_note_idx
      table: public.orders
      idx_scan: 0
      size_bytes: 8192
invalid_indexes:
  description:
    - Every invalid index of O(db), as found at the start of the run.
    - C(outcome) is V(reported) (O(reindex_invalid) false), V(rebuilt)
      (would be, in check mode), V(failed), V(building) (a build is in progress) or
      V(leftover) (of an interrupted REINDEX CONCURRENTLY; drop it).
  returned: action is report
  type: list
  elements: dict
  sample:
    - index: public.orders_code_key
      table: public.orders
      size_bytes: 16384
      definition: CREATE UNIQUE INDEX orders_code_key ON public.orders USING btree (code)
      building: false
      leftover: false
      outcome: reported
connections:
  description: Client connections of the server (all databases).
  returned: action is report
  type: dict
  contains:
    used:
      description: Client backends.
      type: int
    max:
      description: C(max_connections).
      type: int
    reserved:
      description: C(superuser_reserved_connections).
      type: int
    usage_ratio:
      description: RV(connections.used) / RV(connections.max).
      type: float
    by_state:
      description: Client backends per state (V(active), V(idle), V(idle in transaction) ...).
      type: dict
  sample:
    used: 12
    max: 100
    reserved: 3
    usage_ratio: 0.12
    by_state: {active: 1, idle: 10, idle in transaction: 1}
reindexed:
  description: Indexes rebuilt (would be, in check mode) with their definition and seconds.
  returned: action is report
  type: list
  elements: dict
reindex_failed:
  description: Rebuilds that failed, with the error and the leftover indexes dropped (C(cleaned_up)).
  returned: action is report
  type: list
  elements: dict
terminated:
  description:
    - Sessions ended (would be, in check mode) for being idle in a transaction longer than
      O(terminate_idle_in_transaction); pid, user, application, client, state,
      idle_seconds, xact_age. No query text.
  returned: action is report
  type: list
  elements: dict
notes:
  description:
    - Things a reader of the report should know (pg_stat_statements missing, limited
      visibility, rebuilds not attempted).
  returned: action is report
  type: list
  elements: str
"""

from ansible_collections.bosun.platform.plugins.module_utils._maintenance.main import run
from ansible_collections.bosun.platform.plugins.module_utils._maintenance.spec import (
    MaintenanceError,
    argument_spec,
)
from ansible_collections.bosun.platform.plugins.module_utils._module import run_module


def work(module):
    return run(module.params, check_mode=module.check_mode)


def main():
    run_module(argument_spec(), work, supports_check_mode=True, errors=(MaintenanceError,))


if __name__ == "__main__":
    main()
