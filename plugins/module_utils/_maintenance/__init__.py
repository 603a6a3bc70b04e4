# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL maintenance with guard rails: VACUUM (ANALYZE) per table, and a health report.

``spec``     options, their checks, the error type, names and text helpers
``session``  every statement sent to the server (one psycopg2 connection, autocommit)
``vacuum``   which tables to vacuum, the long-transaction guard, lock timeout, time budget
``report``   slow queries, sequential scans, unused and invalid indexes, connections,
             REINDEX CONCURRENTLY of invalid indexes, ending idle-in-transaction sessions
``main``     run(params, check_mode): what the module calls
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
