#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_dump
short_description: Verified, atomic PostgreSQL logical backups with retention and metrics
version_added: 0.1.0
description:
  - Dumps one database, or every database plus the globals (roles, tablespaces) with
    C(pg_dumpall --globals-only), into O(backup_dir) as
    C(<database>/<UTC timestamp>[-<label>].<ext>), with a manifest C(.manifest.json) beside
    each backup (database, server version, format, compression, size, sha256, start, end,
    duration, label, verified).
  - Each backup is written under a temporary name in the same directory, fsynced, verified
    (C(pg_restore --list) succeeds and lists every table the database had) and only then
    renamed to its final name. A failed or interrupted dump never leaves a file that looks
    like a backup; temporary files left by a crashed run are removed by the next run.
  - Before dumping, the free space of the backup filesystem is compared with an estimate
    (the size of the tables' data, C(pg_table_size), times the size ratio of the last
    verified backup, or 0.5 before the first one) and the run is refused when it is short.
  - Retention (O(keep_last), O(keep_days), O(keep_min_verified)) runs after the new backup
    is verified, or alone with O(dump=false). The newest verified backup is never deleted,
    and an unverified or corrupt backup (size or sha256 differing from its manifest) never
    counts as a copy.
  - Compression C(zstd) or C(lz4) uses C(pg_dump --compress) where the client supports the
    method (PostgreSQL 16 and later); with an older client the custom-format dump is
    streamed through the compressor, with the exit codes of both programs checked. No
    shell is involved and the password is never on a command line.
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.postgres
  - bosun.platform.backup
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  db:
    description:
      - Name of the database to dump. Any name works, including spaces and quotes.
      - Mutually exclusive with O(all_databases); one of the two is required.
      - With O(dump=false), the database whose backups retention applies to.
    type: str
  all_databases:
    description:
      - Dump every database that accepts connections (templates excepted), one backup each,
        and the globals (roles with their password hashes, tablespaces) into C(_globals/).
      - Needs a superuser to read the role passwords.
      - With O(dump=false), apply retention to every database directory in O(backup_dir).
    type: bool
    default: false
  maintenance_db:
    description: Database to connect to for the list of databases and for the globals.
    type: str
    default: postgres
  backup_dir:
    description:
      - Directory holding one sub-directory per database. Created (mode 0700) when missing.
      - Backups and manifests are written with mode 0600.
    type: path
    required: true
  format:
    description:
      - C(custom) is one file (C(pg_dump -Fc)); C(directory) is a directory of files that
        C(pg_dump) can write, and C(pg_restore) read, with several O(jobs).
    type: str
    default: custom
    choices: [custom, directory]
  jobs:
    description: Parallel C(pg_dump) jobs; more than 1 needs O(format=directory).
    type: int
    default: 1
  compression:
    description:
      - V(auto) is V(zstd) where available (C(pg_dump) 16 or later, or the C(zstd) program
        with the custom format), else V(gzip).
      - V(zstd) and V(lz4) with the directory format need C(pg_dump) 16 or later.
      - V(gzip) always uses C(pg_dump)'s own compression.
    type: str
    default: auto
    choices: [auto, zstd, lz4, gzip, none]
  compression_level:
    description:
      - Compression level. Default 1 for V(zstd) (1-19) and V(lz4) (1-12), 6 for V(gzip) (0-9).
    type: int
  compression_threads:
    description: Threads of a streamed V(zstd) compressor; V(0) is one per CPU.
    type: int
    default: 0
  verify:
    description:
      - How each new backup is checked before it is published. The same option as
        O(bosun.platform.postgresql_basebackup#module:verify), where V(full) also reads every
        byte back.
    type: str
    default: list
    choices:
      list: C(pg_restore --list) reads the archive and shows every table of the database.
      full: >-
        Also reads every data block back (C(pg_restore -f /dev/null), and the compressor's own
        checksum test for streamed backups), which takes about as long as a restore without the
        database.
  dump:
    description: Set to V(false) to apply retention (and remove stale temp files) without dumping.
    type: bool
    default: true
  keep_last:
    description:
      - Keep the newest N verified backups of each database.
      - With neither O(keep_last) nor O(keep_days), nothing is deleted.
    type: int
  keep_days:
    description:
      - Keep every backup younger than this many days. With O(keep_last) too, a backup is
        kept when either rule keeps it.
    type: int
  keep_min_verified:
    description:
      - Whatever the other rules say, keep at least this many of the newest verified backups
        (at least 1, so the newest verified backup is never deleted).
    type: int
    default: 1
  metrics_dir:
    description:
      - Directory of the node_exporter textfile collector. Each run writes
        C(bosun_backup_<database>.prom) there atomically, on success and on failure.
      - "Metrics (labels C(database) and C(kind)): C(bosun_backup_last_status) (1 when the last run
        succeeded, 0 when it failed), C(bosun_backup_last_run_timestamp_seconds),
        C(bosun_backup_last_success_timestamp_seconds) (when the newest verified backup finished,
        read from its manifest, so it survives failed runs), C(bosun_backup_last_size_bytes) and
        C(bosun_backup_last_duration_seconds) of the newest verified backup."
    type: path
  bin_dir:
    description:
      - Directory holding C(pg_dump), C(pg_restore) and C(pg_dumpall). By default they are
        looked up on E(PATH), then in the newest C(/usr/lib/postgresql/<version>/bin).
      - The client must be at least the server's major version.
    type: path
