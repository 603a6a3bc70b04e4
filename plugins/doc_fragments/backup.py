# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Options shared by postgresql_dump and postgresql_basebackup with one meaning and one
    # default (module_utils/_backup/job.py, BACKUP_COMMON_ARGS).
    DOCUMENTATION = r"""
options:
  label:
    description:
      - Added to the backup's name after its UTC timestamp (C(20250101T020000Z-<label>) and the
        extension) and to its manifest.
      - 1-64 letters, digits, C(_) or C(-), not starting with C(-).
    type: str
  retention_checksums:
    description:
      - Read the sha256 of each backup (of each of its files, for a directory) that retention
        counts as a verified copy. V(false) compares sizes only (faster with large backups,
        blind to flipped bytes).
    type: bool
    default: true
  space_reserve_mb:
    description: Free space, in MiB, that must remain on the backup filesystem after the estimated backup.
    type: int
    default: 64
  dir_lock_timeout:
    description:
      - Seconds to wait when another run holds the lock of the backup directory (a database's
        directory, for M(bosun.platform.postgresql_dump)); V(0) fails at once.
      - The alias C(lock_timeout) is deprecated and will be removed in version 2.0.0 of the
        collection. In the same action group it would mean two things, as
        O(bosun.platform.postgresql_maintenance#module:lock_timeout) is PostgreSQL's C(lock_timeout).
    type: int
    default: 0
    aliases: [lock_timeout]
"""
