"""Behaviour of a search host converged with bosun.platform.elasticsearch.

Clients talk to the node from bosun-es-app1 (curl over the private network, as the app
would); the firewall lets nobody else in, the test machine (the network's gateway)
included. The maintenance module runs on the search host itself, as the maintenance job
does. The tests run in file order; the last one changes a setting and restarts the node.
"""

import datetime
import json
import os
import socket
import subprocess

import pytest

SEARCH = "172.30.218.10"
URL = "https://%s:9200" % SEARCH
APP_HOST = "bosun-es-app1"
CA_ON_APP = "/etc/ssl/bosun-es-ca.crt"
CA = "/etc/elasticsearch/tls/ca.crt"
ELASTIC = ("elastic", "el pa'ss$ word")
APP = ("app", "app pa'ss$ 1")
MONITOR = ("monitor", "monitor-secret")
MAINT = ("maint", "maint $ecret'")
SECRETS = [user[1] for user in (ELASTIC, APP, MONITOR, MAINT)]
SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))

testinfra_hosts = ["bosun-es-search1"]


def _docker(container, *argv, stdin=""):
    argv = ["docker", "exec", "-i", container, *argv]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module", autouse=True)
def app_host_trusts_the_ca(host):
    """The role's CA certificate on the app host, as an app would be given it."""
    proc = _docker(APP_HOST, "sh", "-c", "cat > %s" % CA_ON_APP, stdin=host.file(CA).content_string)
    assert proc.returncode == 0, proc.stderr


def _curl(method, path, user=None, body=None, url=URL, extra=()):
    """One request from the app host; (curl exit code, HTTP status, parsed body or text).

    The credentials go to curl in a config file on standard input, not in argv.
    """
    config = 'user = "%s:%s"\n' % user if user else ""
    argv = ["curl", "-sS", "--max-time", "20", "--cacert", CA_ON_APP, "-K", "-", "-X", method, *extra]
    argv += ["-w", "\n%{http_code}", url + path]
    if body is not None:
        config += 'header = "Content-Type: application/json"\ndata = %s\n' % json.dumps(json.dumps(body))
    proc = _docker(APP_HOST, *argv, stdin=config)
    text, _sep, status = proc.stdout.rpartition("\n")
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = text
    return proc.returncode, int(status or 0), payload


