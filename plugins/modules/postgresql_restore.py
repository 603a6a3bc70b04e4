#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_restore
short_description: Restore a checked PostgreSQL backup, or run a restore drill
version_added: 0.1.0
description:
  - Restores a backup written by M(bosun.platform.postgresql_dump), chosen by path, as the
    newest backup of a database (V(latest)), or as the newest verified backup of a database
    that carries a label (O(label)), after checking its size and sha256 against its
    manifest. A backup that does not match is refused, naming the file.
  - The backup is restored into a new staging database first, with C(--exit-on-error) and
    C(--single-transaction) (one job) or C(--jobs). Only when that succeeded does it take
    the target's name. The target is a new database by default; replacing an existing one
    needs O(replace_existing=true), and the old database is dropped only after the new one is in place.
    The renames happen in one transaction. A failed restore leaves an existing target as it was.
  - The database's own privileges (C(GRANT)/C(REVOKE) on the database, such as
    C(REVOKE CONNECT FROM PUBLIC)), its C(ALTER DATABASE ... SET) and
    C(ALTER ROLE ... IN DATABASE ... SET) settings, connection limit and comment are read from
    the archive (pg_dump stores them in entries pg_restore applies only with C(--create)),
    aimed at the restored database and applied before it takes the target's name. The
    restored database ends with the same ACL and settings as the one dumped.
  - The staging database (C(bosun_restore_<random>)) is created from C(template0) with the
    source's encoding, collation, ctype, ICU locale and owner, as recorded in the manifest.
  - Staging, scratch and replaced databases (C(bosun_restore_*), C(bosun_drill_*),
    C(bosun_replaced_*)) carry a marker comment; a database with such a name but no marker is
    reported and never touched. A C(bosun_replaced_*) database is dropped only once the target
    name exists again, as it may be the only copy. A run that died (kill -9,
    lost connection) leaves them, and its temporary files, behind; the next run reports them
    (RV(leftover_databases), RV(stale_temp_files)) and removes those that are its own and not
    in use by a running restore.
  - With O(drill=true), the backup is restored into a scratch database, checked (the number
    of tables matches the backup's, named tables exist, row counts reach minimums, extra SQL
    returns true), and the scratch database is dropped. The restore duration is returned
    (the recovery time this backup gives) and written to textfile metrics.
  - Globals backups (roles, tablespaces) are refused. They belong to a new server's set-up
    and are replayed by hand (see the collection's docs/backup-restore.md).
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.postgres
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  backup:
    description:
      - Path of the backup (file or directory, or its manifest), or V(latest) for the newest
        backup of O(db) in O(backup_dir). V(latest) does not skip a newer backup that fails
        its checksum; it refuses, so that a corrupt newest backup is noticed.
      - A path is mutually exclusive with O(label).
    type: str
    default: latest
  label:
    description:
      - Restore the newest backup of O(db) in O(backup_dir) whose manifest carries this label
        (the O(bosun.platform.postgresql_dump#module:label) it was taken with, such as
        V(pre-migration)) and says it was verified when written. Backups with another label or
        none, and unverified ones, are passed over.
      - The backup chosen is then checked against its checksum like any other, and refused when
        it does not match (an older one is not taken instead, so that the corruption is noticed).
      - When no such backup exists the task fails, naming the database, the label and the
        directory, and changes nothing.
      - Needs O(backup_dir) and O(db); mutually exclusive with a path in O(backup).
    type: str
  backup_dir:
    description:
      - Backup directory of M(bosun.platform.postgresql_dump); needed with O(backup=latest) and
        with O(label).
    type: path
  db:
    description:
      - Database whose newest backup O(backup=latest) or O(label) picks.
      - Also the default O(target_db) is the database the backup was taken from.
    type: str
  target_db:
    description:
      - Database to restore into; default the backup's own database. Not used by drills.
    type: str
  replace_existing:
    description:
      - Replace O(target_db) when it exists. Without it, an existing target is refused.
      - The alias C(force) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    default: false
    aliases: [force]
  owner:
    description:
      - Owner of the restored database. Default the owner recorded in the manifest when that
        role exists, else O(login_user).
    type: str
  no_owner:
    description: Do not restore object ownership (C(pg_restore --no-owner)); objects belong to O(login_user).
    type: bool
    default: false
  jobs:
    description:
      - Parallel C(pg_restore) jobs. With 1, the restore runs in a single transaction.
      - A streamed (zstd or lz4 compressed custom) backup is first decompressed into
        O(work_dir) for more than one job, or restored with one job from the stream when
        O(work_dir) lacks room.
    type: int
    default: 1
  work_dir:
    description:
      - Directory for a decompressed copy with O(jobs) > 1; default the backup's directory.
      - Restore temp files left there by a run that died are removed at the start of a run.
    type: path
  maintenance_db:
    description: Database to connect to for creating, renaming and dropping databases.
    type: str
    default: postgres
  drill:
    description: Restore into a scratch database, run the checks, drop it and report.
    type: bool
    default: false
  drill_tables:
    description: Tables (optionally schema-qualified) that must exist after a drill's restore.
    type: list
    elements: str
    default: []
  drill_min_rows:
    description: Table name to the number of rows it must have at least, after a drill's restore.
    type: dict
    default: {}
  drill_sql:
    description:
      - Queries run (read-only) in the drill's database; each must return one row whose first
        column is true.
    type: list
    elements: str
    default: []
  metrics_dir:
    description:
      - Directory of the node_exporter textfile collector. A drill writes
        C(bosun_restore_drill_<database>.prom) there atomically, on success and on failure.
      - "Metrics (label C(database)): C(bosun_restore_drill_last_status) (1 or 0),
        C(bosun_restore_drill_last_run_timestamp_seconds),
        C(bosun_restore_drill_last_success_timestamp_seconds) (kept from the previous file when a
        drill fails), C(bosun_restore_drill_restore_seconds) and
        C(bosun_restore_drill_backup_age_seconds)."
    type: path
  bin_dir:
    description:
      - Directory holding C(pg_restore); by default E(PATH), then the newest
        C(/usr/lib/postgresql/<version>/bin). Must be at least the version that wrote the backup.
    type: path
notes:
  - Check mode checks the backup's checksum, the tools, the connection and whether the target
    exists, and reports C(changed) as a real run would; it creates nothing.
  - A drill leaves the server as it found it and reports C(changed=false), unless it removed
    what an earlier run left behind.
  - Re-creating per-role settings (C(ALTER ROLE ... IN DATABASE)) and grants made by a role
    other than the owner needs a superuser O(login_user); without the privilege the restore
    fails before the target is touched. Roles named in them must exist.
  - A database-level statement of another form than those pg_dump writes for the database's
    ACL, settings, comment and security labels is not run; a warning names its keywords.
requirements:
  - pg_restore of at least the version that wrote the backup
  - zstd or lz4 for backups streamed through those compressors
seealso:
  - module: bosun.platform.postgresql_dump
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
- name: Restore the newest backup of app into a new database app_restored
  bosun.platform.postgresql_restore:
    db: app
    backup_dir: /var/backups/postgresql
    target_db: app_restored

- name: Roll app back to the backup taken before a migration (the newest one labelled so)
  bosun.platform.postgresql_restore:
    db: app
    backup_dir: /var/backups/postgresql
    label: pre-migration
    replace_existing: true

- name: Replace app with a chosen backup (the playbook takes a safety dump first)
  bosun.platform.postgresql_restore:
    backup: /var/backups/postgresql/app/20250101T020000Z.dump.zst
    replace_existing: true
    jobs: 4

- name: Monthly restore drill
  bosun.platform.postgresql_restore:
    db: app
    backup_dir: /var/backups/postgresql
    drill: true
    drill_tables: [public.orders, public.customers]
    drill_min_rows:
      public.orders: 1000
    drill_sql:
      - SELECT max(created_at) > now() - interval '2 days' FROM public.orders
    metrics_dir: /var/lib/prometheus/node-exporter
"""

RETURN = r"""
backup:
  description: The backup chosen, and what its manifest says.
  returned: when a backup was found
  type: dict
  contains:
    path:
      description: Path of the backup.
      type: str
    manifest:
      description: Path of its manifest.
      type: str
    timestamp:
      description: When the backup was taken, from its name (ISO 8601, UTC).
      type: str
    label:
      description: Label in the backup's name (null without one).
      type: str
    selected_by:
      description:
        - How the backup was chosen. V(path) (named by O(backup)), V(latest) (the newest of
          O(db)) or V(label) (the newest verified one of O(db) with O(label)).
      type: str
    database:
      description: Database it was taken from.
      type: str
    sha256:
      description: Checksum that was checked.
      type: str
    finished:
      description: When the backup finished (ISO 8601, UTC).
      type: str
target_db:
  description: Database restored into (the scratch database for a drill).
  returned: when a database backup was restored or checked
  type: str
target_exists:
  description: Whether the target existed before (always false for a drill).
  returned: when a database backup was restored or checked
  type: bool
replaced:
  description: Whether an existing database was (or would be) replaced.
  returned: when a database backup was restored or checked
  type: bool
restore_seconds:
  description: Seconds the restore itself took (for a drill, the recovery time measured).
  returned: after a restore ran
  type: float
jobs:
  description: pg_restore jobs used.
  returned: after a database restore ran
  type: int
checks:
  description: Drill checks with their outcome.
  returned: after a drill's restore
  type: list
  elements: dict
  sample:
    - check: table count
      ok: true
      detail: 12 tables restored, 12 in the backup
    - check: rows of public.orders
      ok: true
      detail: 150000 rows, at least 1000 wanted
drill_database:
  description: Name of the scratch database of a drill (dropped at the end).
  returned: when drill is true
  type: str
database_properties:
  description:
    - How many of the backup's database-level statements are (or would be) applied to the
      restored database, by kind. C(settings) counts C(ALTER DATABASE ... SET) and the
      connection limit.
  returned: when a database backup was restored or checked
  type: dict
  sample: {privileges: 2, settings: 2, role_settings: 1, comment: 1, security_labels: 0}
leftover_databases:
  description:
    - Databases named like this module's staging, scratch or replaced databases, found before
      the restore. C(ours) says whether the marker comment proves this module made them;
      C(removed) whether they were (in check mode, would be) dropped, and C(reason) why or why not.
      A replaced database whose original name no longer exists is kept (it may be the only copy).
  returned: when a database backup was restored or checked
  type: list
  elements: dict
  sample:
    - name: bosun_restore_3f2a9c1b7e
      kind: staging
      target: app
      ours: true
      removed: true
      reason: left by a restore that did not finish
stale_temp_files:
  description:
    - Temporary files (decompressed copies for parallel restore) that a run which died left in
      the work directory, removed (in check mode, to be removed). Files a running restore holds
      are never touched.
  returned: when a database backup was restored or checked
  type: list
  elements: str
drill_database_dropped:
  description: Whether the drill's scratch database was dropped.
  returned: after a drill's restore
  type: bool
metrics_file:
  description: Textfile metrics written by a drill.
  returned: when drill is true and metrics_dir is set
  type: str
commands:
  description: Command lines run (argv joined for display; no secret in them).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.bosun.platform.plugins.module_utils._backup import restore, tools
from ansible_collections.bosun.platform.plugins.module_utils._module import deprecated_alias, run_module
from ansible_collections.bosun.platform.plugins.module_utils._postgres import postgres_argument_spec


def argument_spec():
    return postgres_argument_spec(
        backup=dict(type="str", default="latest"),
        label=dict(type="str"),
        backup_dir=dict(type="path"),
        db=dict(type="str"),
        target_db=dict(type="str"),
        replace_existing=dict(type="bool", default=False, **deprecated_alias("force")),
        owner=dict(type="str"),
        no_owner=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        work_dir=dict(type="path"),
        maintenance_db=dict(type="str", default="postgres"),
        drill=dict(type="bool", default=False),
        drill_tables=dict(type="list", elements="str", default=[]),
        drill_min_rows=dict(type="dict", default={}),
        drill_sql=dict(type="list", elements="str", default=[]),
        metrics_dir=dict(type="path"),
        bin_dir=dict(type="path"),
    )


def main():
    run_module(argument_spec(), tools.module_work(restore.run), supports_check_mode=True)


if __name__ == "__main__":
    main()
