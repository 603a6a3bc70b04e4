#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_basebackup
short_description: Verified, atomic PostgreSQL base backups, with retention of backups and archived WAL
version_added: 0.1.0
description:
  - Takes a physical base backup of the whole cluster with C(pg_basebackup) (tar format,
    compressed, WAL streamed into the backup, a backup manifest with SHA256 checksums) into
    O(backup_dir) as C(<UTC timestamp>[-<label>].dir), with a manifest
    C(<UTC timestamp>[-<label>].manifest.json) beside it (server version, timeline, start
    and end LSN, the first WAL segment it needs, files with sizes and sha256, start, end,
    duration, verified).
  - The backup is written into a temporary directory beside its final name. With
    O(verify=full) (the default) its tar files are extracted into a second temporary directory and
    checked by C(pg_verifybackup) against the backup manifest (every file's checksum, and
    the WAL from start to end parsed); only then is it renamed to its final name. A failed
    or interrupted backup never leaves a directory that looks like a backup; temporary
    directories of a crashed run are removed by the next run.
  - With O(keep_last), the newest N verified base backups are kept (the newest verified one
    is never deleted, and an unverified or corrupt one never counts), and, with
    O(wal_archive_dir), archived WAL older than the first segment the oldest kept base
    backup needs is deleted. WAL that a kept backup needs is never deleted; timeline
    history files are always kept.
  - Recovery from these backups and the WAL archive is done by the C(bosun-wal recover)
    tool the C(bosun.platform.postgresql) role installs, and by the playbooks
    C(bosun.platform.restore_pitr) and C(bosun.platform.pitr_drill).
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.postgres
  - bosun.platform.backup
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  backup_dir:
    description:
      - Directory of the base backups. Created (mode 0700) when missing.
      - Must not be a directory that M(bosun.platform.postgresql_dump) applies retention to.
    type: path
    required: true
  wal_archive_dir:
    description:
      - The WAL archive (the C(--archive) directory of C(bosun-wal push)). Needed for the
        retention of archived WAL and for the archive metrics; without it no WAL is deleted.
    type: path
  take_backup:
    description:
      - Set to V(false) to apply retention (and remove stale temp directories) only.
      - The alias C(backup) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    default: true
    aliases: [backup]
  compression:
    description:
      - V(auto) is V(zstd). C(pg_basebackup) 15 compresses C(base.tar) with every method; the
        streamed WAL (C(pg_wal.tar)) is compressed only with V(gzip) and only on the client.
    type: str
    default: auto
    choices: [auto, zstd, lz4, gzip, none]
  compression_level:
    description: Compression level; default 1 (V(zstd) 1-22, V(lz4) 1-12, V(gzip) 1-9).
    type: int
  compression_location:
    description:
      - V(client) compresses in C(pg_basebackup); V(server) lets the server compress before
        sending (less traffic when the backup is taken over the network).
    type: str
    default: client
    choices: [client, server]
  checkpoint:
    description: V(fast) starts at once with an immediate checkpoint; V(spread) waits for a spread one.
    type: str
    default: fast
    choices: [fast, spread]
  verify:
    description:
      - How the new backup is checked before it is published, as
        O(bosun.platform.postgresql_dump#module:verify) is for dumps; a value means the same in
        both modules (V(full) reads every byte back).
      - The values V(true) and V(false) are the spellings of this option when it was a boolean;
        they are deprecated and will be removed in version 2.0.0 of the collection. Each run
        that uses one warns and names the value to write instead.
    type: str
    default: full
    choices:
      full: >-
        Extract the backup beside it and run C(pg_verifybackup) on the copy (every file's
        checksum, and the WAL from start to end parsed). Needs free space for the uncompressed
        cluster for the time of the check.
      none: Publish the backup without that check; its manifest records C(verify) as V(none).
      "true": Deprecated, the same as V(full).
      "false": Deprecated, the same as V(none).
  keep_last:
    description:
      - Keep the newest N verified base backups (at least 1) and the archived WAL they
        need. Without it, nothing is deleted.
    type: int
  metrics_dir:
    description:
      - Directory of the node_exporter textfile collector; C(bosun_basebackup.prom) is written
        there atomically on success and on failure.
      - "Metrics: C(bosun_basebackup_last_status), C(bosun_basebackup_last_run_timestamp_seconds),
        C(bosun_basebackup_last_success_timestamp_seconds), C(bosun_basebackup_last_size_bytes),
        C(bosun_basebackup_last_duration_seconds), C(bosun_basebackup_count),
        C(bosun_basebackup_oldest_recovery_point_timestamp_seconds) (the earliest point-in-time
        target), and with O(wal_archive_dir) C(bosun_wal_archive_bytes) and C(bosun_wal_archive_files)."
    type: path
  bin_dir:
    description:
      - Directory of C(pg_basebackup) and C(pg_verifybackup); by default E(PATH), then the
        newest C(/usr/lib/postgresql/<version>/bin).
    type: path
notes:
  - The login role needs the C(REPLICATION) attribute (or superuser) and a C(replication)
    line in C(pg_hba.conf); the C(bosun.platform.postgresql) role adds
    C(local replication postgres peer) when WAL archiving is enabled.
  - Check mode connects, checks the server's settings, the clients and the free space, and
    predicts the backup and the deletions a real run would make; it writes nothing. When
    the new backup would be the oldest kept one, the WAL deletions are predicted up to the
    server's current WAL segment (a real run starts at that segment or a later one).
  - The password reaches C(pg_basebackup) in its environment, never on its command line.
  - Tablespaces other than the default ones are not supported (the backup is refused).
  - The preflight refuses C(wal_level=minimal) and warns when C(archive_mode) is off (such a backup
    restores to its own end only).
  - With PostgreSQL 15 clients the streamed C(pg_wal.tar) is compressed only with client-side gzip
    (it stays a plain tar with zstd), and C(pg_verifybackup) reads plain-format backups only, hence
    the verification on an extracted temporary copy.
  - WAL retention deletes segments, C(.partial) and C(.backup) files, compared by position like
    C(pg_archivecleanup). When a kept backup's manifest does not say where it starts, no WAL is
    deleted and a warning says which.
requirements:
  - pg_basebackup and pg_verifybackup of the server's major version or newer
  - zstd or lz4 programs to verify backups compressed with them
seealso:
  - module: bosun.platform.postgresql_dump
attributes:
  check_mode:
    support: full
    details: Predicts what a real run reports as changed.
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
- name: Nightly base backup, keep 7 and the WAL they need
  bosun.platform.postgresql_basebackup:
    backup_dir: /var/backups/postgresql/_pitr/base
    wal_archive_dir: /var/backups/postgresql/_pitr/wal
    keep_last: 7
    metrics_dir: /var/lib/prometheus/node-exporter
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres

- name: A labelled base backup before an upgrade, compressed by the server
  bosun.platform.postgresql_basebackup:
    backup_dir: /var/backups/postgresql/_pitr/base
    label: pre-upgrade
    compression_location: server
    login_host: 10.0.0.5
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    ssl_mode: verify-full
    ca_cert: /etc/ssl/certs/bosun-ca.pem
"""

RETURN = r"""
backup:
  description: The base backup written (in check mode, the one a real run would write); null with O(take_backup=false).
  returned: always
  type: dict
  contains:
    path:
      description: Directory of the backup.
      type: str
    manifest:
      description: Path of its manifest.
      type: str
    size:
      description: Bytes of its files.
      type: int
    sha256:
      description: sha256 over its files' checksums.
      type: str
    start_lsn:
      description: Where the backup starts in the WAL.
      type: str
    end_lsn:
      description: Where it ends; the earliest point it can be recovered to.
      type: str
    start_wal:
      description: The first WAL segment the backup needs.
      type: str
    timeline:
      description: Timeline of the backup.
      type: int
    duration:
      description: Seconds for backup and verification.
      type: float
    verified:
      description: True once verified (null in check mode).
      type: bool
  sample:
    path: /var/backups/postgresql/_pitr/base/20250101T020000Z.dir
    manifest: /var/backups/postgresql/_pitr/base/20250101T020000Z.manifest.json
    size: 52428800
    start_lsn: 0/5000028
    end_lsn: 0/5000138
    start_wal: "000000010000000000000005"
    timeline: 1
    verified: true
deleted:
  description: Base backups deleted (or that check mode would delete) by retention.
  returned: always
  type: list
  elements: str
kept:
  description: Base backups retention kept.
  returned: always
  type: list
  elements: str
corrupt:
  description: Base backups that do not count as verified copies, with the reason.
  returned: always
  type: list
  elements: dict
wal_deleted:
  description: Archived WAL files deleted (or that check mode would delete).
  returned: always
  type: list
  elements: str
wal_kept_from:
  description: The first WAL file kept (the start of the oldest kept base backup); null when none was considered.
  returned: always
  type: str
stale_temp_files:
  description: Temporary directories of an interrupted earlier run that were (or would be) removed.
  returned: always
  type: list
  elements: str
metrics_files:
  description: Textfile metrics written.
  returned: always
  type: list
  elements: str
commands:
  description: Command lines run (no secret in them).
  returned: always
  type: list
  elements: str
compression:
  description: Method, level and location of the compression.
  returned: when a backup ran
  type: dict
server_version:
  description: Version of the server.
  returned: when a backup ran
  type: str
backup_dir:
  description: Absolute path of the backup directory.
  returned: always
  type: str
"""

from ansible_collections.bosun.platform.plugins.module_utils._backup import basebackup, tools
from ansible_collections.bosun.platform.plugins.module_utils._backup.job import backup_argument_spec
from ansible_collections.bosun.platform.plugins.module_utils._module import deprecated_alias, run_module
from ansible_collections.bosun.platform.plugins.module_utils._postgres import postgres_argument_spec


def argument_spec():
    return postgres_argument_spec(
        **backup_argument_spec(
            backup_dir=dict(type="path", required=True),
            wal_archive_dir=dict(type="path"),
            take_backup=dict(type="bool", default=True, **deprecated_alias("backup")),
            compression=dict(type="str", default="auto", choices=basebackup.COMPRESSIONS),
            compression_level=dict(type="int"),
            compression_location=dict(type="str", default="client", choices=basebackup.LOCATIONS),
            checkpoint=dict(type="str", default="fast", choices=["fast", "spread"]),
            verify=dict(type="str", default="full", choices=basebackup.VERIFY_CHOICES + list(basebackup.VERIFY_FORMER)),
            keep_last=dict(type="int"),
            metrics_dir=dict(type="path"),
            bin_dir=dict(type="path"),
        )
    )


def main():
    run_module(
        argument_spec(),
        tools.module_work(basebackup.run, dict(verify=basebackup.VERIFY_FORMER)),
        supports_check_mode=True,
    )


if __name__ == "__main__":
    main()
