"""health_check postgres: the size of pg_wal, with its warn/crit thresholds."""

from ansible_collections.bosun.platform.plugins.module_utils._checks import postgres_check
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import Probe

ROW = dict(
    connections=5,
    max_connections=100,
    in_recovery=False,
    archive_mode="on",
    archived_count=10,
    failed_count=0,
    last_failed_wal=None,
    archive_age=40.0,
    failed_age=None,
    archive_failing=False,
    replication_lag=None,
    oldest_transaction=None,
    can_list_wal=True,
)


def measure(row, **bounds):
    thresholds = dict(postgres_check.METRICS)
    for name, (warn, crit) in bounds.items():
        thresholds[name] = thresholds[name].with_bounds(warn, crit)
    probe = Probe("t", 5, thresholds)
    postgres_check.measure(probe, row)
    return probe, dict((m["name"], m) for m in probe.metrics)


def test_wal_size_defaults_and_levels():
    assert (postgres_check.METRICS["wal_size"].warn, postgres_check.METRICS["wal_size"].crit) == (2048, 4096)
    probe, m = measure(dict(ROW, wal_bytes=64 * 1024 * 1024, wal_files=4))
    assert m["wal_size"]["value"] == 64.0 and m["wal_size"]["unit"] == "MB" and m["wal_size"]["status"] == "ok"
    assert m["wal_size"]["text"] == "pg_wal 64 MB in 4 files" and "pg_wal 64 MB" in probe.message
    _probe, m = measure(dict(ROW, wal_bytes=3 * 1024**3, wal_files=192))
    assert m["wal_size"]["status"] == "warn"
    _probe, m = measure(dict(ROW, wal_bytes=5 * 1024**3, wal_files=320))
    assert m["wal_size"]["status"] == "crit"
    _probe, m = measure(dict(ROW, wal_bytes=200 * 1024**2, wal_files=13), wal_size=(100, 150))
    assert m["wal_size"]["status"] == "crit"


def test_wal_size_without_the_privilege_is_reported_not_guessed():
    probe, m = measure(dict(ROW, can_list_wal=False))
    assert m["wal_size"]["value"] is None and m["wal_size"]["status"] == "ok"
    assert "grant pg_monitor" in m["wal_size"]["text"]
    _probe, m = measure(dict(ROW))  # an older row without the column: nothing about pg_wal
    assert "wal_size" not in m
