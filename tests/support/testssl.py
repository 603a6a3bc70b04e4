"""testssl.sh against a load balancer's HTTPS port, and what "clean" means for the platform.

    pem = testssl.served_certificate(host)          # testinfra host of the load balancer
    network, gateway = testssl.network_of(container)
    report = testssl.run(network, gateway, address, "lb.bosun.test", pem)
    summary, problems = testssl.verdict(report)

The auditor is Debian 13's testssl.sh (3.2.1), run in a throwaway helper container of the
Debian 13 test image on the scenario's Docker network, so it reaches the load balancer as a
client does; apt takes Debian's packages through the test machine's archive cache when one
answers on the network's gateway. testssl runs every default check except the client
simulation (about 15 s of browser handshakes that add no finding), with no DNS lookup at
all, and trusts the certificate nginx serves (read from the host), as an operator's
clients trust the lab's certificate: the chain is then checked for real (dates, purpose,
names) and testssl grades the server instead of capping the grade at T.

Clean means:
- no finding of severity MEDIUM, HIGH or CRITICAL, except the ones listed in
  SELF_SIGNED_EXEMPT, and those only while the certificate is self-signed;
- no scanner warning (a check that could not run), except the ones in SCANNER_WARNINGS;
- SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered, TLS 1.3 offered;
- every vulnerability check ran and reported OK or INFO;
- OCSP stapling offered whenever the certificate names an OCSP responder;
- testssl's grade (SSL Labs' rating guide) GRADE.
"""

import collections
import json
import os
import subprocess
import time

from cryptography import x509

