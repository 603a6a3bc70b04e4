"""health_check types: the logic of each check that needs no network service.

(The network-facing parts run against real servers in tests/integration/test_health_check.py.)
"""

import datetime
import os
import socket
import subprocess
import time
import urllib.error

import pytest
from ansible_collections.bosun.platform.plugins.module_utils._checks import (
    base,
    disk_check,
    http_check,
    load_check,
    memory_check,
    nginx_config_check,
    postgres_check,
    redis_check,
    tls_cert_check,
)
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import CheckFailed, Probe

from tests.support.nginx import make_cert


def probe_for(kind, **over):
    thresholds = dict((k, v) for k, v in kind.METRICS.items() if v is not None)
    for name, (warn, crit) in over.items():
        thresholds[name] = thresholds[name].with_bounds(warn, crit)
    return Probe("t", 5, thresholds)


def by_name(probe):
    return dict((m["name"], m) for m in probe.metrics)


# --- tls_cert -------------------------------------------------------------------------
def test_der_validity_matches_cryptography(tmp_path):
    from cryptography import x509

    for name, days, start in (("short", 3, -1), ("far", 365 * 40, 0), ("old", 10, -20)):
        cert_path, _key = make_cert(str(tmp_path), name, days, not_before_days=start)
        with open(cert_path, "rb") as f:
            pem = f.read()
        expected = x509.load_pem_x509_certificate(pem)
        not_before, not_after = tls_cert_check.validity(tls_cert_check.pem_to_der(pem.decode()))
        assert not_after == expected.not_valid_after_utc.replace(microsecond=0)  # far: GeneralizedTime
        assert not_before == expected.not_valid_before_utc.replace(microsecond=0)


def test_tls_cert_file_days_and_expiry(tmp_path):
    good, _key = make_cert(str(tmp_path), "good", 30, not_before_days=-1)
    probe = probe_for(tls_cert_check)
    tls_cert_check.run(probe, {"path": good})
    (metric,) = probe.metrics
    assert metric["value"] == 28 and metric["status"] == "ok" and metric["text"] == "TLS cert 28 days"

    soon, _key = make_cert(str(tmp_path), "soon", 10, not_before_days=-5)
    probe = probe_for(tls_cert_check)
    tls_cert_check.run(probe, {"path": soon})
    assert probe.metrics[0]["status"] == "crit"  # 4 days < 7

    expired, _key = make_cert(str(tmp_path), "expired", 5, not_before_days=-8)
    probe = probe_for(tls_cert_check)
    with pytest.raises(CheckFailed, match="certificate expired on"):
        tls_cert_check.run(probe, {"path": expired})
    assert probe.metrics[0]["value"] == -3 and probe.metrics[0]["text"] == "TLS cert expired 3 days ago"


