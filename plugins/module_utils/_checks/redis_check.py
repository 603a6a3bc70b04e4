# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""redis: PING with authentication (password or ACL user, TLS), then INFO.

Memory used of maxmemory (the check's value; of the host's memory when maxmemory is 0),
keyspace hit rate hits/(hits+misses), evicted keys, rejected connections and the role
(a replica whose link to its master is down is crit). Connection options are the
collection's shared ones (_redis).

The memory rule depends on what Redis does when it is full (memory_rule): under an
eviction policy that has keys to evict (allkeys-*, or volatile-* with keys that have a TTL)
a full cache is its normal state, so fullness is only reported and the verdict comes from
``evictions``, the keys evicted per 100 key lookups since the statistics started: a cache
that pushes keys out about as often as it is read is too small. Under noeviction (or
volatile-* with no TTL keys, or no maxmemory) a full Redis refuses writes or runs the host
out of memory, so fullness is judged against the thresholds.

Hit rate and evictions are ratios of the key lookups since the statistics started; below
MIN_LOOKUPS lookups (a cache just started or just restarted) they are reported, not judged:
one miss on a fresh cache is not a 0 % hit rate worth a warning.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.bosun.platform.plugins.module_utils import _redis
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import classify_text, fmt_bytes, fmt_num
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import CRIT, OK, UNKNOWN, Threshold
from ansible_collections.bosun.platform.plugins.module_utils._io import redact

TYPE = "redis"
FAMILY_ARGS = _redis.REDIS_COMMON_ARGS
OPTIONS = {}
MIN_LOOKUPS = 100
METRICS = dict(
    memory=Threshold(70, 85, unit="%"),
    hit_rate=Threshold(80, None, higher_is_worse=False, unit="%"),
    evicted_keys=Threshold(None, None, unit="keys"),
    evictions=Threshold(20, 100, unit="%"),
    rejected_connections=Threshold(1, None, unit="connections"),
)


def target(options):
    return _redis.describe(options)


def secrets(options):
    return _redis.secrets_of(options)


def describe(options):
    return "Redis %s" % _redis.describe(options)


def run(probe, options):
    if not _redis.HAS_REDIS:
        probe.fail(
            "the Python library redis is required on the managed host (python3-redis, or pip install redis)",
            status=UNKNOWN,
        )
    params = dict(options)
    params["connect_timeout"] = min(float(options.get("connect_timeout") or 5.0), probe.remaining())
    params["socket_timeout"] = min(float(options.get("socket_timeout") or 30.0), probe.remaining())
    where = describe(options)
    client = None
    step = "PING"
    try:
        client = connect(params)
        client.ping()
        step = "INFO"
        info = client.info()
    except _redis.redis.exceptions.RedisError as exc:
        text = redact(str(exc), secrets(options))
        why = classify_text(text, probe.timeout)
        if why == "authentication failed" or isinstance(exc, _redis.redis.exceptions.AuthenticationError):
            probe.fail(
                "%s: authentication failed for user %s (%s)" % (where, options.get("login_user") or "default", text)
            )
        probe.fail("%s: %s%s (%s)" % (where, "" if step == "PING" else "INFO failed: ", why, text))
    finally:
        if client is not None:
            client.close()
    measure(probe, info)


def connect(params):
    """A client for one probe: one attempt, no retries (see _redis.client_kwargs)."""
    return _redis.redis.Redis(**_redis.client_kwargs(params))


def _keys_with_ttl(info):
    """Keys that have an expiry, over every database of INFO's keyspace section."""
    total = 0
    for name, value in info.items():
        if str(name).startswith("db") and str(name)[2:].isdigit() and isinstance(value, dict):
            total += int(value.get("expires") or 0)
    return total


