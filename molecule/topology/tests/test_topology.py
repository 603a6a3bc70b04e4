"""The whole platform through its playbooks: deploy, rollout under traffic, automatic
rollback of a broken release, rollback.yml, the platform lock (deploy, restore, cache flush),
and a host lost mid-deploy.

The tests run in file order: each starts from the state the previous one left.
"""

import fnmatch
import http.client
import json
import os
import ssl
import subprocess
import threading
import time

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
DIST = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "lab", "dist")
LB = "172.30.214.10"
APPS = {"app1": "172.30.214.21", "app2": "172.30.214.22"}
SERVER_NAME = "lab.bosun.test"
UPSTREAM_FILE = "/etc/nginx/bosun/upstream-app.conf"

testinfra_hosts = ["lb1"]


def _playbook(name, *extra_vars, timeout=600):
    """Run a playbook of the collection against the scenario's hosts; (rc, output)."""
    argv = ["ansible-playbook", "--inventory", INVENTORY, os.path.join(PROJECT, "playbooks", name)]
    for extra in extra_vars:
        argv += ["--extra-vars", json.dumps(extra)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _get(address, path, port=443, tls=True, timeout=10):
    """One request on a new connection (no keep-alive); (status, parsed JSON or None)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": SERVER_NAME, "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def _served_release():
    status, body = _get(LB, "/version")
    assert status == 200, (status, body)
    return body["release"]


def _app_release(name):
    status, body = _get(APPS[name], "/version", port=8000, tls=False)
    assert status == 200, (name, status, body)
    return body["release"]


def _upstream_down(host):
    """The members marked down in the load balancer's upstream (its state line)."""
    content = host.file(UPSTREAM_FILE).content_string
    line = next(raw for raw in content.splitlines() if raw.startswith("# bosun-upstream-state:"))
    return json.loads(line.split(":", 1)[1])["down"]


def _docker_exec(container, *argv):
    proc = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, check=False)
    return proc.stdout


class RequestLoop:
    """GET /version through nginx until stopped: bounded in count and time, paced below
    the lab's rate limit (10 r/s), one connection per request."""

    def __init__(self, max_requests=1500, max_seconds=400, pause=0.15):
        self.max_requests, self.max_seconds, self.pause = max_requests, max_seconds, pause
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and len(self.results) < self.max_requests and time.monotonic() < deadline:
            try:
                status, body = _get(LB, "/version", timeout=15)
                self.results.append((status, (body or {}).get("release")))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((repr(exc), None))
            time.sleep(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)


def test_01_site_then_deploy_v1_serves_v1_through_nginx(host):
    rc, out = _playbook("deploy.yml", {"release": "1.0.0"})
    assert rc == 0, out[-3000:]
    assert _served_release() == "1.0.0"
    assert {_app_release(name) for name in APPS} == {"1.0.0"}
    # The controller's deployment log has the line.
    log = open(os.path.join(DIST, "..", "deployments.log"), encoding="utf-8").read()
    assert "deploy release=1.0.0 result=ok" in log


def test_02_deploy_v2_under_traffic_fails_no_request(host):
    with RequestLoop() as loop:
        time.sleep(1)
        rc, out = _playbook("deploy.yml", {"release": "2.0.0"})
        time.sleep(1)
    assert rc == 0, out[-3000:]
    statuses = [result[0] for result in loop.results]
    assert len(statuses) >= 20, "the request loop hardly ran"
    failed = [result for result in loop.results if result[0] != 200]
    assert not failed, "%d of %d requests failed during the rollout: %s" % (len(failed), len(statuses), failed[:5])
    # Both releases answered during the rollout, and v2 at the end.
    assert {"1.0.0", "2.0.0"} <= {result[1] for result in loop.results}
    assert _served_release() == "2.0.0"
    assert _upstream_down(host) == []


def test_03_broken_v3_fails_and_every_host_serves_v2_again(host):
    artifact = os.path.join(DIST, "bosun-example-app-3.0.0-broken.tar.gz")
    rc, out = _playbook("deploy.yml", {"artifact": artifact, "bosun_deploy_gate_timeout": 10})
    assert rc != 0
    assert "deploy of release 3.0.0 FAILED: app1 failed at gate" in out
    assert "app health" in out
    assert "rolled back to the release they ran before: app1" in out
    assert {_app_release(name) for name in APPS} == {"2.0.0"}
    assert _served_release() == "2.0.0"
    assert _upstream_down(host) == [], "every upstream member must be enabled again"
    record = json.loads(_docker_exec("app1", "tail", "-n", "1", "/var/lib/bosun/deploys.jsonl"))
    assert (record["release"], record["result"], record["host_release"]) == ("3.0.0", "failed, rolled back", "2.0.0")


