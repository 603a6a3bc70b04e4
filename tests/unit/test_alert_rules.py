"""The alert rules of the monitor tier (roles/prometheus/files/rules/*.rules.yml).

- ``promtool check rules`` accepts every rule file and ``promtool test rules`` passes every
  unit test file in tests/promtool/;
- every rule (alert name and severity) has a promtool test where it fires, and one where
  it stays silent at an evaluation time past its ``for`` with input series of the metrics
  it reads (the input just below its threshold);
- every rule carries a severity and a tier label and a summary and description naming the
  instance;
- every metric a rule reads is one its exporter really exports (names listed from the
  Debian 12 exporters) or a textfile metric the collection's own code writes.

promtool comes from scripts/install_promtool.sh (run by `make setup`: .cache/tools/bin/promtool),
or BOSUN_PROMTOOL, or PATH; without it the tests that run it fail, saying so.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES_DIR = os.path.join(ROOT, "roles", "prometheus", "files", "rules")
TESTS_DIR = os.path.join(ROOT, "tests", "promtool")

SEVERITIES = {"critical", "warning"}
TIERS = {"host", "postgresql", "redis", "nginx", "app", "tls", "backup", "maintenance", "search", "monitor"}

# Metric names seen on the /metrics of Debian 12's exporters, Prometheus and Alertmanager
# (packages prometheus, prometheus-alertmanager, prometheus-*-exporter), only those the
# rules read.
EXPORTED = {
    "prometheus 2.42": {"up", "prometheus_rule_evaluation_failures_total"},
    "alertmanager 0.25": {"alertmanager_notifications_failed_total"},
    "node exporter 1.5": {
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_readonly",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_cpu_seconds_total",
        "node_textfile_scrape_error",
    },
    "postgres exporter 0.11": {
        "pg_up",
        "pg_stat_activity_count",
        "pg_settings_max_connections",
        "pg_stat_archiver_failed_count",
        "pg_stat_archiver_last_archive_age",
        "pg_stat_database_tup_inserted",
        "pg_stat_database_tup_updated",
        "pg_stat_database_tup_deleted",
        # the custom queries "pg_replication" (column "lag") and "pg_wal" (column
        # "size_bytes") the exporters role gives the exporter
        "pg_replication_lag",
        "pg_wal_size_bytes",
    },
    "redis exporter 1.45": {
        "redis_up",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_evicted_keys_total",
        "redis_rejected_connections_total",
    },
    "nginx exporter 0.11": {"nginx_up"},
    "elasticsearch exporter 1.5": {
        "elasticsearch_cluster_health_status",
        "elasticsearch_cluster_health_up",
        "elasticsearch_jvm_memory_used_bytes",
        "elasticsearch_jvm_memory_max_bytes",
    },
    "blackbox exporter 0.23": {"probe_success", "probe_duration_seconds", "probe_ssl_earliest_cert_expiry"},
}
KNOWN = set().union(*EXPORTED.values())

PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def find_promtool():
    candidates = [
        os.environ.get("BOSUN_PROMTOOL", ""),
        os.path.join(ROOT, ".cache", "tools", "bin", "promtool"),
        shutil.which("promtool") or "",
    ]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


PROMTOOL = find_promtool()


def test_promtool_is_available():
    assert PROMTOOL, "no promtool: run make setup (scripts/install_promtool.sh)"


def _files(directory, suffix):
    return sorted(name for name in os.listdir(directory) if name.endswith(suffix))


RULE_FILES = _files(RULES_DIR, ".rules.yml")
TEST_FILES = _files(TESTS_DIR, ".test.yml")


def _load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def duration(text):
    """Prometheus duration ('1h30m', '90s', '0') -> seconds."""
    text = str(text).strip()
    if text in ("", "0"):
        return 0.0
    units = dict(ms=0.001, s=1, m=60, h=3600, d=86400, w=604800, y=31536000)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text)
    assert "".join(n + u for n, u in parts) == text, "not a duration: %r" % text
    return sum(float(n) * units[u] for n, u in parts)


_RULES = []


def rules():
    """(file, rule) for every alerting rule."""
    if _RULES:
        return _RULES
    out = _RULES
    for name in RULE_FILES:
        for group in _load(os.path.join(RULES_DIR, name))["groups"]:
            for rule in group["rules"]:
                out.append((name, rule))
    return out


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # the unit of a duration or a number such as 1e9
        names.add(word)
    return names


_CASES = []


def alert_cases():
    """(rule file names, group, alert_rule_test) for every alert test case."""
    if _CASES:
        return _CASES
    out = _CASES
    for name in TEST_FILES:
        data = _load(os.path.join(TESTS_DIR, name))
        rule_files = [os.path.basename(p) for p in data.get("rule_files") or []]
        for group in data.get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                out.append((rule_files, group, case))
    return out


def test_files_exist():
    assert RULE_FILES, "no rule files in %s" % RULES_DIR
    assert TEST_FILES, "no promtool test files in %s" % TESTS_DIR


@pytest.mark.parametrize("name", RULE_FILES)
def test_promtool_check_rules(name):
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", os.path.join(RULES_DIR, name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("name", TEST_FILES)
def test_promtool_test_rules(name):
    # rule_files are relative to the test file
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", name],
        cwd=TESTS_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_file_has_a_test_file():
    tested = set()
    for name in TEST_FILES:
        for path in _load(os.path.join(TESTS_DIR, name)).get("rule_files") or []:
            full = os.path.normpath(os.path.join(TESTS_DIR, path))
            assert os.path.isfile(full), "%s: rule file %s missing" % (name, path)
            tested.add(os.path.basename(full))
    assert set(RULE_FILES) <= tested, "rule files without promtool tests: %s" % sorted(set(RULE_FILES) - tested)


@pytest.mark.parametrize("name,rule", rules(), ids=lambda v: v if isinstance(v, str) else v.get("alert", "record"))
def test_rule_shape(name, rule):
    assert "alert" in rule, "%s: only alerting rules here (%s)" % (name, rule)
    assert re.match(r"^[A-Z][A-Za-z0-9]+$", rule["alert"]), rule["alert"]
    labels = rule.get("labels") or {}
    assert labels.get("severity") in SEVERITIES, rule["alert"]
    assert labels.get("tier") in TIERS, rule["alert"]
    annotations = rule.get("annotations") or {}
    for key in ("summary", "description"):
        assert "$labels.instance" in annotations.get(key, ""), "%s: %s must name the instance" % (rule["alert"], key)
    duration(rule.get("for", "0"))


def test_alert_names_unique_per_severity():
    seen = {}
    for name, rule in rules():
        key = (rule["alert"], rule["labels"]["severity"])
        assert key not in seen, "%s %s defined in %s and %s" % (key + (seen.get(key), name))
        seen[key] = name
    # an alert name lives in one file (its tests load that file only)
    files = {}
    for name, rule in rules():
        assert files.setdefault(rule["alert"], name) == name, rule["alert"]


@pytest.mark.parametrize("name,rule", rules(), ids=lambda v: v if isinstance(v, str) else v.get("alert", "record"))
def test_metrics_are_exported(name, rule):
    sources = [os.path.join(ROOT, "plugins"), os.path.join(ROOT, "roles")]
    for metric in metric_names(rule["expr"]):
        if metric.startswith("bosun_"):
            assert _written_by_collection(metric, sources), "%s: %s is written nowhere in the collection" % (
                rule["alert"],
                metric,
            )
        else:
            assert metric in KNOWN, "%s: %s is not a metric of the exporters" % (rule["alert"], metric)


_SOURCE_TEXT = {}


def _written_by_collection(metric, sources):
    if not _SOURCE_TEXT:
        chunks = []
        for top in sources:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if d != "rules"]
                for filename in filenames:
                    if filename.endswith((".py", ".j2", ".yml", ".sh")):
                        with open(os.path.join(dirpath, filename), encoding="utf-8", errors="replace") as f:
                            chunks.append(f.read())
        _SOURCE_TEXT["all"] = "\n".join(chunks)
    return re.search(r"\b%s\b" % re.escape(metric), _SOURCE_TEXT["all"]) is not None


@pytest.mark.parametrize("name,rule", rules(), ids=lambda v: v if isinstance(v, str) else v.get("alert", "record"))
def test_rule_fires_and_stays_silent_just_below(name, rule):
    alert, severity = rule["alert"], rule["labels"]["severity"]
    wait = duration(rule.get("for", "0"))
    metrics = metric_names(rule["expr"])
    fires, silent = [], []
    for rule_files, group, case in alert_cases():
        if case.get("alertname") != alert or name not in rule_files:
            continue
        expected = [a for a in case.get("exp_alerts") or [] if (a.get("exp_labels") or {}).get("severity") == severity]
        series = " ".join(s.get("series", "") for s in group.get("input_series") or [])
        reads_input = any(re.search(r"\b%s\{" % re.escape(m), series) for m in metrics)
        if expected:
            fires.append(group.get("name"))
        elif duration(case["eval_time"]) >= wait and reads_input:
            silent.append(group.get("name"))
    assert fires, "%s (%s): no promtool test where it fires" % (alert, severity)
    assert silent, "%s (%s): no promtool test where it stays silent past its 'for' (%ss) on input series" % (
        alert,
        severity,
        wait,
    )
