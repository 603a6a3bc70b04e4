"""Host hardening of the whole platform after site.yml, measured by the auditors operators
already trust: Lynis in every host (hardening index >= 80, no warning), ssh-audit
against every host's sshd (no fail, no warning) and testssl against the load balancer's
HTTPS port (clean as tests/support/testssl.py defines it; the nginx scenario runs the same).

The hosts are reached like test_topology.py reaches them: `docker exec` into the containers
and their fixed addresses on the scenario's network. Nothing here changes the platform
(Lynis is installed and run; it reads only), so the file order with test_topology.py does
not matter.
"""

import os
import subprocess
import sys
import threading

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LYNIS_PROFILE = os.path.join(PROJECT, "molecule", "shared", "lynis", "bosun.prf")
NETWORK = "bosun-topology"
GATEWAY = "172.30.214.1"
HOSTS = {
    "lb1": "172.30.214.10",
    "app1": "172.30.214.21",
    "app2": "172.30.214.22",
    "db1": "172.30.214.31",
    "cache1": "172.30.214.41",
}
LYNIS_MIN_INDEX = 80
# Every host is Debian 12, whose ssh-audit (2.5, 2021) reports the server's Terrapin
# countermeasure (kex-strict-s-v00@openssh.com) as an unknown algorithm: the audit runs
# from a helper container of the Debian 13 image, with Debian 13's ssh-audit (3.3).
AUDITOR_IMAGE = "bosun-platform/debian:13"
SERVER_NAME = "lab.bosun.test"

testinfra_hosts = ["lb1"]


def _docker_exec(container, *argv, stdin=None, timeout=600):
    return subprocess.run(
        ["docker", "exec", "-i", container, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _lynis(container):
    install = _docker_exec(
        container, "sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis >/dev/null"
    )
    assert install.returncode == 0, install.stderr[-2000:]
    with open(LYNIS_PROFILE, encoding="utf-8") as handle:
        _docker_exec(container, "sh", "-c", "cat > /root/bosun.prf", stdin=handle.read())
    run = _docker_exec(container, "lynis", "audit", "system", "--quick", "--no-colors", "--profile", "/root/bosun.prf")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    values = {}
    for line in _docker_exec(container, "cat", "/var/log/lynis-report.dat").stdout.splitlines():
        key, _sep, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return {
        "version": values["lynis_version"][0],
        "index": int(values["hardening_index"][0]),
        "warnings": values.get("warning[]", []),
        "suggestions": values.get("suggestion[]", []),
    }


def test_lynis_on_every_host(host):
    results, threads = {}, []
    for name in HOSTS:
        thread = threading.Thread(target=lambda n=name: results.__setitem__(n, _lynis(n)))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=900)
    assert sorted(results) == sorted(HOSTS), "Lynis did not finish on every host"
    for name in HOSTS:
        result = results[name]
        print(
            "\nLynis %s on %s: hardening index %d (target %d), %d warnings, %d suggestions"
            % (
                result["version"],
                name,
                result["index"],
                LYNIS_MIN_INDEX,
                len(result["warnings"]),
                len(result["suggestions"]),
            )
        )
        for line in result["warnings"]:
            print("  warning    " + line)
        for line in result["suggestions"]:
            print("  suggestion " + line)
    assert {name: results[name]["warnings"] for name in HOSTS} == {name: [] for name in HOSTS}
    assert {name: results[name]["index"] for name in HOSTS if results[name]["index"] < LYNIS_MIN_INDEX} == {}


def test_ssh_audit_on_every_host(host):
    # A helper container on the platform's network (inside every host's admin range),
    # taking Debian's packages through the test machine's archive cache when it runs.
    script = (
        "python3 -c \"import urllib.request; urllib.request.urlopen('http://%s:3142/health', timeout=3)\" 2>/dev/null"
        " && sed -i 's#http://deb.debian.org/#http://%s:3142/#' /etc/apt/sources.list;"
        " apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ssh-audit >/dev/null"
        " || exit 3;"
        " dpkg-query -W -f 'ssh-audit ${Version}\\n' ssh-audit;"
        ' for address in %s; do echo "=== $address"; ssh-audit --no-colors "$address"; done'
    ) % (GATEWAY, GATEWAY, " ".join(HOSTS.values()))
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", NETWORK, "--entrypoint", "/bin/sh", AUDITOR_IMAGE, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    version = proc.stdout.splitlines()[0]
    reports = {}
    for block in proc.stdout.split("=== ")[1:]:
        address, _sep, text = block.partition("\n")
        reports[address.strip()] = text
    problems = {}
    for name, address in HOSTS.items():
        text = reports.get(address, "")
        lines = [line.strip() for line in text.splitlines()]
        software = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("(gen) software:")), "")
        compression = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("(gen) compression:")), ""
        )
        fails = [line for line in lines if "[fail]" in line or line.startswith("(cve)")]
        warns = [line for line in lines if "[warn]" in line]
        print(
            "\n%s on %s (%s): %d fail, %d warn, compression %s"
            % (version, name, software, len(fails), len(warns), compression)
        )
        for line in fails + warns:
            print("  " + line)
        if not software or compression != "disabled" or fails or warns:
            problems[name] = {"software": software, "compression": compression, "fail": fails, "warn": warns}
    assert problems == {}


def test_testssl_on_the_load_balancer(host):
    # Debian 13's testssl from a helper container on the platform's network, like ssh-audit.
    if PROJECT not in sys.path:
        sys.path.insert(0, PROJECT)
    from tests.support import testssl

    report = testssl.run(NETWORK, GATEWAY, HOSTS["lb1"], SERVER_NAME, testssl.served_certificate(host))
    # This file runs before test_topology.py deploys the first release: the site answers 502.
    summary, problems = testssl.verdict(report, no_upstream=True)
    print("\n" + summary)
    for problem in problems:
        print("  " + problem)
    assert problems == []