def _psql(sql):
    return _docker_exec("db1", "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", "example", "-c", sql)


def test_04_rollback_to_v1_with_the_pre_deploy_dump(host):
    """rollback.yml -e restore_dump=true: the code goes back to 1.0.0, then the database is
    replaced by the dump 2.0.0's deploy took (found by its label), after a safety dump; a
    table written since is gone."""
    _psql("CREATE TABLE written_after_the_deploy (id int)")
    refused, out = _playbook("rollback.yml", {"release": "1.0.0", "restore_dump": True})
    assert refused != 0 and "repeat its name with -e confirm_restore=example" in out
    assert _psql("SELECT to_regclass('written_after_the_deploy') IS NOT NULL").strip() == "t"
    rc, out = _playbook("rollback.yml", {"release": "1.0.0", "restore_dump": True, "confirm_restore": "example"})
    assert rc == 0, out[-3000:]
    assert {_app_release(name) for name in APPS} == {"1.0.0"}
    assert _served_release() == "1.0.0"
    assert _upstream_down(host) == []
    assert _psql("SELECT to_regclass('written_after_the_deploy') IS NULL").strip() == "t"
    dumps = _docker_exec("db1", "ls", "/var/backups/postgresql/example")
    assert "pre-rollback-restore" in dumps


def test_05_deploy_refused_while_the_lock_is_held(host):
    taken = host.ansible("bosun.platform.platform_lock", "taken_by=alice job=maintenance-vacuum", check=False)
    assert taken["changed"], taken
    try:
        rc, out = _playbook("deploy.yml", {"release": "2.0.0"})
        assert rc != 0
        assert "is held by alice running maintenance-vacuum" in out
        assert _served_release() == "1.0.0"
    finally:
        host.ansible("bosun.platform.platform_lock", "state=released token=%s" % taken["token"], check=False)


@pytest.mark.parametrize("job", ["backup", "restore_drill", "vacuum", "db_report", "cache", "host", "certs"])
def test_06_maintenance_job_runs_on_the_platform(host, job):
    results = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "maintenance")
    argv = ["ansible-playbook", "--inventory", INVENTORY, os.path.join(PROJECT, "playbooks", "maintenance.yml")]
    argv += ["--tags", job, "--extra-vars", json.dumps({"bosun_maintenance_result_dir": results})]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(os.path.join(results, job + ".json"), encoding="utf-8") as handle:
        result = json.load(handle)
    assert result["status"] == "ok", result
    assert result["hosts"], result


def test_06a_backup_takes_the_zstd_stream_path(host):
    """backup.yml with its defaults (compression: auto) streams the dump through zstd: the
    postgresql role installs zstd on every db host, WAL archiving or not."""
    rc, out = _playbook("backup.yml", {"bosun_backup_databases": ["example"]})
    assert rc == 0, out[-3000:]
    listing = _docker_exec("db1", "sh", "-c", "ls -1t /var/backups/postgresql/example/*.manifest.json | head -1")
    manifest = json.loads(_docker_exec("db1", "cat", listing.strip()))
    assert (manifest["compression"], manifest["compression_via"]) == ("zstd", "stream"), manifest
    dump = os.path.join(os.path.dirname(listing.strip()), manifest["file"])
    magic = _docker_exec("db1", "sh", "-c", "head -c 4 '%s' | od -An -tx1" % dump).split()
    assert magic == ["28", "b5", "2f", "fd"], (dump, magic)  # the zstd frame magic


def _databases(pattern):
    """The databases of db1 whose names match the shell-style ``pattern``."""
    sql = "SELECT datname FROM pg_database ORDER BY 1"
    names = _docker_exec("db1", "runuser", "-u", "postgres", "--", "psql", "-XAtc", sql).split()
    return fnmatch.filter(names, pattern)


