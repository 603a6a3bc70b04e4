"""Behaviour of an app host converged with bosun.platform.app and the example app."""

import http.client
import json
import os
import subprocess

SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
ROOT = "/srv/example"
GREETING = 'it\'s "$HOME" `x` \\ ok'


def _address(host):
    return host.interface("eth0").addresses[0]


def _get(host, path, data=None):
    """GET (or POST JSON `data`) on the app's port from outside; return (status, parsed body)."""
    conn = http.client.HTTPConnection(_address(host), 8000, timeout=15)
    try:
        if data is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _deploy(release, **extra):
    """deploy.yml: the role's release and switch entry points, as the deploy playbook uses them."""
    proc = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            INVENTORY,
            os.path.join(SCENARIO, "deploy.yml"),
            "--extra-vars",
            json.dumps({"release_id": release, **extra}),
        ],
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = json.loads(proc.stdout)
    shown = [
        result.get("msg", result.get("app_switch"))
        for play in out["plays"]
        for task in play["tasks"]
        if task["task"]["name"] in ("Show the result", "Show what the failed switch left for a rollback")
        for result in task["hosts"].values()
    ]
    failures = [
        result.get("msg", "")
        for play in out["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    return proc.returncode, (shown[0] if shown else None), failures


def _main_pid(host):
    return host.check_output("systemctl show -p MainPID --value example")


def test_service_runs_hardened_as_the_app_user(host):
    service = host.service("example")
    assert service.is_running
    assert service.is_enabled
    props = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show -p User,NoNewPrivileges,ProtectSystem,PrivateTmp,ProtectHome,Restart example"
        ).splitlines()
    )
    assert props == {
        "User": "example",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
    }
    assert host.check_output("ps -o user= -p %s" % _main_pid(host)) == "example"


