#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: elasticsearch_maintenance
short_description: Clean up old Elasticsearch indices with a snapshot first, force-merge, shard report
version_added: 0.1.0
description:
  - O(action=cleanup) deletes the indices that match O(patterns) and are older than
    O(older_than_days), counted from their creation date or from a date in their name
    (O(age_from)). With O(snapshot_repository) it first takes a snapshot of exactly those
    indices, waits for it, and deletes nothing unless the snapshot ended C(SUCCESS) holding
    every one of them; O(snapshot_keep_last) then prunes older cleanup snapshots.
  - Cleanup never deletes the write index of an alias (C(is_write_index=true), or the only
    index of an alias that sets C(is_write_index) on none of its indices), a backing index of
    a data stream, or a system index. Those are returned in RV(kept) with the reason, as are
    the indices not old enough.
  - Two guards fail the task before anything is deleted or snapshotted - a pattern whose every
    matching index would be deleted (unless O(allow_delete_all=true)), and more than O(max_delete)
    indices to delete.
  - O(action=forcemerge) merges the indices that match O(patterns), are read-only
    (C(index.blocks.write=true)) and, when O(older_than_days) is given, old enough, down to
    O(max_num_segments) segments per shard, one index at a time. An index whose every shard
    copy already has at most that many segments is skipped, so a second run changes nothing.
  - O(action=shard_report) reports the shards and disk of each data node, the unassigned
    shards with their reason, the allocation explanation of the first one (primaries first),
    and whether shards are spread evenly (RV(balanced)). It never changes anything.
  - Patterns are shell-style globs (C(*), C(?), C([...])) matched here against every index
    name, case-sensitively. As a shell treats dot files, a name that starts with C(.) (hidden
    and system indices) matches only a pattern that starts with C(.).
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.elasticsearch
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [cleanup, forcemerge, shard_report]
  patterns:
    description:
      - Index name globs (C(logs-*), C(metrics-202?.*)). Required for O(action=cleanup) and
        O(action=forcemerge); an index matched by several counts once.
      - No commas, spaces or exclusions (C(-name)); give several patterns instead.
    type: list
    elements: str
  older_than_days:
    description:
      - Only indices older than this many days (a fractional age counts - 30.2 days is older
        than 30). Required for O(action=cleanup); for O(action=forcemerge) not given means any age.
      - V(0) means every index created (or dated) before now.
    type: int
  age_from:
    description:
      - V(creation_date) - the index's C(index.creation_date), set by Elasticsearch when it
        was created (a restored index counts from its restore).
      - V(name) - a date in the name, in O(name_date_format). It is the first text after the
        pattern's fixed prefix (the text before its first wildcard) that has the shape of the
        format, not cut out of a longer number, read as UTC at the start of the period it
        names (C(logs-2024.01.05) is 2024-01-05 00:00). An index with no such date (or an
        impossible one, month 13) is kept with reason V(no_date).
    type: str
    default: creation_date
    choices: [creation_date, name]
  name_date_format:
    description:
      - strftime-style format of the date in index names, for O(age_from=name). Supported -
        C(%Y) C(%y) C(%m) C(%d) C(%H) C(%M) C(%S) C(%j), the ISO week pair C(%G) and C(%V)
        (the week's Monday) and C(%%); a year is required. V(%Y.%m.%d) is Logstash's and
        Beats' daily naming; V(%Y.%m) a monthly one; V(%G.%V) a weekly one.
    type: str
    default: "%Y.%m.%d"
  allow_delete_all:
    description:
      - Allow a cleanup that would delete every index a pattern matches.
      - The same option as O(bosun.platform.redis_flush#module:allow_delete_all).
      - The alias C(force) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    default: false
    aliases: [force]
  max_delete:
    description:
      - Fail, deleting and snapshotting nothing, when more indices than this would be deleted.
    type: int
    default: 50
  snapshot_repository:
    description:
      - A registered snapshot repository (for instance type C(fs) under the node's
        C(path.repo)). The indices to delete are first copied into a snapshot named
        C(bosun-cleanup-<UTC timestamp>) (global state not included); nothing is deleted
        unless it ends C(SUCCESS) with every index and no failed shard.
      - A repository that is not registered fails the task, in check mode too.
      - Closed indices are snapshotted too (Elasticsearch 8 can).
    type: str
  snapshot_keep_last:
    description:
      - After the cleanup, keep only this many successful C(bosun-cleanup-*) snapshots in
        O(snapshot_repository), the newest by start time, and delete the others. The snapshot
        this run made always counts as one of them and is never deleted. Snapshots that did
        not succeed are neither counted nor deleted; snapshots with other names are never touched.
      - Applied also when a run has nothing to delete. Not given, no snapshot is deleted.
    type: int
  max_num_segments:
    description: Segments per shard O(action=forcemerge) merges to.
    type: int
    default: 1
  balance_threshold:
    description:
      - O(action=shard_report) calls the cluster balanced when the most shards on a data node
        minus the fewest is at most this.
    type: int
    default: 1
  timeout:
    description: Seconds to wait for the answer to one request.
    type: float
    default: 30.0
  wait_timeout:
    description:
      - Seconds to wait for a request that waits for its work - a snapshot, a force-merge, the
        deletion of old snapshots.
      - A force-merge the module stops waiting for goes on in Elasticsearch; the next run
        skips the index once it is merged. A snapshot not finished in time fails the task
        before any index is deleted.
    type: float
    default: 3600.0
notes:
  - "Privileges, with a user of the file or native realm or an API key: every action reads
    index metadata (index privilege C(view_index_metadata) on the patterns' indices);
    O(action=cleanup) needs C(delete_index) on them, with O(snapshot_repository) the cluster
    privilege C(create_snapshot), and with O(snapshot_keep_last) C(manage) (deleting
    snapshots); O(action=forcemerge) needs C(monitor) and C(forcemerge) (or C(maintenance)) on
    the indices; O(action=shard_report) the cluster privilege C(monitor)."
  - In C(module_defaults) of C(group/bosun.platform.elasticsearch) give only the connection
    options (O(url), O(login_user), O(login_password), O(api_key), O(validate_certs),
    O(ca_cert), O(ca_cert_data)); C(bosun.platform.health_check), the group's other member,
    takes those but not O(timeout).
  - Deleting indices by name works with C(action.destructive_requires_name=true) (the
    default since 8.0); no wildcard is ever sent.
  - Every error names the request, the node and the cause (refused, timed out, TLS, HTTP 401
    or 403 with the privilege missing, Elasticsearch's own reason), never the password or the
    API key. On failure the result holds what was done before it.
  - Works without ILM, SLM or the data stream API (the integration-test distribution has none);
    data stream backing indices are recognised from C(_resolve/index) and their C(.ds-) names.
requirements:
  - Elasticsearch 8 (tested with 8.19)
seealso:
  - module: bosun.platform.health_check
  - name: Snapshot and restore
    description: Registering a repository and restoring the indices of a snapshot.
    link: https://www.elastic.co/guide/en/elasticsearch/reference/8.19/snapshot-restore.html
attributes:
  check_mode:
    support: full
    details:
      - Runs the same requests that read, applies the same guards (they fail check mode as they
        fail a real run), and returns the exact RV(deleted), RV(kept), RV(snapshot) indices,
        RV(snapshots_deleted) and RV(merged) a real run would on the same cluster; only the
        snapshot's name (a timestamp) differs and its RV(snapshot.state) is null.
  diff_mode:
    support: none
    details: No diff is produced; the result lists the indices.
  action_group:
    support: full
    membership:
      - bosun.platform.elasticsearch
  platform:
    support: full
    platforms: posix
"""

EXAMPLES = r"""
- name: Monthly cleanup - daily log indices older than 90 days, snapshotted first, last 6 snapshots kept
  bosun.platform.elasticsearch_maintenance:
    action: cleanup
    patterns: ["logs-*"]
    older_than_days: 90
    age_from: name
    name_date_format: "%Y.%m.%d"
    snapshot_repository: backups
    snapshot_keep_last: 6
    url: https://search1.internal:9200
    login_user: bosun_maintenance
    login_password: "{{ vault_elasticsearch_maintenance_password }}"
    ca_cert: /etc/ssl/bosun/elasticsearch-ca.crt
  register: cleanup

- name: What would go? (nothing is changed)
  bosun.platform.elasticsearch_maintenance:
    action: cleanup
    patterns: ["logs-*", "audit-*"]
    older_than_days: 30
    max_delete: 200
  check_mode: true
  register: would_clean

- name: The connection set once for every Elasticsearch task of a play
  module_defaults:
    group/bosun.platform.elasticsearch:
      url: https://search1.internal:9200
      login_user: bosun_maintenance
      login_password: "{{ vault_elasticsearch_maintenance_password }}"
      ca_cert: /etc/ssl/bosun/elasticsearch-ca.crt
  block:
    - name: Force-merge last month's read-only indices to one segment per shard
      bosun.platform.elasticsearch_maintenance:
        action: forcemerge
        patterns: ["logs-*"]
        older_than_days: 7
        max_num_segments: 1

    - name: Weekly shard report
      bosun.platform.elasticsearch_maintenance:
        action: shard_report
      register: shards

    - name: Say when shards are not spread evenly
      ansible.builtin.debug:
        msg: "{{ shards.msg }}"
      when: not shards.balanced
"""

RETURN = r"""
msg:
  description: One line saying what was done (or would be, in check mode).
  returned: always
  type: str
  sample: >-
    deleted 2 indices (logs-2024.01.01, logs-2024.01.02) after snapshot
    bosun-cleanup-20240405t031500.120z in backups, kept 31
action:
  description: O(action).
  returned: always
  type: str
  sample: cleanup
url:
  description: The node's URL (without credentials).
  returned: always
  type: str
  sample: https://search1.internal:9200
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 1.234
patterns:
  description: Each pattern with the number of indices it matched.
  returned: action is cleanup or forcemerge, and the indices could be listed
  type: list
  elements: dict
  sample: [{pattern: "logs-*", matched: 33}]
deleted:
  description:
    - Indices deleted, in name order (in check mode, that would be). On failure, those
      deleted before it.
  returned: action is cleanup
  type: list
  elements: str
  sample: [logs-2024.01.01, logs-2024.01.02]
would_delete:
  description: The indices a cleanup refused by a guard would have deleted.
  returned: when O(max_delete) or the every-match guard refused the cleanup
  type: list
  elements: str
kept:
  description: Indices a pattern matched that are not deleted, in name order.
  returned: action is cleanup
  type: list
  elements: dict
  contains:
    index:
      description: Index name.
      type: str
    reason:
      description:
        - V(data_stream), V(system), V(write_index), V(too_young), V(no_date) (no date in the
          name, or no creation date).
      type: str
    detail:
      description: The same in words, with the alias, data stream or age.
      type: str
    date:
      description: The index's date (creation or name), UTC; for age reasons only.
      type: str
    age_days:
      description: Its age in days; for age reasons only.
      type: float
  sample:
    - index: logs-2024.04.04
      reason: too_young
      detail: "1.13 days old, not older than 90"
      date: "2024-04-04T00:00:00Z"
      age_days: 1.13
    - index: logs-current
      reason: write_index
      detail: write index of alias logs
snapshot:
  description:
    - The snapshot taken before deleting (in check mode, the one that would be - its name
      from the current time and RV(snapshot.state) null); null when there was nothing to
      delete or no O(snapshot_repository).
  returned: action is cleanup
  type: dict
  contains:
    name:
      description: C(bosun-cleanup-<UTC timestamp>).
      type: str
    repository:
      description: O(snapshot_repository).
      type: str
    indices:
      description: The indices it holds, in name order.
      type: list
      elements: str
    state:
      description: C(SUCCESS) (anything else fails the task before deleting).
      type: str
    shards:
      description: Shards total, successful and failed, as Elasticsearch reported them.
      type: dict
  sample:
    name: bosun-cleanup-20240405t031500.120z
    repository: backups
    indices: [logs-2024.01.01, logs-2024.01.02]
    state: SUCCESS
    shards: {total: 2, successful: 2, failed: 0}
snapshots_deleted:
  description: C(bosun-cleanup-*) snapshots deleted by O(snapshot_keep_last) (would be, in check mode).
  returned: action is cleanup
  type: list
  elements: str
  sample: [bosun-cleanup-20231005t031500.004z]
merged:
  description: Indices force-merged (would be, in check mode), in name order.
  returned: action is forcemerge
  type: list
  elements: dict
  contains:
    index:
      description: Index name.
      type: str
    segments_before:
      description: Most segments of any of its shard copies before the merge.
      type: int
    segments_after:
      description: The same after the merge; null in check mode.
      type: int
    seconds:
      description: Time the merge took; null in check mode.
      type: float
  sample: [{index: logs-2024.03.01, segments_before: 14, segments_after: 1, seconds: 2.113}]
skipped:
  description:
    - Indices a pattern matched that are not merged - V(writable) (no write block), V(closed),
      V(too_young), V(no_date), V(merged) (already at O(max_num_segments)).
  returned: action is forcemerge
  type: list
  elements: dict
  sample: [{index: logs-2024.04.04, reason: writable, detail: "not read-only (index.blocks.write is not true)"}]
status:
  description: Cluster health status (V(green), V(yellow), V(red)).
  returned: action is shard_report
  type: str
  sample: yellow
number_of_nodes:
  description: Nodes in the cluster.
  returned: action is shard_report
  type: int
number_of_data_nodes:
  description: Data nodes in the cluster.
  returned: action is shard_report
  type: int
nodes:
  description: Per data node, in name order - shards, primaries and disk as C(_cat/allocation) reports them.
  returned: action is shard_report
  type: list
  elements: dict
  sample:
    - node: search1
      shards: 12
      primaries: 12
      undesired_shards: 0
      disk_indices_bytes: 52428800
      disk_used_bytes: 21474836480
      disk_avail_bytes: 53687091200
      disk_total_bytes: 75161927680
      disk_percent: 28
      host: 10.110.0.5
spread:
  description: Most shards on a data node minus the fewest.
  returned: action is shard_report
  type: int
  sample: 0
balance_threshold:
  description: O(balance_threshold).
  returned: action is shard_report
  type: int
balanced:
  description: RV(spread) is at most O(balance_threshold).
  returned: action is shard_report
  type: bool
  sample: true
unassigned_count:
  description: Unassigned shard copies.
  returned: action is shard_report
  type: int
  sample: 1
unassigned:
  description: The unassigned shard copies (primaries first, at most 100) with Elasticsearch's reason.
  returned: action is shard_report
  type: list
  elements: dict
  sample: [{index: orders, shard: 0, primary: false, reason: INDEX_CREATED}]
explanation:
  description:
    - C(_cluster/allocation/explain) of the first of RV(unassigned) - its reason, whether it
      can be allocated, Elasticsearch's explanation and the deciders that said no, per node.
      Null when no shard is unassigned.
  returned: action is shard_report
  type: dict
  sample:
    index: orders
    shard: 0
    primary: false
    reason: INDEX_CREATED
    details: null
    last_allocation_status: no_attempt
    can_allocate: "no"
    explanation: "Elasticsearch isn't allowed to allocate this shard to any of the nodes in the cluster. ..."
    deciders:
      - node: search1
        decider: same_shard
        explanation: "a copy of this shard is already allocated to this node [...]"
"""

from ansible_collections.bosun.platform.plugins.module_utils._elasticsearch_maintenance import (
    REQUIRED_IF,
    MaintenanceError,
    argument_spec,
    run,
)
from ansible_collections.bosun.platform.plugins.module_utils._module import run_module


def work(module):
    return run(module.params, check_mode=module.check_mode)


def main():
    run_module(argument_spec(), work, supports_check_mode=True, errors=(MaintenanceError,), required_if=REQUIRED_IF)


if __name__ == "__main__":
    main()