notes:
  - Check mode connects, checks versions and free space and predicts the backups, temp
    files and retention deletions a real run would make; it writes nothing.
  - The password reaches C(pg_dump) in its environment (E(PGPASSWORD)), never on its
    command line; inherited E(PG*) variables are ignored.
  - Two runs for the same database exclude each other with a lock file in its directory.
  - "Layout: database names are percent-encoded into one safe directory name each; extensions are
    C(.dump) (custom format), C(.dump.zst) and C(.dump.lz4) (custom format streamed through the
    compressor), C(.dir) (directory format) and C(.sql) (globals). Backups and manifests are mode
    0600, directories 0700. Names have one-second resolution; a second run in the same second
    waits for the next one."
  - With O(all_databases=true) a database that fails does not stop the others; the task fails at
    the end with one message per failed database, listed in RV(failed).
requirements:
  - pg_dump, pg_restore (and pg_dumpall for all_databases) of the server's major version or newer
  - zstd or lz4 programs to stream those compressions with a client older than PostgreSQL 16
seealso:
  - module: bosun.platform.postgresql_restore
attributes:
  check_mode:
    support: full
    details: Predicts exactly what a real run reports as changed.
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
- name: Nightly backup of the app database with 30 days of retention
  bosun.platform.postgresql_dump:
    db: app
    backup_dir: /var/backups/postgresql
    keep_days: 30
    keep_min_verified: 3
    metrics_dir: /var/lib/prometheus/node-exporter
    login_host: 10.0.0.5
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/bosun-ca.pem

- name: Every database plus roles, parallel directory format, keep the last 7
  bosun.platform.postgresql_dump:
    all_databases: true
    backup_dir: /var/backups/postgresql
    format: directory
    jobs: 4
    keep_last: 7

- name: A labelled backup before a migration, fully read back
  bosun.platform.postgresql_dump:
    db: app
    backup_dir: /var/backups/postgresql
    label: pre-migration
    verify: full

- name: Apply retention only
  bosun.platform.postgresql_dump:
    db: app
    backup_dir: /var/backups/postgresql
    dump: false
    keep_last: 14
"""

RETURN = r"""
backups:
  description: The backups written (in check mode, the backups a real run would write).
  returned: always
  type: list
  elements: dict
  contains:
    database:
      description: Database name (null for the globals).
      type: str
    kind:
      description: V(database) or V(globals).
      type: str
    path:
      description: Path of the backup file or directory.
      type: str
    manifest:
      description: Path of its manifest.
      type: str
    format:
      description: V(custom), V(directory) or V(plain) (globals).
      type: str
    compression:
      description: Compression method used.
      type: str
    size:
      description: Bytes written (absent in check mode).
      type: int
    sha256:
      description: sha256 of the file (a directory backup's digest over its files' checksums).
      type: str
    duration:
      description: Seconds for dump and verification.
      type: float
    verified:
      description: True once verified (null in check mode).
      type: bool
    estimate_bytes:
      description: The size estimate the free-space check used.
      type: int
  sample:
    - database: app
      kind: database
      path: /var/backups/postgresql/app/20250101T020000Z.dump.zst
      manifest: /var/backups/postgresql/app/20250101T020000Z.manifest.json
      format: custom
      compression: zstd
      size: 52428800
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      duration: 12.4
      verified: true
deleted:
  description: Backups deleted (or that check mode would delete) by retention.
  returned: always
  type: list
  elements: str
kept:
  description: Backups retention kept.
  returned: always
  type: list
  elements: str
corrupt:
  description: Backups that do not count as verified copies, with the reason.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/backups/postgresql/app/20250101T020000Z.dump.zst
      reason: sha256 0e5... differs from the manifest's 9f8...
stale_temp_files:
  description: Temporary files of an interrupted earlier run that were (or would be) removed.
  returned: always
  type: list
  elements: str
failed:
  description: Databases whose backup failed, with the message (the others still ran).
  returned: always
  type: list
  elements: dict
metrics_files:
  description: Textfile metrics written.
  returned: always
  type: list
  elements: str
commands:
  description: Command lines run (argv joined for display; no secret in them).
  returned: always
  type: list
  elements: str
server_version:
  description: Version of the server dumped.
  returned: when a dump ran
  type: str
client_version:
  description: Major version of pg_dump.
  returned: when a dump ran
  type: str
compression:
  description: The compression plan (method, level, and V(pg_dump) or V(stream)).
  returned: when a dump ran
  type: dict
backup_dir:
  description: Absolute path of the backup directory.
  returned: always
  type: str
"""

from ansible_collections.bosun.platform.plugins.module_utils._backup import dump, tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.job import backup_argument_spec
from ansible_collections.bosun.platform.plugins.module_utils._module import run_module
from ansible_collections.bosun.platform.plugins.module_utils._postgres import postgres_argument_spec


def argument_spec():
    return postgres_argument_spec(
        **backup_argument_spec(
            db=dict(type="str"),
            all_databases=dict(type="bool", default=False),
            maintenance_db=dict(type="str", default="postgres"),
            backup_dir=dict(type="path", required=True),
            format=dict(type="str", default="custom", choices=tools.FORMATS),
            jobs=dict(type="int", default=1),
            compression=dict(type="str", default="auto", choices=tools.COMPRESSIONS),
            compression_level=dict(type="int"),
            compression_threads=dict(type="int", default=0),
            verify=dict(type="str", default="list", choices=["list", "full"]),
            dump=dict(type="bool", default=True),
            keep_last=dict(type="int"),
            keep_days=dict(type="int"),
            keep_min_verified=dict(type="int", default=1),
            metrics_dir=dict(type="path"),
            bin_dir=dict(type="path"),
        )
    )


def main():
    run_module(argument_spec(), tools.module_work(dump.run), supports_check_mode=True)


if __name__ == "__main__":
    main()
