#!/usr/bin/python
# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: redis_flush
short_description: Delete Redis keys by pattern or prefix without blocking the server
version_added: 0.1.0
description:
  - Deletes the keys that match glob patterns or start with literal prefixes, or flushes a
    whole database or every database.
  - Patterns and prefixes are handled with C(SCAN ... MATCH ... COUNT) and C(UNLINK) (or
    C(DEL)) in pipelined batches on one connection. Every command does a bounded amount of
    work (about O(scan_count) keys), so the server keeps serving other clients; nothing runs
    a Lua script or C(KEYS).
  - Keys that do not match are never touched; prefixes are escaped, so the prefix C(a*b:)
    deletes only keys that start with the five characters C(a*b:).
  - O(whole_db) and O(all) use C(FLUSHDB ASYNC) and C(FLUSHALL ASYNC) unless O(flush_mode=sync).
  - Guards. A pattern that matches every key (empty, or made only of C(*) and C(?)), and
    O(whole_db) or O(all) on a server that holds keys, are refused unless O(allow_delete_all=true).
    O(max_keys) counts the matching keys first and deletes nothing when there are more.
  - In check mode the module runs the same SCAN, deletes nothing, and reports the exact
    number of keys a real run would delete (each key counted once, also when two patterns
    match it). It keeps the names of the matching keys in memory to do so (about 100 bytes
    a key).
  - Refuses a server in cluster mode and a read-only replica, with a message that says so.
  - A lost connection fails the task with the number of keys deleted so far; running it again
    deletes the rest.
author:
  - bosun.platform maintainers (@bosun-platform)
extends_documentation_fragment:
  - bosun.platform.redis
  - bosun.platform.attributes
  - bosun.platform.attributes.action_group
