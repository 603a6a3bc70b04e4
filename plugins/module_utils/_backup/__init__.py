# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical PostgreSQL backups that are proven: dump, verify, manifest, retention, restore, drill.

``layout``     names, manifests and the backup directory's contents
``tools``      client programs, versions, compression plans, the command runner
``pipeline``   processes connected by pipes, every exit code checked
``dump``       postgresql_dump: preflight, dump, verify, rename, manifest, metrics
``retention``  which backups to keep and which to delete
``restore``    postgresql_restore: checksum, restore into a staging database, swap, drill
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