def test_health_answers_200_with_database_and_redis(host):
    status, body = _get(host, "/health")
    assert status == 200
    assert body["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"


def test_release_layout(host):
    assert host.file(ROOT + "/current").linked_to == ROOT + "/releases/1.0.0"
    release = host.file(ROOT + "/releases/1.0.0")
    assert (release.user, release.group, release.mode) == ("root", "example", 0o750)
    assert host.file(ROOT + "/releases/1.0.0/.bosun-release.json").exists
    assert not host.file(ROOT + "/releases/1.0.0/.bosun-unfinished").exists
    assert host.file(ROOT + "/releases/1.0.0/.env").linked_to == ROOT + "/shared/.env"
    assert host.file(ROOT + "/releases/1.0.0/logs").linked_to == ROOT + "/shared/logs"
    env = host.file(ROOT + "/shared/.env")
    assert (env.user, env.mode) == ("example", 0o600)
    # The app cannot change its own code.
    assert host.run("runuser -u example -- touch %s/releases/1.0.0/x" % ROOT).rc != 0


def test_environment_file_reaches_the_process_intact(host):
    environ = host.check_output("tr '\\0' '\\n' < /proc/%s/environ" % _main_pid(host)).splitlines()
    assert "APP_GREETING=" + GREETING in environ


def test_pages_read_and_write_postgresql_through_the_redis_cache(host):
    status, created = _get(host, "/items", data=json.dumps({"name": "from the test"}).encode())
    assert status == 201
    status, first = _get(host, "/items")
    assert status == 200 and first["items"][0]["id"] == created["id"]
    assert first["cached"] is False
    assert _get(host, "/items")[1]["cached"] is True
    metrics = host.check_output("curl -s http://127.0.0.1:8000/metrics")
    assert 'bosun_example_build_info{release="1.0.0"' in metrics


def test_second_release_switches_current_and_keeps_the_first(host):
    pid_before = _main_pid(host)
    rc, shown, failures = _deploy("1.1.0")
    assert rc == 0, failures
    assert shown["release"]["installed"] is True
    assert shown["switch"]["changed"] is True and shown["switch"]["previous"] == "1.0.0"
    assert host.file(ROOT + "/current").linked_to == ROOT + "/releases/1.1.0"
    assert host.file(ROOT + "/previous").linked_to == ROOT + "/releases/1.0.0"
    assert host.file(ROOT + "/releases/1.0.0/.bosun-release.json").exists
    # Identical requirements: the same virtualenv serves both releases.
    assert host.file(ROOT + "/releases/1.1.0/.venv").linked_to == host.file(ROOT + "/releases/1.0.0/.venv").linked_to
    assert _main_pid(host) != pid_before
    assert _get(host, "/version")[1]["release"] == "1.1.0"
    assert _get(host, "/health")[0] == 200


def test_unfinished_release_is_never_switched_to(host):
    host.run("install -d -m 750 %s/releases/inflight && touch %s/releases/inflight/.bosun-unfinished" % (ROOT, ROOT))
    rc, _shown, failures = _deploy("inflight", switch_only=True)
    assert rc != 0
    assert "not a finished release" in " ".join(failures)
    assert host.file(ROOT + "/current").linked_to == ROOT + "/releases/1.1.0"


def test_broken_release_fails_its_health_gate_and_leaves_the_way_back(host):
    rc, app_switch, failures = _deploy("1.2.0", broken=True, app_health_timeout=5)
    assert rc != 0
    assert "switch to 1.2.0 failed" in " ".join(failures)
    # What a deploy needs to roll back: the fact, and the previous link.
    assert app_switch["previous"] == "1.1.0" and app_switch["healthy"] is False
    assert host.file(ROOT + "/previous").linked_to == ROOT + "/releases/1.1.0"
    assert _get(host, "/health")[0] == 503
    rc, shown, failures = _deploy("1.1.0", switch_only=True)
    assert rc == 0, failures
    assert shown["switch"]["healthy"] is True
    assert _get(host, "/version")[1]["release"] == "1.1.0"
    assert _get(host, "/health")[0] == 200


def test_rollback_and_pruning_keep_current_previous_and_installs_in_progress(host):
    # Older finished releases, a failed install (old marker), an install in progress
    # (fresh marker, made by the test above) and a directory the role did not make.
    for release, age in (("0.8.0", "3 days ago"), ("0.9.0", "2 days ago")):
        host.run(
            "install -d -m 750 {r}/releases/{v} && echo '{{}}' > {r}/releases/{v}/.bosun-release.json"
            " && touch -d '{a}' {r}/releases/{v}/.bosun-release.json".format(r=ROOT, v=release, a=age)
        )
    host.run(
        "install -d -m 750 {r}/releases/failed && touch -d '2 hours ago' {r}/releases/failed/.bosun-unfinished"
        " && install -d {r}/releases/by-hand".format(r=ROOT)
    )
    # Roll back to 1.0.0 (the oldest real release) keeping a single release: the newest
    # (1.2.0), current (1.0.0) and previous (1.1.0) stay.
    rc, shown, failures = _deploy("1.0.0", keep=1)
    assert rc == 0, failures
    assert shown["release"]["installed"] is False
    assert shown["switch"]["previous"] == "1.1.0"
    assert host.file(ROOT + "/current").linked_to == ROOT + "/releases/1.0.0"
    assert host.file(ROOT + "/previous").linked_to == ROOT + "/releases/1.1.0"
    assert _get(host, "/version")[1]["release"] == "1.0.0"
    remaining = set(host.check_output("ls %s/releases" % ROOT).split())
    assert remaining == {"1.0.0", "1.1.0", "1.2.0", "inflight", "by-hand"}
    assert sorted(shown["state"]["pruned"]) == ["0.8.0", "0.9.0", "failed"]
    assert shown["state"]["releases"] == ["1.2.0", "1.1.0", "1.0.0"]
    assert shown["state"]["unfinished"] == ["inflight"]
    assert shown["state"]["other"] == ["by-hand"]


def test_releases_from_a_url_with_checksum_and_from_git(host):
    dist = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ""), "dist")
    tarball = os.path.join(dist, "bosun-example-app-1.1.0.tar.gz")
    with open(tarball + ".sha256", encoding="utf-8") as f:
        digest = f.read().split()[0]
    host.ansible("copy", "src=%s dest=/tmp/artifact.tar.gz mode=0644" % tarball, check=False)

    # A wrong checksum is refused: the directory stays marked unfinished, never a release.
    rc, _shown, failures = _deploy(
        "from-url-bad",
        app_source="url",
        app_artifact_url="file:///tmp/artifact.tar.gz",
        app_artifact_checksum="sha256:" + "0" * 64,
    )
    assert rc != 0 and "checksum" in " ".join(failures).lower()
    assert host.file(ROOT + "/releases/from-url-bad/.bosun-unfinished").exists
    assert not host.file(ROOT + "/releases/from-url-bad/.bosun-release.json").exists

    rc, shown, failures = _deploy(
        "from-url",
        app_source="url",
        app_artifact_url="file:///tmp/artifact.tar.gz",
        app_artifact_checksum="sha256:" + digest,
    )
    assert rc == 0, failures
    assert _get(host, "/version")[1] == {"release": "from-url", "version": "1.1.0", "broken": False}

    # git: the tree of a tag, exported without .git (test fixture: a repository on the host).
    assert host.run("apt-get install -y -q git").rc == 0
    host.run(
        "rm -rf /tmp/repo && mkdir /tmp/repo && tar xzf /tmp/artifact.tar.gz -C /tmp/repo && cd /tmp/repo"
        " && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -q -m r && git tag v9"
    )
    rc, shown, failures = _deploy("from-git", app_source="git", app_git_repo="/tmp/repo", app_git_version="v9")
    assert rc == 0, failures
    assert not host.file(ROOT + "/releases/from-git/.git").exists
    assert _get(host, "/version")[1]["release"] == "from-git"
    assert _get(host, "/health")[0] == 200