def test_06b_restore_refused_while_a_deploy_holds_the_lock(host):
    """restore.yml (and cache_flush.yml) take the platform lock: while a deploy holds it they
    are refused, naming the holder, and change nothing."""
    assert _databases("example"), "the lab's database is missing"
    taken = host.ansible("bosun.platform.platform_lock", "taken_by=deploy job='deploy 2.0.0'", check=False)
    assert taken["changed"], taken
    try:
        rc, out = _playbook(
            "restore.yml",
            {"bosun_backup_restore_db": "example", "bosun_backup_restore_target_db": "example_restored"},
        )
        assert rc != 0, out[-3000:]
        assert "is held by deploy running deploy 2.0.0" in out
        assert "TASK [Check the backup's checksum" not in out  # refused before anything
        assert _databases("example_restored*") == [] and _databases("bosun_restore_*") == []

        rc, out = _playbook("cache_flush.yml", {"cache_group": "items"})
        assert rc != 0 and "is held by deploy running deploy 2.0.0" in out, out[-3000:]
    finally:
        host.ansible("bosun.platform.platform_lock", "state=released token=%s" % taken["token"], check=False)
    assert host.ansible("bosun.platform.platform_lock", "state=query", check=False)["holder"] is None


def test_07_git_ref_deploys_one_commit_everywhere(host, tmp_path):
    """app_source git: the ref is resolved once on the controller; every host runs that commit."""
    work, served = tmp_path / "work", tmp_path / "served"
    work.mkdir()
    served.mkdir()
    subprocess.run(["tar", "-xzf", os.path.join(DIST, "bosun-example-app-1.0.0.tar.gz"), "-C", str(work)], check=True)
    (work / "VERSION").write_text("9.9.9\n")
    git = ["git", "-C", str(work), "-c", "user.name=bosun", "-c", "user.email=bosun@bosun.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "release 9.9.9"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "app.git")], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    install = ["ansible", "-i", INVENTORY, "app", "-m", "ansible.builtin.apt", "-a", "name=git"]
    rc = subprocess.run(install, capture_output=True, check=False).returncode
    assert rc == 0, "git could not be installed on the app hosts"
    serve = ["git", "daemon", "--export-all", "--reuseaddr", "--listen=172.30.214.1", "--port=9418"]
    daemon = subprocess.Popen(
        serve + ["--base-path=%s" % served],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        rc, out = _playbook(
            "deploy.yml", {"app_source": "git", "app_git_repo": "git://172.30.214.1/app.git", "git_ref": "main"}
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert rc == 0, out[-3000:]
    release = "g" + commit[:12]
    assert {_app_release(name) for name in APPS} == {release}
    status, body = _get(LB, "/version")
    assert (status, body["version"]) == (200, "9.9.9")
    record = json.loads(_docker_exec("app2", "tail", "-n", "1", "/var/lib/bosun/deploys.jsonl"))
    assert record["checksum"] == "git:" + commit


def _current_release(name):
    return os.path.basename(_docker_exec(name, "readlink", "/srv/example/current").strip())


def test_08_host_lost_mid_deploy_stops_the_play_and_is_named(host):
    argv = ["ansible-playbook", "--inventory", INVENTORY, os.path.join(PROJECT, "playbooks", "deploy.yml")]
    argv += ["--extra-vars", json.dumps({"release": "2.0.0"})]
    deploy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # app1 is the first batch; once it runs 2.0.0, app2 goes away before its batch.
        deadline = time.monotonic() + 300
        while _current_release("app1") != "2.0.0":
            assert deploy.poll() is None, "the deploy ended before app1 switched"
            assert time.monotonic() < deadline, "app1 never switched"
            time.sleep(0.2)
        subprocess.run(["docker", "kill", "app2"], check=True, capture_output=True)
        out = deploy.communicate(timeout=600)[0]
    finally:
        if deploy.poll() is None:
            deploy.kill()
        subprocess.run(["docker", "start", "app2"], check=False, capture_output=True)
    assert deploy.returncode != 0
    assert "app2 failed at" in out
    assert "unreachable" in out
    # The platform keeps serving through the host that finished (and it stays in nginx).
    status = _get(LB, "/version")[0]
    assert status == 200
    assert "app1" not in _upstream_down(host)


@pytest.fixture(scope="module", autouse=True)
def _lab_state_dir_exists():
    assert os.path.isdir(DIST), "prepare.yml builds the example app into " + DIST