options:
  patterns:
    description:
      - Redis glob patterns (as for C(SCAN MATCH)); keys that match any of them are deleted.
      - A pattern may hold placeholders C(${name}), replaced by the value of C(name) in
        O(pattern_params) escaped as a literal (C(*), C(?), C([), C(]) and C(\) in it match only
        themselves), so C(user:${id}:*) with C(id=*) deletes the keys that start with
        C(user:*:), never every user's. C($$) is a literal C($).
      - A pattern with no literal prefix (empty, C(*), C(?*), C([^x]*), C(*:session)) can match
        any key and needs O(allow_delete_all=true).
      - One of O(patterns), O(prefixes), O(whole_db) or O(all) is required.
    type: list
    elements: str
  pattern_params:
    description:
      - Values for the C(${name}) placeholders of O(patterns) (strings or numbers). A
        placeholder without a value fails the task before anything is sent.
    type: dict
  prefixes:
    description:
      - Literal key prefixes; C(*), C(?), C([), C(]) and C(\) in them are escaped, so they
        match only themselves. Keys that start with any of them are deleted.
      - An empty prefix means every key and needs O(allow_delete_all=true).
    type: list
    elements: str
  whole_db:
    description:
      - Flush the whole database O(login_db) (C(FLUSHDB)). Needs O(allow_delete_all=true) when it holds keys.
      - The alias C(db) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    aliases: [db]
  all:
    description:
      - Flush every database of the server (C(FLUSHALL)). Needs O(allow_delete_all=true) when any holds keys.
    type: bool
  allow_delete_all:
    description:
      - Allow a pattern that can match every key, and O(whole_db) or O(all) on a server that holds keys.
      - The same option as O(bosun.platform.elasticsearch_maintenance#module:allow_delete_all).
      - The alias C(force) is deprecated and will be removed in version 2.0.0 of the collection.
    type: bool
    default: false
    aliases: [force]
  max_keys:
    description:
      - Count the keys first and fail, deleting nothing, when more than this many match.
      - Keys written between the count and the deletion are deleted too if they match.
    type: int
  scan_count:
    description:
      - The C(COUNT) hint of each C(SCAN) call, which is also about the size of each
        C(UNLINK) batch. Larger is faster but makes each command longer; at 1000 no command
        takes more than a few milliseconds.
    type: int
    default: 1000
  key_type:
    description:
      - Delete only keys of this type (C(SCAN ... TYPE), Redis 6.0 or later). Patterns and
        prefixes only.
    type: str
    choices: [string, list, set, zset, hash, stream]
  delete_command:
    description:
      - C(unlink) frees large values in the background; C(del) frees them before replying.
    type: str
    default: unlink
    choices: [unlink, del]
  flush_mode:
    description:
      - For O(whole_db) and O(all). C(async) frees memory in the background; C(sync) before replying,
        which blocks the server for as long as that takes.
    type: str
    default: async
    choices: [async, sync]
  pause_ms:
    description:
      - Milliseconds to sleep after each batch, to leave a busy server more room.
    type: int
    default: 0
notes:
  - The user needs C(SCAN) and C(UNLINK) (or C(DEL)) on the keys it deletes, C(FLUSHDB) or
    C(FLUSHALL) for O(whole_db) and O(all), and preferably C(INFO) (to detect clusters and replicas
    and to report RV(scanned)). C(CLIENT SETNAME) is used when allowed.
  - The cache-maintenance user of the C(bosun.platform.redis) role is exactly enough for O(patterns)
    and O(prefixes). C(FLUSHDB) and C(FLUSHALL) ignore key patterns, so that user may not run them;
    O(whole_db) and O(all) need the role's opt-in flush admin (user C(cache-flush-admin)), which may flush
    but reads and writes no key.
  - Every error message names the server (C(Redis at host:port db N [as user])) and the cause (refused,
    timeout, wrong password, TLS files, an ACL refusal, a replica, cluster mode, a lost connection),
    and never contains the password. On failure the result still carries RV(deleted) and RV(results).
  - Cluster mode is not supported.
  - This module talks RESP directly and does not need the Python redis library.
seealso:
  - name: Redis SCAN
    description: Guarantees and limits of incremental iteration.
    link: https://redis.io/docs/latest/commands/scan/
attributes:
  check_mode:
    support: full
    details:
      - Runs the same C(SCAN), deletes nothing and reports the exact number of keys a real run
        would delete on the same data. Guards, replicas, clusters, authentication and read
        permissions fail check mode as they fail a real run.
      - One thing check mode cannot see is an ACL that lets the user C(SCAN) but not C(UNLINK) some
        of the matching keys; only the real run fails on it.
  diff_mode:
    support: partial
    details:
      - With C(--diff), for each pattern or prefix (each database for O(whole_db) and O(all)) the number of
        keys it deletes before, and none after; in check mode, the keys a real run would delete.
      - Counts only; the names of the keys are not listed.
  action_group:
    support: full
    membership:
      - bosun.platform.redis
  platform:
    support: full
    platforms: posix
"""

EXAMPLES = r"""
- name: Invalidate the menu and search caches
  bosun.platform.redis_flush:
    patterns:
      - "menu:*"
      - "search:*"
    login_password: "{{ vault_redis_password }}"

- name: Delete one user's keys, refusing if the pattern is wider than expected
  bosun.platform.redis_flush:
    prefixes:
      - "user:{{ user_id }}:"
    max_keys: 10000
    login_user: cache-maint
    login_password: "{{ vault_redis_maintenance_password }}"

- name: The same with a pattern template (the value is escaped, never a wildcard)
  bosun.platform.redis_flush:
    patterns:
      - "user:${id}:*"
    pattern_params:
      id: "{{ user_id }}"
    login_user: cache-maint
    login_password: "{{ vault_redis_maintenance_password }}"

- name: Flush database 2 over TLS
  bosun.platform.redis_flush:
    whole_db: true
    allow_delete_all: true
    login_db: 2
    login_host: cache1.internal
    login_port: 6380
    tls: true
    ca_cert: /etc/ssl/bosun/ca.crt
    login_password: "{{ vault_redis_password }}"

- name: How many keys would go?
  bosun.platform.redis_flush:
    patterns: ["session:*"]
    login_password: "{{ vault_redis_password }}"
  check_mode: true
  register: would_flush
"""

RETURN = r"""
scope:
  description: The scope that was flushed.
  returned: success
  type: str
  sample: patterns
db:
  description: The database index the keys were deleted from; null for O(all).
  returned: success
  type: int
  sample: 0
results:
  description:
    - One entry per pattern (or prefix), in the order given; for O(whole_db) and O(all) one entry per
      database that held keys.
  returned: always
  type: list
  elements: dict
  contains:
    pattern:
      description: The C(SCAN MATCH) pattern used (a prefix escaped and followed by C(*)); null for O(whole_db) and
        O(all).
      type: str
      sample: "menu:*"
    prefix:
      description: The prefix as given. Only for O(prefixes).
      type: str
      sample: "menu:"
    template:
      description: The pattern as given, when placeholders were filled from O(pattern_params).
      type: str
      sample: "user:${id}:*"
    db:
      description: The database index.
      type: int
      sample: 0
    matched:
      description:
        - Keys that matched. Deleting, the keys SCAN returned (Redis may return a key twice
          while it resizes its table); in check mode, distinct keys not already counted for an
          earlier pattern; for O(whole_db) and O(all), the keys the database held.
      type: int
      sample: 1000
    deleted:
      description:
        - Keys deleted, as the server reported them; in check mode, keys that would be deleted.
      type: int
      sample: 1000
    scan_calls:
      description: SCAN commands sent for this pattern (0 for O(whole_db) and O(all)).
      type: int
      sample: 2
    duration_ms:
      description: Time spent on this entry, in milliseconds.
      type: int
      sample: 12
  sample:
    - pattern: "menu:*"
      db: 0
      matched: 1000
      deleted: 1000
      scan_calls: 2
      duration_ms: 12
matched:
  description: Sum of RV(results[].matched).
  returned: success
  type: int
  sample: 1000
deleted:
  description:
    - Sum of RV(results[].deleted); in check mode, the keys that would be deleted. On failure,
      the keys confirmed deleted before it.
  returned: always
  type: int
  sample: 1000
scanned:
  description:
    - Keys in the database when each SCAN pass started, summed over the passes (the keyspace
      the passes walked over); 0 for O(whole_db) and O(all). Null when the user may run neither
      C(INFO) nor C(DBSIZE).
  returned: success
  type: int
  sample: 2000000
duration_ms:
  description: Wall time of the whole flush, connecting included, in milliseconds.
  returned: always
  type: int
  sample: 2110
redis_version:
  description: The server's version from C(INFO); null when C(INFO) is not allowed.
  returned: success
  type: str
  sample: 7.0.15
diff:
  description:
    - Per pattern or prefix (per database for O(whole_db) and O(all)), the keys deleted before (in check mode,
      that would be) and none after, one line each.
  returned: success, when run with C(--diff)
  type: dict
  contains:
    before:
      description: One line per entry of RV(results), with the keys it deletes.
      type: str
      sample: "db 0 pattern 'menu:*': 1000 keys"
    after:
      description: The same lines with no keys left.
      type: str
      sample: "db 0 pattern 'menu:*': 0 keys"
    before_header:
      description: C(keys per pattern), C(keys per prefix) or C(keys per database).
      type: str
    after_header:
      description: The same as RV(diff.before_header).
      type: str
"""

from ansible_collections.bosun.platform.plugins.module_utils._flush import FlushError, argument_spec, diff, run
from ansible_collections.bosun.platform.plugins.module_utils._module import run_module


def work(module):
    result = run(module.params, check_mode=module.check_mode)
    if module._diff:
        result["diff"] = diff(result)
    return result


def main():
    run_module(argument_spec(), work, supports_check_mode=True, errors=(FlushError,))


if __name__ == "__main__":
    main()
