# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical PostgreSQL backups that are proven: dump, verify, manifest, retention, restore, drill.

``layout``     names, manifests and the backup directory's contents
``tools``      client programs, versions, compression plans, the command runner
``pipeline``   processes connected by pipes, every exit code checked
``job``        the run postgresql_dump and postgresql_basebackup share: lock, stale temp
               files, free space, name, retention, metrics; their common options
``dump``       postgresql_dump: preflight, dump, verify, rename, manifest, metrics
``basebackup`` postgresql_basebackup: pg_basebackup, pg_verifybackup, retention of WAL
``retention``  which backups to keep and which to delete
``restore``    postgresql_restore: choose (path, latest, label), checksum, restore into a
               staging database, swap, drill
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
