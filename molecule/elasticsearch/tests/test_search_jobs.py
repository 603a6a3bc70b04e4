"""The search tier's maintenance jobs (playbooks/maintenance.yml, tags search_health,
search_shards, search_cleanup) run as the scheduler runs them, against the converged node.

They connect with the one ``bosun_elasticsearch`` dict (here: the maintenance user, the
role's CA on the search host) and leave a JSON result per job, as on the control host.
"""

import datetime
import json
import os
import subprocess

SEARCH = "172.30.218.10"
URL = "https://%s:9200" % SEARCH
CA = "/etc/elasticsearch/tls/ca.crt"
ELASTIC_PASSWORD = "el pa'ss$ word"
MAINT = ("maint", "maint $ecret'")
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))

testinfra_hosts = ["bosun-es-search1"]


def _elastic(method, path, body=None):
    """A request as the elastic user from the search host (credentials on standard input)."""
    config = 'user = "elastic:%s"\n' % ELASTIC_PASSWORD
    if body is not None:
        config += 'header = "Content-Type: application/json"\ndata = %s\n' % json.dumps(json.dumps(body))
    argv = ["docker", "exec", "-i", "bosun-es-search1", "curl", "-sS", "--fail-with-body", "--cacert", CA, "-K", "-"]
    proc = subprocess.run(
        [*argv, "-X", method, URL + path], input=config, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, (method, path, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def _jobs(tmp_path, tags, **extra):
    """maintenance.yml with these tags; (rc, output, {job: result})."""
    results = tmp_path / "results"
    extra_vars = {
        "bosun_elasticsearch": {"url": URL, "login_user": MAINT[0], "login_password": MAINT[1], "ca_cert": CA},
        "bosun_maintenance_force": True,
        "bosun_maintenance_result_dir": str(results),
        "bosun_lock_host": "bosun-es-search1",
        **extra,
    }
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    argv = ["ansible-playbook", "--inventory", INVENTORY, os.path.join(PROJECT, "playbooks", "maintenance.yml")]
    argv += ["--tags", tags, "--extra-vars", "@%s" % (tmp_path / "vars.json")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    found = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")} if results.is_dir() else {}
    return proc.returncode, proc.stdout + proc.stderr, found


def test_health_and_shard_report_jobs(tmp_path):
    rc, out, results = _jobs(tmp_path, "search_health,search_shards")
    assert rc == 0, out[-3000:]
    assert MAINT[1] not in out
    health = results["search_health"]
    assert health["status"] == "ok", health
    (checks,) = health["work"].values()
    assert [(c["name"], c["status"]) for c in checks] == [("Elasticsearch", "ok")], checks
    shards = results["search_shards"]
    assert shards["status"] == "ok", shards
    (report,) = [w for w in shards["work"].values() if w]
    assert report["number_of_data_nodes"] == 1 and report["status"] in ("green", "yellow"), report


def test_cleanup_job_snapshots_then_deletes_only_the_old_indices(tmp_path):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y.%m.%d")
    for name in ["jobs-2021.03.01", "jobs-" + today]:
        _elastic("PUT", "/" + name, {"settings": {"number_of_replicas": 0}})
    rules = [{"patterns": ["jobs-*"], "older_than_days": 30, "age_from": "name"}]
    rc, out, results = _jobs(tmp_path, "search_cleanup", bosun_maintenance_search_cleanup=rules)
    assert rc == 0, out[-3000:]
    assert MAINT[1] not in out
    work = next(w for w in results["search_cleanup"]["work"].values() if w)
    assert work["deleted"] == ["jobs-2021.03.01"], work
    (snapshot,) = work["snapshots"]
    taken = _elastic("GET", "/_snapshot/backups/%s" % snapshot)["snapshots"][0]
    assert taken["state"] == "SUCCESS" and taken["indices"] == ["jobs-2021.03.01"], taken
    left = {row["index"] for row in _elastic("GET", "/_cat/indices/jobs-*?format=json")}
    assert left == {"jobs-" + today}


def test_cleanup_job_without_rules_is_refused_by_name(tmp_path):
    rc, out, results = _jobs(tmp_path, "search_cleanup")
    assert rc != 0
    assert "bosun_maintenance_search_cleanup" in out, out[-3000:]
    assert results["search_cleanup"]["status"].startswith("failed"), results["search_cleanup"]