AUDITOR_IMAGE = "bosun-platform/debian:13"
GRADE = "A+"
FAILING_SEVERITIES = ("MEDIUM", "HIGH", "CRITICAL")
SEVERITIES = ("OK", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN")
LEGACY_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
VULNERABILITY_IDS = (
    "heartbleed",
    "CCS",
    "ticketbleed",
    "ROBOT",
    "secure_renego",
    "secure_client_renego",
    "CRIME_TLS",
    "BREACH",
    "POODLE_SSL",
    "fallback_SCSV",
    "SWEET32",
    "FREAK",
    "DROWN",
    "LOGJAM",
    "BEAST",
    "LUCKY13",
    "winshock",
    "RC4",
)
# What a self-signed certificate necessarily gets, whatever the server's configuration.
# (Its chain of trust passes: run() trusts the served certificate explicitly.)
SELF_SIGNED_EXEMPT = {
    "cert_revocation": "no CA publishes a CRL or runs an OCSP responder for a self-signed "
    "certificate, so it names neither (HIGH 'Neither CRL nor OCSP URI provided')",
}
# Warnings about the scanner, not the server.
SCANNER_WARNINGS = {
    "engine_problem": "Debian's OpenSSL 3 has no GOST engine; testssl still tests GOST "
    "ciphers through its own sockets, and nothing here offers them",
    "sessionresumption_ticket": "testssl 3.2.1 races with TLS 1.3 session tickets, which "
    "arrive after the handshake: when its first openssl s_client exits before the ticket, "
    "the resumption attempt that follows reports a connect problem (the same run reports "
    "resumption by session ID)",
}
TESTSSL_OPTIONS = (
    "--quiet --color 0 --warnings off --nodns none --connect-timeout 10 --openssl-timeout 10"
    # protocols, cipher categories, the ciphers per protocol (without them the rating scores
    # cipher strength from the categories alone: 60 instead of 90), forward secrecy, server
    # defaults, headers, vulnerabilities; everything but the client simulation (-c).
    " -p -s -P -f -S -h -U"
)
_ERRORS = 242  # testssl's own error exit codes are 242..255


def served_certificate(host):
    """PEM of the certificate (chain) nginx serves first, read on the load balancer itself."""
    config = host.run("nginx -T")
    assert config.rc == 0, config.stderr
    for line in config.stdout.splitlines():
        words = line.strip().rstrip(";").split()
        if len(words) == 2 and words[0] == "ssl_certificate":
            path = words[1].strip("\"'")
            if not path.startswith("/"):
                path = "/etc/nginx/" + path  # nginx's prefix on Debian
            return host.file(path).content_string
    raise AssertionError("no ssl_certificate in nginx -T")


def network_of(container):
    """(name, gateway) of the Docker network a scenario's container is on."""
    inspect = subprocess.run(
        ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
        capture_output=True,
        text=True,
        check=True,
    )
    name, settings = next(iter(json.loads(inspect.stdout).items()))
    return name, settings["Gateway"]


def run(network, gateway, address, server_name, trusted_pem, port=443, timeout=600):
    """Install and run testssl in a helper container; return its JSON report (pretty form)."""
    script = (
        "cat > /root/trusted.pem;"
        " python3 -c \"import urllib.request; urllib.request.urlopen('http://%s:3142/health', timeout=3)\" 2>/dev/null"
        " && sed -i 's#http://deb.debian.org/#http://%s:3142/#' /etc/apt/sources.list;"
        " apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q testssl.sh >/dev/null"
        " || exit 3;"
        " nice testssl %s --add-ca /root/trusted.pem --jsonfile-pretty /root/report.json --ip %s https://%s:%d/"
        " >/root/report.txt 2>&1; rc=$?;"
        " [ $rc -lt %d ] && [ -s /root/report.json ] || { tail -n 40 /root/report.txt >&2; exit 4; };"
        " cat /root/report.json"
    ) % (gateway, gateway, TESTSSL_OPTIONS, address, server_name, port, _ERRORS)
    name = "bosun-testssl-%d" % os.getpid()
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["docker", "run", "--rm", "-i", "--name", name, "--network", network, "--entrypoint", "/bin/sh"]
            + [AUDITOR_IMAGE, "-c", script],
            input=trusted_pem,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    report["_seconds"] = round(time.monotonic() - started)
    return report


def findings(report):
    """Every finding of the report as (section, finding dict)."""
    for key, value in report.items():
        if key.startswith("clientProblem") and isinstance(value, list):
            for finding in value:
                yield key, finding
    for target in report.get("scanResult", []):
        for section, value in target.items():
            if isinstance(value, list):
                for finding in value:
                    if isinstance(finding, dict) and "severity" in finding:
                        yield section, finding


def _self_signed(pem):
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return certificate.issuer == certificate.subject


# Where no release is deployed yet (the topology scenario audits right after site.yml), the
# site answers 502 from its empty upstream. testssl notes the status as a warning; the TLS
# findings do not depend on it, and the headers it checks are sent on errors too (`always`).
NO_UPSTREAM_WARNINGS = {
    "HTTP_status_code": "no release is deployed yet, so nginx answers 502 Bad Gateway; the "
    "security headers testssl checks are added on error responses too",
}


def verdict(report, no_upstream=False):
    """(one-line summary, list of problems); clean when the list is empty. `no_upstream`:
    the site has no app behind it yet (NO_UPSTREAM_WARNINGS)."""
    by_id = {finding["id"]: finding for _section, finding in findings(report)}
    problems = []
    if "overall_grade" not in by_id or "scanResult" not in report:
        return "testssl: incomplete report", ["the scan did not finish: %s" % sorted(by_id)]
    self_signed = "cert" in by_id and _self_signed(by_id["cert"]["finding"])
    exempt = dict(SELF_SIGNED_EXEMPT) if self_signed else {}
    scanner_warnings = dict(SCANNER_WARNINGS, **(NO_UPSTREAM_WARNINGS if no_upstream else {}))
    counts = collections.Counter()
    for section, finding in findings(report):
        ident, severity, text = finding["id"], finding["severity"], finding["finding"]
        counts[severity] += 1
        if severity in FAILING_SEVERITIES and ident not in exempt:
            problems.append("%s %s: %s" % (severity, ident, text))
        elif severity == "WARN" and ident not in scanner_warnings:
            problems.append("scanner warning %s: %s" % (ident, text))
        elif section == "vulnerabilities" and severity not in ("OK", "INFO"):
            problems.append("vulnerability %s %s: %s" % (ident, severity, text))
    for ident in LEGACY_PROTOCOLS:
        if not by_id.get(ident, {}).get("finding", "").startswith("not offered"):
            problems.append("%s offered or not tested: %s" % (ident, by_id.get(ident)))
    if not by_id.get("TLS1_3", {}).get("finding", "").startswith("offered"):
        problems.append("TLS 1.3 not offered: %s" % by_id.get("TLS1_3"))
    missing = [ident for ident in VULNERABILITY_IDS if ident not in by_id]
    if missing:
        problems.append("vulnerability checks that did not run: %s" % missing)
    if (
        by_id.get("cert_ocspURL", {}).get("finding", "--") != "--"
        and by_id.get("OCSP_stapling", {}).get("finding") != "offered"
    ):
        problems.append("the certificate names an OCSP responder, OCSP stapling is off: %s" % by_id["OCSP_stapling"])
    grade = by_id["overall_grade"]["finding"]
    if grade != GRADE:
        problems.append("grade %s, expected %s" % (grade, GRADE))
    offered = [ident for ident in (*LEGACY_PROTOCOLS, "TLS1_2", "TLS1_3") if ident in by_id]
    used = sorted(
        "%s %s" % (ident, by_id[ident]["severity"])
        for ident in {**exempt, **scanner_warnings}
        if ident in by_id and by_id[ident]["severity"] in (*FAILING_SEVERITIES, "WARN")
    )
    target = report["scanResult"][0]
    summary = "testssl %s on %s (%s:%s): grade %s (score %s); offered: %s; %s; exempt: %s; %d problems; %d s" % (
        report.get("version", "?").strip(),
        target.get("targetHost", "?"),
        target.get("ip", "?"),
        target.get("port", "?"),
        grade,
        by_id.get("final_score", {}).get("finding", "?"),
        " ".join(i for i in offered if by_id[i]["finding"].startswith("offered")) or "none",
        ", ".join("%s %d" % (severity, counts[severity]) for severity in SEVERITIES),
        ", ".join(used) or "none",
        len(problems),
        report.get("_seconds", -1),
    )
    return summary, problems