def _ansible(argv, extra_vars=None, tmp_path=None):
    """Run an Ansible command with the json callback; (rc, parsed output, raw output)."""
    if extra_vars is not None:
        path = tmp_path / "vars.json"
        path.write_text(json.dumps(extra_vars))
        argv = [*argv, "--extra-vars", "@%s" % path]
    proc = subprocess.run(
        argv,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stdout + proc.stderr


def _maintenance(tmp_path, user, **args):
    """bosun.platform.elasticsearch_maintenance on the search host as ``user``; its result and output."""
    name, password = user
    args.update(url=URL, login_user=name, ca_cert=CA)
    args["login_password"] = "{{ __es_test_password }}"
    argv = ["ansible", "--inventory", INVENTORY, "bosun-es-search1", "-m", "bosun.platform.elasticsearch_maintenance"]
    argv += ["-a", json.dumps(args)]
    _rc, out, raw = _ansible(argv, {"__es_test_password": password}, tmp_path)
    (result,) = out["plays"][0]["tasks"][0]["hosts"].values()
    return result, raw


def _elastic(method, path, body=None):
    _rc, status, payload = _curl(method, path, ELASTIC, body)
    assert status < 300, (method, path, status, payload)
    return payload


def _starts(host):
    """How many times systemd has started the unit since the container booted."""
    return host.check_output("journalctl -u elasticsearch -o cat | grep -c '^Started elasticsearch' || true")


def test_service_runs_and_is_enabled(host):
    service = host.service("elasticsearch")
    assert service.is_running
    assert service.is_enabled


def test_cluster_is_green(host):
    _rc, status, health = _curl("GET", "/_cluster/health", MONITOR)
    assert status == 200, health
    assert health["status"] == "green"
    assert health["cluster_name"] == "bosun-search"
    assert health["number_of_nodes"] == 1


def test_listens_on_localhost_and_private_address_only(host):
    for port in (9200, 9300):
        out = host.check_output("ss -ltnH 'sport = :%d'" % port)
        addresses = {line.split()[3].rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:") for line in out.splitlines()}
        assert addresses == {"127.0.0.1", SEARCH}, (port, addresses)


def test_plain_http_is_refused():
    rc, status, _body = _curl("GET", "/_cluster/health", MONITOR, url="http://%s:9200" % SEARCH)
    assert rc != 0 and status == 0


def test_certificate_is_the_role_ca_s_and_names_the_address():
    # without the CA the certificate is not trusted ...
    rc, _status, _body = _curl(
        "GET", "/_cluster/health", MONITOR, extra=["--cacert", "/etc/ssl/certs/ca-certificates.crt"]
    )
    assert rc == 60
    # ... with it, the private address verifies (curl checks the name)
    rc, status, _body = _curl("GET", "/_cluster/health", MONITOR)
    assert (rc, status) == (0, 200)


def test_authentication_is_required():
    _rc, status, _body = _curl("GET", "/_cluster/health")
    assert status == 401


def test_wrong_password_is_refused_and_not_shown(tmp_path):
    _rc, status, _body = _curl("GET", "/_cluster/health", ("monitor", "not the password"))
    assert status == 401
    wrong = "wr0ng pa'ss$ " + datetime.datetime.now().strftime("%H%M%S")
    result, raw = _maintenance(tmp_path, ("maint", wrong), action="shard_report")
    assert result.get("failed") and "401" in result["msg"], result
    assert wrong not in raw


def test_app_user_indexes_and_searches_but_cannot_delete_an_index():
    settings = {"settings": {"number_of_replicas": 0}}
    _rc, status, body = _curl("PUT", "/app-orders", APP, settings)
    assert status == 200, body
    _rc, status, body = _curl("PUT", "/app-orders/_doc/1?refresh=true", APP, {"item": "espresso"})
    assert status == 201, body
    _rc, status, body = _curl("GET", "/app-orders/_search?q=item:espresso", APP)
    assert status == 200 and body["hits"]["total"]["value"] == 1, body
    _rc, status, body = _curl("DELETE", "/app-orders", APP)
    assert status == 403, body
    # and nothing outside its indices
    _rc, status, body = _curl("PUT", "/logs-app/_doc/1", APP, {"x": 1})
    assert status == 403, body
    assert _elastic("GET", "/_cat/indices/app-orders?format=json")[0]["docs.count"] == "1"


def test_monitor_user_reads_statistics_but_no_data():
    _rc, status, _body = _curl("GET", "/_nodes/stats/jvm", MONITOR)
    assert status == 200
    _rc, status, _body = _curl("GET", "/app-orders/_search", MONITOR)
    assert status == 403
    _rc, status, _body = _curl("PUT", "/app-orders/_doc/2", MONITOR, {"item": "tea"})
    assert status == 403


def test_maintenance_deletes_only_old_indices_after_a_snapshot(tmp_path):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y.%m.%d")
    old = ["logs-2020.01.01", "logs-2020.01.02"]
    for name in [*old, "logs-" + today, "audit-2020.01.01"]:
        _elastic("PUT", "/" + name, {"settings": {"number_of_replicas": 0}})
        _elastic("PUT", "/%s/_doc/1?refresh=true" % name, {"msg": name})
    args = dict(action="cleanup", patterns=["logs-*"], older_than_days=30, age_from="name")
    args.update(snapshot_repository="backups", snapshot_keep_last=1)
    result, raw = _maintenance(tmp_path, MAINT, **args)
    assert not result.get("failed") and result["changed"], result
    assert sorted(result["deleted"]) == old, result
    for secret in SECRETS:
        assert secret not in raw
    left = {row["index"] for row in _elastic("GET", "/_cat/indices/logs-*,audit-*?format=json")}
    assert left == {"logs-" + today, "audit-2020.01.01"}
    snapshots = _elastic("GET", "/_snapshot/backups/bosun-cleanup-*")["snapshots"]
    assert len(snapshots) == 1 and snapshots[0]["state"] == "SUCCESS", snapshots
    assert sorted(snapshots[0]["indices"]) == old
    # a second cleanup prunes the first snapshot (keep_last 1): the role lets it delete snapshots
    _elastic("PUT", "/logs-2020.01.03", {"settings": {"number_of_replicas": 0}})
    result, _raw = _maintenance(tmp_path, MAINT, **args)
    assert result["deleted"] == ["logs-2020.01.03"] and not result.get("failed"), result
    snapshots = _elastic("GET", "/_snapshot/backups/bosun-cleanup-*")["snapshots"]
    assert [s["indices"] for s in snapshots] == [["logs-2020.01.03"]], snapshots
    assert _snapshot_files_exist()


def _snapshot_files_exist():
    proc = _docker("bosun-es-search1", "sh", "-c", "ls /var/backups/elasticsearch | grep -c '^index-'")
    return proc.stdout.strip() != "0"


def test_firewall_lets_the_app_host_in_and_nobody_else():
    rc, status, _body = _curl("GET", "/_cluster/health", MONITOR)
    assert (rc, status) == (0, 200)
    with pytest.raises(OSError):
        socket.create_connection((SEARCH, 9200), timeout=3).close()
    # the transport port is for the cluster's nodes only
    proc = _docker(APP_HOST, "curl", "-sS", "--max-time", "3", "-o", "/dev/null", "telnet://%s:9300" % SEARCH)
    assert proc.returncode != 0


def test_configuration_is_readable_by_root_and_the_service_only(host):
    conf = host.file("/etc/elasticsearch")
    assert (conf.user, conf.group, conf.mode) == ("root", "elasticsearch", 0o2750)
    names = ("elasticsearch.yml", "users", "users_roles", "roles.yml", "tls/node.key", "jvm.options.d/heap.options")
    for name in names:
        f = host.file("/etc/elasticsearch/" + name)
        assert f.mode & 0o007 == 0, name
    assert host.file("/etc/elasticsearch/elasticsearch.keystore").mode == 0o660
    users = host.file("/etc/elasticsearch/users").content_string
    assert all(line.split(":", 1)[1].startswith("$2a$10$") for line in users.splitlines())
    for secret in SECRETS:
        assert secret not in users
    ca_key = host.file("/etc/elasticsearch-ca/ca.key")
    assert (ca_key.user, ca_key.mode) == ("root", 0o600)


def test_heap_and_kernel_settings(host):
    nodes = _elastic("GET", "/_nodes/jvm")["nodes"]
    (node,) = nodes.values()
    assert node["jvm"]["mem"]["heap_max_in_bytes"] == 256 * 1024 * 1024
    assert host.file("/etc/sysctl.d/62-bosun-elasticsearch.conf").contains("vm.max_map_count = 262144")


def test_started_once_through_converge_idempotence_and_checks(host):
    """Neither the second converge nor the check runs restarted the node."""
    assert _starts(host) == "1"


def _converge(tmp_path, extra_vars):
    """converge.yml with extra variables; (rc, names of the changed and of the failed tasks, output)."""
    argv = ["ansible-playbook", "--inventory", INVENTORY, os.path.join(SCENARIO, "converge.yml")]
    rc, out, raw = _ansible(argv, extra_vars, tmp_path)
    tasks = [task for play in out["plays"] for task in play["tasks"]]
    changed = [
        t["task"]["name"].split(" : ", 1)[-1] for t in tasks if any(r.get("changed") for r in t["hosts"].values())
    ]
    failed = [
        (t["task"]["name"].split(" : ", 1)[-1], r.get("msg", ""))
        for t in tasks
        for r in t["hosts"].values()
        if r.get("failed")
    ]
    return rc, changed, failed, raw


@pytest.mark.parametrize(
    ("extra_vars", "task", "words", "changes"),
    [
        # a string is not an operator's false: security stays on, the run stops
        ({"elasticsearch_security": "false"}, "Refuse a security setting that is not a boolean", ['"false"'], []),
        ({"elasticsearch_heap_size": "64g"}, "Refuse a heap size Elasticsearch would not take", ["64g", "31g"], []),
        ({"elasticsearch_settings": {"path.data": "/srv"}}, "Refuse settings the role owns", ["path.data"], []),
        # the archive is copied, found different and deleted; nothing is unpacked
        (
            {"elasticsearch_archive_sha256": "0" * 64},
            "Refuse an archive whose checksum differs",
            ["0" * 64, "deleted"],
            ["Copy the archive from the controller", "Delete an archive whose checksum differs"],
        ),
    ],
)
def test_bad_input_is_refused_naming_the_variable(host, tmp_path, extra_vars, task, words, changes):
    state = "sha256sum /etc/elasticsearch/elasticsearch.yml; ls -A /var/cache/bosun-elasticsearch /opt/elasticsearch"
    before = host.check_output(state)
    rc, changed, failed, raw = _converge(tmp_path, extra_vars)
    assert rc != 0
    assert [entry[0] for entry in failed] == [task], failed
    (variable,) = extra_vars
    assert variable in failed[0][1] and all(word in failed[0][1] for word in words), failed
    assert changed == changes
    for secret in SECRETS:
        assert secret not in raw
    assert host.check_output(state) == before


def test_changed_setting_restarts_the_node_once(host, tmp_path):
    pid_before = host.check_output("systemctl show -p MainPID --value elasticsearch")
    rc, changed, _failed, raw = _converge(tmp_path, {"elasticsearch_settings": {"node.attr.rack": "r1"}})
    assert rc == 0, raw[-3000:]
    # the file, the handler, the one restart; users, certificates and the rest unchanged
    assert changed == ["Write the node's configuration", "Restart Elasticsearch", "Restart the service"], changed
    for secret in SECRETS:
        assert secret not in raw
    pid_after = host.check_output("systemctl show -p MainPID --value elasticsearch")
    assert pid_after not in ("0", pid_before)
    assert _starts(host) == "2"
    (node,) = _elastic("GET", "/_nodes/_local")["nodes"].values()
    assert node["attributes"]["rack"] == "r1"
