"""Certificates from a real ACME CA (pebble, on bosun-acme-ca) for two load balancers.

The converge issued one certificate on the issuer (bosun-acme-lb1, the first host of the
group lb) and installed it on both load balancers. The tests check what clients see (the
chain to pebble's root, the names, the same certificate on both), then run the maintenance
job `cert_renew` the way the scheduler does: forced renewal under a request loop, a renewal
with the CA stopped, the back-off after it, and a retry. The tests run in file order: each
leaves the platform serving a valid certificate.
"""

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

from cryptography import x509

SCENARIO = os.environ.get("MOLECULE_SCENARIO_DIRECTORY", os.path.dirname(os.path.dirname(__file__)))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.join(SCENARIO, "..", ".."))
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
CA = "bosun-acme-ca"
CA_ADDRESS = "172.30.217.20"
LBS = {"bosun-acme-lb1": "172.30.217.10", "bosun-acme-lb2": "172.30.217.11"}
ISSUER = "bosun-acme-lb1"
NAMES = ["www.bosun.test", "bosun.test"]
STATE_DIR = "/var/lib/bosun/acme"
METRICS = "/var/lib/prometheus/node-exporter/bosun_acme.prom"

testinfra_hosts = [ISSUER]


def _docker_exec(container, *argv, timeout=120):
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def _pebble_root():
    """The root pebble issues under (a new one at every start of bosun-pebble)."""
    got = _docker_exec(
        CA,
        "curl",
        "-sf",
        "--cacert",
        "/etc/bosun-test/acme-tls-root.pem",
        "https://%s:15000/roots/0" % CA_ADDRESS,
    )
    assert got.returncode == 0 and "BEGIN CERTIFICATE" in got.stdout, got.stderr
    return got.stdout