def memory_rule(info):
    """("evicts" or "fullness", policy): how a full Redis behaves, from INFO.

    "evicts": maxmemory is set and the policy has keys it may evict (allkeys-*, or
    volatile-* while some key has a TTL): reaching maxmemory evicts, writes go on.
    "fullness": anything else (noeviction, volatile-* with no TTL keys, no maxmemory, a
    server too old to report its policy): reaching the limit refuses writes or exhausts the
    host, so how full it is is what matters.
    """
    policy = str(info.get("maxmemory_policy") or "noeviction")
    if int(info.get("maxmemory") or 0) <= 0:
        return "fullness", policy
    if policy.startswith("allkeys-"):
        return "evicts", policy
    if policy.startswith("volatile-") and _keys_with_ttl(info) > 0:
        return "evicts", policy
    return "fullness", policy


def measure(probe, info):
    """Turn INFO into metrics (separate for unit tests)."""
    used = int(info.get("used_memory") or 0)
    limit = int(info.get("maxmemory") or 0)
    rule, policy = memory_rule(info)
    hits, misses = int(info.get("keyspace_hits") or 0), int(info.get("keyspace_misses") or 0)
    evicted = int(info.get("evicted_keys") or 0)
    if limit:
        pct = round(100.0 * used / limit, 1)
        memory_note = "memory %s of %s (%s %%, %s)" % (fmt_bytes(used), fmt_bytes(limit), fmt_num(pct, 0), policy)
        if rule == "evicts":
            # full is normal here: reported, never judged (the evictions decide)
            probe.metric(
                "memory", pct, "Redis memory %s %% (%s evicts when full)" % (fmt_num(pct, 0), policy), status=OK
            )
        elif policy.startswith("volatile-"):
            probe.metric(
                "memory", pct, "Redis memory %s %% (%s: no key has a TTL, nothing to evict)" % (fmt_num(pct, 0), policy)
            )
        else:
            probe.metric("memory", pct, "Redis memory %s %%" % fmt_num(pct, 0))
    else:
        system = int(info.get("total_system_memory") or 0)
        pct = round(100.0 * used / system, 1) if system else None
        probe.metric("memory", pct, "Redis memory %s %% of the host (no maxmemory)" % fmt_num(pct, 0))
        memory_note = "memory %s, no maxmemory set" % fmt_bytes(used)

    judged = hits + misses >= MIN_LOOKUPS
    too_few = "" if judged else ", too few lookups to judge"
    if hits + misses:
        rate = round(100.0 * hits / (hits + misses), 1)
        probe.metric("hit_rate", rate, "hit rate %s %%%s" % (fmt_num(rate, 0), too_few), status=None if judged else OK)
        rate_note = "hit rate %s %% (%d hits, %d misses%s)" % (fmt_num(rate, 0), hits, misses, too_few)
    else:
        probe.metric("hit_rate", None, "hit rate n/a (no lookups yet)")
        rate_note = "no key lookups yet"

    probe.metric("evicted_keys", evicted, "evicted keys %d" % evicted, headline=False)
    evicted_note = "%d evicted" % evicted
    if rule == "evicts":
        ratio = round(100.0 * evicted / (hits + misses), 1) if hits + misses else None
        if ratio is None:
            text = "evictions n/a (no lookups yet, %d evicted)" % evicted
        else:
            text = "%s evictions per 100 lookups" % fmt_num(ratio)
        probe.metric("evictions", ratio, text, headline=False, status=None if judged else OK)
        if ratio is not None:
            evicted_note = "%d evicted (%s per 100 lookups)" % (evicted, fmt_num(ratio))
    rejected = int(info.get("rejected_connections") or 0)
    probe.metric("rejected_connections", rejected, "rejected connections %d" % rejected, headline=False)

    role = info.get("role") or "unknown"
    role_note = role
    if role == "slave":
        link = info.get("master_link_status") or "unknown"
        status = OK if link == "up" else CRIT
        probe.metric("master_link", link, "replica link %s" % link, status=status, unit="")
        role_note = "replica of %s:%s, link %s" % (info.get("master_host"), info.get("master_port"), link)
    probe.message = "%s, %s, %s, %d rejected connections, role %s" % (
        memory_note,
        rate_note,
        evicted_note,
        rejected,
        role_note,
    )