def test_tls_cert_bad_files(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(CheckFailed, match="cannot read the certificate's dates: no PEM certificate"):
        tls_cert_check.run(probe_for(tls_cert_check), {"path": str(junk)})
    with pytest.raises(CheckFailed, match="missing.pem: no such file or directory"):
        tls_cert_check.run(probe_for(tls_cert_check), {"path": str(tmp_path / "missing.pem")})


# --- http -----------------------------------------------------------------------------
def test_json_lookup():
    doc = {"status": "healthy", "checks": {"db": {"status": "ok"}}, "items": [{"n": 1}, {"n": 2}]}
    assert http_check.json_lookup(doc, "status") == "healthy"
    assert http_check.json_lookup(doc, "$.checks.db.status") == "ok"
    assert http_check.json_lookup(doc, "items.1.n") == 2
    assert http_check.json_lookup(doc, "items.-1.n") == 2
    assert http_check.json_lookup(doc, "items.5.n") is http_check._MISSING
    assert http_check.json_lookup(doc, "checks.cache") is http_check._MISSING
    assert http_check.json_lookup({"a": None}, "a") is None


def test_urls_lose_their_credentials():
    assert http_check.safe_url("https://u:p%40ss@example.org:8443/h?x=1") == "https://example.org:8443/h?x=1"
    assert http_check.safe_url("http://example.org/") == "http://example.org/"
    assert http_check.short_target("http://127.0.0.1:8000/health?deep=1") == "/health?deep=1"
    assert http_check.short_target("http://127.0.0.1") == "/"
    assert http_check.safe_url("http://u:p@[::1]:8080/h") == "http://[::1]:8080/h"


def test_origins_compare_scheme_host_and_port():
    same = http_check.origin("http://Example.org/a") == http_check.origin("http://example.org:80/b?c")
    assert same and http_check.origin("https://h/") == ("https", "h", 443)
    for other in ("https://example.org/", "http://example.org:8080/", "http://www.example.org/"):
        assert http_check.origin(other) != http_check.origin("http://example.org/"), other


def _redirected(url, newurl, headers):
    import urllib.request

    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (built, never opened)
    return http_check._Redirect().redirect_request(request, None, 302, "Found", {}, newurl)


def test_redirects_keep_credentials_within_the_origin_only():
    headers = {"Authorization": "Bearer t", "Cookie": "s=1", "X-Api-Key": "k", "X-Custom": "v", "Accept": "a/b"}
    headers.update({"Proxy-Authorization": "Basic p", "User-Agent": "ua"})
    same = _redirected("http://h:8080/a", "http://H:8080/b", headers)
    assert sorted(k.lower() for k in same.headers) == sorted(k.lower() for k in headers)
    for newurl in ("https://h:8080/b", "http://h:8081/b", "http://other:8080/b", "http://u:p@other:8080/b"):
        new = _redirected("http://h:8080/a", newurl, headers)
        assert sorted(new.headers) == ["Accept", "User-agent"], newurl
        assert "u:p@" not in new.full_url
    with pytest.raises(urllib.error.HTTPError):
        _redirected("http://h/a", "ftp://h/file", headers)


def test_secret_headers_are_secrets_and_cannot_also_be_plain_headers():
    options = {
        "url": "http://h/",
        "headers": {"Accept": "x", "X-Token": "Bearer t1"},
        "secret_headers": {"X-Sig": "s2"},
    }
    assert sorted(http_check.secrets(options)) == ["Bearer t1", "s2", "t1"]
    assert http_check.validate(options) == []
    options["headers"]["x-sig"] = "plain"
    assert http_check.validate(options) == ["http.headers and http.secret_headers both set x-sig"]
    assert http_check.secrets({"url": 5, "headers": "Authorization=x"}) == []  # unvalidated input


# --- postgres / redis: turning server answers into metrics ---------------------------------
PG_ROW = dict(
    connections=45,
    max_connections=100,
    in_recovery=False,
    archive_mode="on",
    archived_count=10,
    failed_count=0,
    last_failed_wal=None,
    archive_age=40.2,
    failed_age=None,
    archive_failing=False,
    replication_lag=None,
    oldest_transaction=3.0,
)


# pg_wal's size (rows from servers that let the role list pg_wal carry these columns)
def _wal(row, **bounds):
    probe = probe_for(postgres_check, **bounds)
    postgres_check.measure(probe, {**PG_ROW, "can_list_wal": True, **row})
    return probe, by_name(probe)


def test_postgres_wal_size_defaults_and_levels():
    assert (postgres_check.METRICS["wal_size"].warn, postgres_check.METRICS["wal_size"].crit) == (2048, 4096)
    probe, m = _wal(dict(wal_bytes=64 * 1024 * 1024, wal_files=4))
    assert m["wal_size"]["value"] == 64.0 and m["wal_size"]["unit"] == "MB" and m["wal_size"]["status"] == "ok"
    assert m["wal_size"]["text"] == "pg_wal 64 MB in 4 files" and "pg_wal 64 MB" in probe.message
    assert _wal(dict(wal_bytes=3 * 1024**3, wal_files=192))[1]["wal_size"]["status"] == "warn"
    assert _wal(dict(wal_bytes=5 * 1024**3, wal_files=320))[1]["wal_size"]["status"] == "crit"
    assert _wal(dict(wal_bytes=200 * 1024**2, wal_files=13), wal_size=(100, 150))[1]["wal_size"]["status"] == "crit"


def test_postgres_wal_size_without_the_privilege_is_reported_not_guessed():
    m = _wal(dict(can_list_wal=False))[1]
    assert m["wal_size"]["value"] is None and m["wal_size"]["status"] == "ok"
    assert "grant pg_monitor" in m["wal_size"]["text"]
    probe = probe_for(postgres_check)
    postgres_check.measure(probe, dict(PG_ROW))  # an older row without the column: nothing about pg_wal
    assert "wal_size" not in by_name(probe)


def test_postgres_measure_healthy_primary():
    probe = probe_for(postgres_check)
    postgres_check.measure(probe, dict(PG_ROW))
    m = by_name(probe)
    assert m["connections"]["value"] == 45.0 and m["connections"]["status"] == "ok"
    assert m["connections"]["text"] == "PostgreSQL 45/100 connections (45 %)"
    assert m["archive_age"]["text"] == "last WAL archived 40 s ago" and m["archive_age"]["status"] == "ok"
    assert "replication_lag" not in m
    assert probe.message.startswith("45/100 connections (45 %), primary, last WAL archived 40 s ago")


def test_postgres_measure_failing_archive_busy_replica():
    row = dict(
        PG_ROW,
        connections=90,
        in_recovery=True,
        replication_lag=95.0,
        archive_failing=True,
        failed_count=7,
        last_failed_wal="000000010000000000000003",
        failed_age=120.0,
        archive_age=4000.0,
    )
    probe = probe_for(postgres_check)
    postgres_check.measure(probe, row)
    m = by_name(probe)
    assert m["connections"]["status"] == "crit"  # 90 % > 85
    assert m["replication_lag"]["status"] == "warn" and m["replication_lag"]["text"] == "replica lag 95 s"
    assert m["archive_failing"]["status"] == "crit" and m["archive_failing"]["value"] == 7
    assert m["archive_age"]["status"] == "crit"  # 4000 s > 3600
    assert "WAL archiving failing: 7 failures, the last on 000000010000000000000003 2 min ago" in probe.message


def test_postgres_measure_archiving_off_and_thresholds():
    probe = probe_for(postgres_check, connections=(40, 50))
    postgres_check.measure(probe, dict(PG_ROW, archive_mode="off"))
    m = by_name(probe)
    assert "archive_age" not in m and "WAL archiving off" in probe.message
    assert m["connections"]["status"] == "warn"


REDIS_INFO = dict(
    used_memory=512 * 1024**2,
    maxmemory=1024**3,
    total_system_memory=8 * 1024**3,
    keyspace_hits=870,
    keyspace_misses=130,
    evicted_keys=0,
    rejected_connections=0,
    role="master",
)


def test_redis_measure_healthy():
    probe = probe_for(redis_check)
    redis_check.measure(probe, dict(REDIS_INFO))
    m = by_name(probe)
    assert (m["memory"]["value"], m["memory"]["text"]) == (50.0, "Redis memory 50 %")
    assert (m["hit_rate"]["value"], m["hit_rate"]["status"], m["hit_rate"]["text"]) == (87.0, "ok", "hit rate 87 %")
    assert all(x["status"] == "ok" for x in probe.metrics)
    assert probe.message.startswith("memory 512 MiB of 1 GiB (50 %, noeviction), hit rate 87 %")


def test_redis_measure_low_hit_rate_rejections_and_broken_replica():
    info = dict(
        REDIS_INFO,
        keyspace_hits=100,
        keyspace_misses=300,
        rejected_connections=2,
        role="slave",
        master_link_status="down",
        master_host="10.0.0.6",
        master_port=6379,
        maxmemory=0,
    )
    probe = probe_for(redis_check)
    redis_check.measure(probe, info)
    m = by_name(probe)
    assert m["hit_rate"]["value"] == 25.0 and m["hit_rate"]["status"] == "warn"
    assert m["rejected_connections"]["status"] == "warn"
    assert m["master_link"]["status"] == "crit"
    assert m["memory"]["value"] == 6.2 and "no maxmemory" in m["memory"]["text"]


def test_redis_too_few_lookups_are_reported_not_judged():
    # a fresh cache: one miss is not a 0 % hit rate worth a warning
    probe = probe_for(redis_check)
    redis_check.measure(probe, dict(REDIS_INFO, keyspace_hits=0, keyspace_misses=1))
    m = by_name(probe)
    assert (m["hit_rate"]["value"], m["hit_rate"]["status"]) == (0.0, "ok")
    assert "too few lookups to judge" in m["hit_rate"]["text"]
    probe = probe_for(redis_check)
    redis_check.measure(probe, dict(REDIS_INFO, keyspace_hits=0, keyspace_misses=redis_check.MIN_LOOKUPS))
    assert by_name(probe)["hit_rate"]["status"] == "warn"


def test_load_in_a_container_with_the_machines_loadavg_is_not_judged():
    files = {"/run/systemd/container": "docker\n", "/proc/mounts": "overlay / overlay rw 0 0\n"}
    assert load_check.shared_loadavg(read=files.get, exists=lambda p: False) == "docker"
    assert load_check.shared_loadavg(read={}.get, exists=lambda p: p == "/.dockerenv") == "docker"
    # lxcfs gives the container its own /proc/loadavg: judged
    files["/proc/mounts"] += "lxcfs /proc/loadavg fuse.lxcfs rw 0 0\n"
    assert load_check.shared_loadavg(read=files.get, exists=lambda p: False) is None
    # not a container
    assert load_check.shared_loadavg(read={}.get, exists=lambda p: False) is None


def test_redis_no_lookups_is_not_a_low_hit_rate():
    probe = probe_for(redis_check)
    redis_check.measure(probe, dict(REDIS_INFO, keyspace_hits=0, keyspace_misses=0))
    assert by_name(probe)["hit_rate"]["value"] is None and by_name(probe)["hit_rate"]["status"] == "ok"


# --- host resources -----------------------------------------------------------------------
def test_disk_usage_agrees_with_df(tmp_path):
    space, inodes, free, size = disk_check.usage(str(tmp_path))
    out = subprocess.run(["df", "-P", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    df_pct = int(out.splitlines()[1].split()[4].rstrip("%"))  # df rounds up
    assert df_pct - 1 <= space <= df_pct
    assert 0 <= free <= size
    assert inodes is None or 0 <= inodes <= 100


def test_disk_missing_path():
    with pytest.raises(CheckFailed, match="/nonexistent/bosun: no such file or directory"):
        disk_check.run(probe_for(disk_check), {"path": "/nonexistent/bosun"})


def test_memory_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000000 kB\nMemFree:     100000 kB\nMemAvailable:    220000 kB\n")
    probe = probe_for(memory_check)
    memory_check.run(probe, {}, path=str(meminfo))
    assert probe.metrics[0]["value"] == 78.0 and probe.metrics[0]["status"] == "warn"
    assert probe.metrics[0]["text"] == "memory 78 %"
    (tmp_path / "old").write_text("MemTotal: 1000 kB\n")
    with pytest.raises(CheckFailed) as err:
        memory_check.run(probe_for(memory_check), {}, path=str(tmp_path / "old"))
    assert err.value.status == "unknown"


def test_load_is_per_core_percentage():
    probe = probe_for(load_check)
    load_check.run(probe, {"period": 1})
    (metric,) = probe.metrics
    assert metric["unit"] == "%" and metric["value"] >= 0
    assert "on %d core" % load_check.cores() in probe.message


# --- commands ---------------------------------------------------------------------------
def test_run_argv_kills_on_timeout_and_names_missing_programs():
    start = time.monotonic()
    with pytest.raises(CheckFailed, match="sleep timed out after 0.5 s"):
        base.run_argv(["sleep", "30"], 0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(CheckFailed, match="command not found: /nonexistent/bosun-tool"):
        base.run_argv(["/nonexistent/bosun-tool"], 1)
    assert base.run_argv(["sh", "-c", "echo out; echo err >&2; exit 3"], 5) == (3, "out\n", "err\n")


def test_nginx_argv():
    assert nginx_config_check.argv({}) == ["nginx", "-t", "-q"]
    assert nginx_config_check.argv({"binary": "/usr/sbin/nginx", "config": "/e/n.conf", "prefix": "/p"}) == [
        "/usr/sbin/nginx",
        "-t",
        "-q",
        "-p",
        "/p",
        "-c",
        "/e/n.conf",
    ]


def test_causes_in_plain_words():
    assert base.cause(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert base.cause(socket.timeout("timed out"), 2) == "timed out after 2 s"
    assert base.cause(socket.gaierror(-2, "Name or service not known")).startswith("DNS lookup failed")
    assert base.cause(FileNotFoundError(2, "No such file or directory")) == "no such file or directory"
    assert base.classify_text('FATAL:  password authentication failed for user "app"') == "authentication failed"
    assert base.classify_text("WRONGPASS invalid username-password pair") == "authentication failed"
    assert base.classify_text("timeout expired", 3) == "timed out after 3 s"
    assert base.fmt_duration(40) == "40 s" and base.fmt_duration(900) == "15 min" and base.fmt_duration(7200) == "2 h"


def test_probe_deadline_and_now():
    probe = Probe("x", 2, {})
    assert 0 < probe.remaining() <= 2
    assert datetime.datetime.now(datetime.timezone.utc).year >= 2024
    assert os.path.isabs(__file__)


# --- http: a slow response is measured again ---------------------------------------------
def _scripted(monkeypatch, responses):
    """Replace the network exchange with scripted (status, latency ms) answers, in order."""
    calls = []

    def exchange(probe, opener, request, method, shown):
        code, latency = responses[len(calls)]
        calls.append(latency)
        return code, b"", latency

    monkeypatch.setattr(http_check, "_exchange", exchange)
    return calls


def _http(options, warn=200, crit=500):
    probe = probe_for(http_check, latency=(warn, crit))
    http_check.run(probe, dict({"url": "http://h/health"}, **options))
    return probe, by_name(probe)["latency"]


def test_http_slow_response_is_confirmed_before_it_counts(monkeypatch):
    calls = _scripted(monkeypatch, [(200, 747.0), (200, 12.0), (200, 9.0)])
    probe, latency = _http({})
    assert calls == [747.0, 12.0]  # a fast second response ends the measuring
    assert (latency["value"], latency["status"]) == (12.0, "ok")
    assert "fastest of 2" in probe.message


def test_http_latency_slow_every_time_is_judged_on_the_fastest(monkeypatch):
    calls = _scripted(monkeypatch, [(200, 900.0), (200, 650.0), (200, 700.0), (200, 5.0)])
    probe, latency = _http({})
    assert calls == [900.0, 650.0, 700.0]  # the first and slow_retries (2) more, no further
    assert (latency["value"], latency["status"]) == (650.0, "crit")
    assert "fastest of 3" in latency["text"]


def test_http_slow_retries_zero_judges_the_first_response(monkeypatch):
    calls = _scripted(monkeypatch, [(200, 300.0), (200, 5.0)])
    probe, latency = _http({"slow_retries": 0})
    assert calls == [300.0]
    assert (latency["value"], latency["status"]) == (300.0, "warn")
    assert "fastest" not in probe.message


def test_http_fast_response_and_failed_status_are_never_retried(monkeypatch):
    calls = _scripted(monkeypatch, [(200, 20.0), (200, 5.0)])
    _http({})
    assert calls == [20.0]
    calls = _scripted(monkeypatch, [(503, 900.0), (200, 5.0)])
    probe = probe_for(http_check)
    with pytest.raises(CheckFailed, match="HTTP 503 in 900 ms, expected 200"):
        http_check.run(probe, {"url": "http://h/health"})
    assert calls == [900.0]
    assert by_name(probe)["latency"]["value"] == 900.0  # measured even when the status is wrong


def test_http_retry_with_an_unexpected_status_fails_the_check(monkeypatch):
    _scripted(monkeypatch, [(200, 900.0), (502, 30.0)])
    probe = probe_for(http_check)
    with pytest.raises(CheckFailed, match=r"HTTP 502 in 30 ms, expected 200 \(request 2\)"):
        http_check.run(probe, {"url": "http://h/health"})
    assert by_name(probe)["latency"]["value"] == 30.0


def test_http_slow_retries_must_not_be_negative():
    problems = http_check.validate({"url": "http://h/", "slow_retries": -1})
    assert problems == ["http.slow_retries must be 0 or more (got -1)"]