def _served(address, root_pem, name=NAMES[0]):
    """The leaf certificate the load balancer serves for `name`, verified against root_pem."""
    ctx = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection((address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _served_serial(address):
    """Serial of the served leaf, without verifying (the CA's root may have changed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAMES[0]) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def _ca_requests():
    """How many ACME requests pebble has handled since it started."""
    log = _docker_exec(CA, "journalctl", "-u", "bosun-pebble", "-o", "cat", "--no-pager")
    return log.stdout.count("calling handler")


def _playbook(argv, verbosity=0):
    """Run ansible-playbook against the scenario's inventory; return (rc, stdout + stderr)."""
    proc = subprocess.run(
        ["ansible-playbook", "--inventory", INVENTORY, *(["-" + "v" * verbosity] if verbosity else []), *argv],
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _renew(*extra, verbosity=0):
    extra_vars = {"bosun_maintenance_force": True}
    for item in extra:
        extra_vars.update(item)
    return _playbook(
        ["bosun.platform.maintenance", "--tags", "cert_renew", "--extra-vars", json.dumps(extra_vars)],
        verbosity=verbosity,
    )


class _Load:
    """HTTPS requests through both load balancers, one new connection each, until stopped."""

    def __init__(self):
        self.ok = 0
        self.failed = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(address,)) for address in LBS.values()]

    def _loop(self, address):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while not self._stop.is_set():
            try:
                with socket.create_connection((address, 443), timeout=10) as raw:
                    with ctx.wrap_socket(raw, server_hostname=NAMES[0]) as tls:
                        tls.sendall(b"GET /who HTTP/1.1\r\nHost: www.bosun.test\r\nConnection: close\r\n\r\n")
                        head = tls.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    self.ok += 1
                else:
                    self.failed.append("%s: %r" % (address, head))
            except OSError as exc:
                self.failed.append("%s: %s" % (address, exc))
            time.sleep(0.02)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_both_load_balancers_serve_one_certificate_from_the_ca(host):
    root = _pebble_root()
    leaves = {name: _served(address, root) for name, address in LBS.items()}
    for name, leaf in leaves.items():
        assert leaf.issuer != leaf.subject, "%s still serves the self-signed stand-in" % name
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(NAMES)
        # the second name verifies too (ssl checks it against the SANs)
        _served(LBS[name], root, name=NAMES[1])
    assert len({leaf.serial_number for leaf in leaves.values()}) == 1, "the load balancers serve different certificates"


def test_the_keys_stay_root_only_on_the_issuer(host):
    assert host.file(STATE_DIR).mode == 0o700
    for path in ("account.key", "issue/key.pem", "issued.pem"):
        key = host.file("%s/%s" % (STATE_DIR, path))
        assert key.user == "root" and key.mode == 0o600, path
    assert host.file("/etc/nginx/tls/acme.pem").mode == 0o600
    # the other load balancer holds the pair, not the account key
    other = _docker_exec("bosun-acme-lb2", "test", "-e", STATE_DIR + "/account.key")
    assert other.returncode != 0


def test_http01_directory_is_served_on_port_80_before_any_redirect(host):
    host.run_test("sh -c 'echo probe > /var/www/acme-challenge/.well-known/acme-challenge/bosun-probe'")
    try:
        got = host.run("curl -s -H 'Host: www.bosun.test' http://127.0.0.1/.well-known/acme-challenge/bosun-probe")
        assert got.stdout.strip() == "probe"
        other = host.run("curl -s -o /dev/null -w '%{http_code}' -H 'Host: www.bosun.test' http://127.0.0.1/x")
        assert other.stdout == "301"
    finally:
        host.run("rm -f /var/www/acme-challenge/.well-known/acme-challenge/bosun-probe")


def test_a_second_converge_asks_the_ca_nothing(host):
    before = _ca_requests()
    rc, out = _playbook([os.path.join(SCENARIO, "converge.yml")])
    assert rc == 0, out[-3000:]
    assert "changed=0" in out and "changed=1" not in out, out[-3000:]
    assert _ca_requests() == before


def test_the_metrics_give_the_expiry(host):
    metrics = host.file(METRICS).content_string
    prefix = "bosun_tls_certificate_expiry_timestamp_seconds{"
    expiry = [line for line in metrics.splitlines() if line.startswith(prefix)]
    assert expiry and float(expiry[0].rsplit(" ", 1)[1]) > time.time() + 30 * 86400, metrics


def _private_scalar_line(host, path):
    """The first base64 line of an EC private key's PEM: it holds the private scalar (the
    later lines hold the public point, which modules may show as the public key)."""
    body = [line for line in host.file(path).content_string.splitlines() if line and not line.startswith("-----")]
    return body[0]


def test_forced_renewal_gives_a_new_serial_without_a_failed_request_nor_a_key_shown(host):
    """The maintenance job at -vvv, forced, while requests go through both load balancers:
    a new certificate on both, no failed request, and neither key in the output or in the
    load balancers' journals (Ansible logs module arguments there)."""
    secrets = [
        _private_scalar_line(host, STATE_DIR + "/issue/key.pem"),
        _private_scalar_line(host, STATE_DIR + "/account.key"),
    ]
    before = {name: _served_serial(address) for name, address in LBS.items()}
    with _Load() as load:
        time.sleep(1)
        rc, out = _renew({"nginx_acme_force": True}, verbosity=3)
        time.sleep(2)
    assert rc == 0, out[-4000:]
    after = {name: _served_serial(address) for name, address in LBS.items()}
    print("\nrenewal under load: %d requests, %d failed" % (load.ok, len(load.failed)))
    assert load.ok > 20
    assert load.failed == []
    assert len(set(after.values())) == 1
    assert set(after.values()).isdisjoint(before.values())
    assert "PRIVATE KEY" not in out
    assert [secret for secret in secrets if secret in out] == []
    for name in LBS:
        journal = _docker_exec(name, "journalctl", "--no-pager", "-o", "cat").stdout
        assert "PRIVATE KEY" not in journal, name
        assert [secret for secret in secrets if secret in journal] == [], name


def test_renewal_with_the_ca_down_keeps_the_old_certificate_and_backs_off(host):
    serial = _served_serial(LBS[ISSUER])
    assert _docker_exec(CA, "systemctl", "stop", "bosun-pebble").returncode == 0
    try:
        rc, out = _renew({"nginx_acme_force": True})
        assert rc != 0, out[-3000:]
        assert "did not issue the certificate for www.bosun.test, bosun.test" in out, out[-3000:]
        assert "https://172.30.217.20:14000/dir" in out
        assert "the CA is not asked again before" in out
        assert "cert_renew failed" in out
        assert {_served_serial(address) for address in LBS.values()} == {serial}
        state = json.loads(host.file(STATE_DIR + "/backoff.json").content_string)
        assert state["attempts"] == 1
        metrics = host.file(METRICS).content_string
        assert [line for line in metrics.splitlines() if line.startswith("bosun_acme_backoff_until_timestamp_seconds")]
    finally:
        assert _docker_exec(CA, "systemctl", "start", "bosun-pebble", "bosun-ocsp").returncode == 0
    time.sleep(2)

    # Within the back-off the CA is not asked, even forced, and the job says until when.
    before = _ca_requests()
    rc, out = _renew({"nginx_acme_force": True})
    assert rc != 0
    assert "not asking the ACME CA again before" in out, out[-3000:]
    assert _ca_requests() == before
    assert _served_serial(LBS[ISSUER]) == serial

    # The operator fixed the cause: retry now.
    rc, out = _renew({"nginx_acme_force": True, "nginx_acme_retry_now": True})
    assert rc == 0, out[-4000:]
    root = _pebble_root()
    leaves = {name: _served(address, root) for name, address in LBS.items()}
    assert len({leaf.serial_number for leaf in leaves.values()}) == 1
    assert leaves[ISSUER].serial_number != serial
    assert not host.file(STATE_DIR + "/backoff.json").exists


def test_ocsp_response_is_stapled(host):
    """The certificate names pebble's OCSP responder (bosun-ocsp): nginx staples its answer.
    nginx fetches the response after the first handshakes, so a few attempts are made."""
    for _attempt in range(15):
        got = _docker_exec(
            CA,
            "sh",
            "-c",
            "openssl s_client -connect %s:443 -servername %s -status </dev/null 2>/dev/null" % (LBS[ISSUER], NAMES[0]),
        )
        if "OCSP Response Status: successful" in got.stdout:
            break
        time.sleep(1)
    assert "OCSP Response Status: successful" in got.stdout, got.stdout[-2000:]
    assert "Cert Status: good" in got.stdout


def test_testssl_finds_the_https_port_clean_with_stapling(host):
    if PROJECT not in sys.path:
        sys.path.insert(0, PROJECT)
    from tests.support import testssl  # pylint: disable=import-outside-toplevel

    network, gateway = testssl.network_of(ISSUER)
    report = testssl.run(network, gateway, LBS[ISSUER], NAMES[0], _pebble_root())
    summary, problems = testssl.verdict(report)
    print("\n" + summary)
    for problem in problems:
        print("  " + problem)
    assert problems == []
