"""The Redis memory rule of health_check: fullness matters only where Redis cannot evict.

Under an eviction policy (allkeys-*, or volatile-* with keys that have a TTL) a full cache is
the normal state; what tells a cache that is too small is how often it evicts compared with
how often it is read. Under noeviction (or volatile-* with nothing to evict) a full Redis
refuses writes, so fullness stays the rule.
"""

from ansible_collections.bosun.platform.plugins.module_utils._checks import redis_check
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import Probe

MIB = 1024**2


def info(policy, used_mib=127, max_mib=128, hits=900, misses=100, evicted=0, expires=0, **over):
    data = dict(
        used_memory=used_mib * MIB,
        maxmemory=max_mib * MIB,
        maxmemory_policy=policy,
        total_system_memory=8192 * MIB,
        keyspace_hits=hits,
        keyspace_misses=misses,
        evicted_keys=evicted,
        rejected_connections=0,
        uptime_in_seconds=1000,
        role="master",
        db0=dict(keys=5000, expires=expires, avg_ttl=0),
    )
    data.update(over)
    return data


def measure(data, **thresholds):
    limits = dict(redis_check.METRICS)
    for name, (warn, crit) in thresholds.items():
        limits[name] = limits[name].with_bounds(warn, crit)
    probe = Probe("Redis", 5, limits)
    redis_check.measure(probe, data)
    return probe, dict((m["name"], m) for m in probe.metrics)


def worst(probe):
    order = ["ok", "warn", "unknown", "crit"]
    return max((m["status"] for m in probe.metrics), key=order.index)


def test_full_lru_cache_with_a_good_hit_rate_is_ok():
    probe, m = measure(info("allkeys-lru", evicted=50))
    assert m["memory"]["value"] == 99.2 and m["memory"]["status"] == "ok"
    assert "allkeys-lru" in m["memory"]["text"]
    assert m["evictions"]["value"] == 5.0 and m["evictions"]["status"] == "ok"
    assert worst(probe) == "ok"
    assert "allkeys-lru" in probe.message and "50 evicted" in probe.message


def test_evicting_more_than_it_is_read_is_crit_whatever_the_fullness():
    probe, m = measure(info("allkeys-lfu", hits=100, misses=100, evicted=450))
    assert m["memory"]["status"] == "ok"
    assert m["evictions"]["value"] == 225.0 and m["evictions"]["status"] == "crit"
    probe, m = measure(info("allkeys-random", hits=600, misses=400, evicted=300))
    assert m["evictions"]["value"] == 30.0 and m["evictions"]["status"] == "warn"


def test_noeviction_keeps_the_fullness_rule():
    probe, m = measure(info("noeviction"))
    assert m["memory"]["status"] == "crit" and "evictions" not in m
    probe, m = measure(info("noeviction", used_mib=64))
    assert m["memory"]["status"] == "ok"


def test_volatile_policy_without_keys_to_evict_is_like_noeviction():
    _probe, m = measure(info("volatile-lru", expires=0))
    assert m["memory"]["status"] == "crit" and "nothing to evict" in m["memory"]["text"]
    _probe, m = measure(info("volatile-ttl", expires=1200, evicted=10))
    assert m["memory"]["status"] == "ok" and m["evictions"]["status"] == "ok"


def test_no_maxmemory_is_judged_against_the_host():
    _probe, m = measure(info("allkeys-lru", used_mib=7000, max_mib=0))
    assert m["memory"]["status"] == "crit" and "no maxmemory" in m["memory"]["text"]


def test_evictions_without_lookups_and_thresholds_from_the_task():
    _probe, m = measure(info("allkeys-lru", hits=0, misses=0, evicted=10))
    assert m["evictions"]["value"] is None and m["evictions"]["status"] == "ok"
    _probe, m = measure(info("allkeys-lru", evicted=50), evictions=(1, 2))
    assert m["evictions"]["status"] == "crit"


def test_memory_rule_decision():
    assert redis_check.memory_rule(info("allkeys-lru")) == ("evicts", "allkeys-lru")
    assert redis_check.memory_rule(info("noeviction")) == ("fullness", "noeviction")
    assert redis_check.memory_rule(info("volatile-lfu", expires=0)) == ("fullness", "volatile-lfu")
    assert redis_check.memory_rule(info("volatile-lfu", expires=3, db1=dict(keys=1, expires=0))) == (
        "evicts",
        "volatile-lfu",
    )
    assert redis_check.memory_rule(info("allkeys-lru", max_mib=0)) == ("fullness", "allkeys-lru")
    legacy = info("allkeys-lru")
    del legacy["maxmemory_policy"]
    assert redis_check.memory_rule(legacy) == ("fullness", "noeviction")
