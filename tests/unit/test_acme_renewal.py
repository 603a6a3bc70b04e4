"""acme_renewal: renewal decision, back-off after a failure, expiry metrics (module_utils._acme and main())."""

import datetime
import json
import os
import stat

import pytest
from ansible_collections.bosun.platform.plugins.module_utils import _acme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from tests.support.modules import run_module

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
NAMES = ["shop.example.test", "www.shop.example.test"]
OCSP = "http://ocsp.example.test:4002/"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(cn, names=(), issuer=None, ocsp=None, not_after=None, ca=False, key=None):
    """(certificate, key); self-signed when ``issuer`` (a (certificate, key) pair) is None."""
    key = key or _key()
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 2 * DAY)
        .not_valid_after(not_after or NOW + 90 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if ocsp:
        access = x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp))
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    return builder.sign(signer, hashes.SHA256()), key


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def ca():
    return make_cert("bosun test intermediate", ca=True)


def write_chain(path, leaf, ca_cert):
    path.write_text(pem(leaf) + pem(ca_cert))
    return str(path)


def verdict_for(path, names=None, state=None, now=NOW, **kwargs):
    info, problem = _acme.read_certificate(str(path))
    return _acme.decide(info, problem, names or NAMES, state, now, certificate_path=str(path), **kwargs)


# The certificate -------------------------------------------------------------------------


def test_no_certificate_yet(tmp_path):
    verdict = verdict_for(tmp_path / "fullchain.pem")
    assert verdict["due"] and verdict["renew"] and verdict["reason"] == "no certificate yet"
    assert verdict["not_after"] is None and verdict["days_left"] is None and verdict["serial"] is None
    assert verdict["issuer"] is None and verdict["ocsp_url"] is None and verdict["names_covered"] == []
    assert verdict["names_missing"] == NAMES and verdict["last_failure"] is None and verdict["backoff_until"] is None


@pytest.mark.parametrize(
    "content",
    [
        "not a certificate\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        "",
    ],
)
def test_unreadable_certificate_is_due_not_a_crash(tmp_path, content):
    path = tmp_path / "fullchain.pem"
    path.write_text(content)
    verdict = verdict_for(path)
    assert verdict["due"] and verdict["renew"]
    assert verdict["reason"].startswith("certificate %s unreadable: " % path)
    assert verdict["serial"] is None and verdict["not_after"] is None


def test_directory_in_place_of_the_certificate_is_unreadable(tmp_path):
    verdict = verdict_for(tmp_path)
    assert verdict["due"] and "unreadable" in verdict["reason"]


def test_self_signed_placeholder_is_due_even_with_every_name(tmp_path):
    cert = make_cert(NAMES[0], names=NAMES)[0]
    path = tmp_path / "fullchain.pem"
    path.write_text(pem(cert))
    verdict = verdict_for(path)
    assert verdict["due"] and verdict["placeholder"]
    assert verdict["reason"].startswith("placeholder: the certificate is self-signed")
    assert verdict["names_missing"] == [] and verdict["days_left"] > 80


def test_ca_issued_leaf_with_every_name_is_not_due(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca, ocsp=OCSP, not_after=NOW + 60 * DAY)[0]
    path = write_chain(tmp_path / "fullchain.pem", leaf, ca[0])
    verdict = verdict_for(path)
    assert not verdict["due"] and not verdict["renew"] and not verdict["placeholder"]
    assert verdict["reason"].startswith("not due: valid until ") and "60.00 days left" in verdict["reason"]
    assert verdict["not_after"] == (NOW + 60 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert verdict["days_left"] == 60.0
    assert verdict["serial"] == format(leaf.serial_number, "x")
    assert verdict["issuer"] == "CN=bosun test intermediate"
    assert verdict["names_covered"] == NAMES and verdict["names_missing"] == []
    assert verdict["ocsp_url"] == OCSP


def test_leaf_without_ocsp_responder(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]))
    assert verdict["ocsp_url"] is None and not verdict["due"]


def test_names_compare_without_case_or_trailing_dot(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=["Shop.Example.Test", "www.shop.example.test"], issuer=ca)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]), names=["SHOP.example.test."])
    assert not verdict["due"] and verdict["names_covered"] == NAMES


def test_missing_name_is_due_and_named(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES[:1], issuer=ca)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]), names=NAMES + ["api.example.test"])
    assert verdict["due"] and verdict["names_missing"] == ["www.shop.example.test", "api.example.test"]
    assert verdict["reason"] == "names missing from the certificate: www.shop.example.test, api.example.test"


def test_wildcard_entry_does_not_cover_another_name(tmp_path, ca):
    leaf = make_cert("*.example.test", names=["*.example.test"], issuer=ca)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]), names=["shop.example.test"])
    assert verdict["due"] and verdict["names_missing"] == ["shop.example.test"]


def test_expired_certificate(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca, not_after=NOW - DAY)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]))
    assert verdict["due"] and verdict["reason"].startswith("expired at ") and verdict["days_left"] == -1.0


def test_expiring_in_ten_days_follows_remaining_days(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca, not_after=NOW + 10 * DAY)[0]
    path = write_chain(tmp_path / "fullchain.pem", leaf, ca[0])
    verdict = verdict_for(path)
    assert verdict["due"] and verdict["reason"].endswith("10.00 days left: fewer than 30")
    assert not verdict_for(path, remaining_days=10)["due"]
    assert verdict_for(path, remaining_days=11)["due"]


def test_force_renews_a_valid_certificate_and_keeps_a_real_reason(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca)[0]
    path = write_chain(tmp_path / "fullchain.pem", leaf, ca[0])
    assert verdict_for(path, force=True)["reason"] == "forced"
    assert verdict_for(tmp_path / "none.pem", force=True)["reason"] == "no certificate yet"


def test_expiry_of_a_certificate_from_cryptography_before_42():
    class Old:  # no not_valid_after_utc: a naive UTC not_valid_after (Debian 12 ships cryptography 38)
        not_valid_after = datetime.datetime(2030, 1, 2, 3, 4, 5)

    assert _acme._not_after(Old()) == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_private_key_blocks_are_never_decoded(tmp_path, ca):
    leaf, key = make_cert(NAMES[0], names=NAMES, issuer=ca)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    path = tmp_path / "combined.pem"
    path.write_text(key_pem + pem(leaf) + pem(ca[0]))
    verdict = verdict_for(path)
    assert not verdict["due"] and verdict["serial"] == format(leaf.serial_number, "x")
    body = "".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in json.dumps(verdict)


# The back-off ----------------------------------------------------------------------------


def _failure(at, message="urn:ietf:params:acme:error:connection: Fetching http://x/: timeout", attempts=1):
    return dict(last_failure=at, message=message, attempts=attempts)


def test_active_backoff_blocks_a_due_renewal(tmp_path):
    state = _failure(NOW - datetime.timedelta(minutes=10))
    verdict = verdict_for(tmp_path / "fullchain.pem", state=state)
    assert verdict["due"] and not verdict["renew"] and verdict["backoff_active"]
    until = NOW + datetime.timedelta(minutes=50)
    assert verdict["backoff_until"] == _acme.iso(until)
    assert verdict["last_failure"] == dict(
        last_failure=_acme.iso(state["last_failure"]), message=state["message"], attempts=1
    )
    assert verdict["blocked"].startswith(
        "not asking the ACME CA again before %s: the attempt at %s failed: %s ("
        % (_acme.iso(until), _acme.iso(state["last_failure"]), state["message"])
    )
    assert "nginx_acme_retry_now=true" in verdict["blocked"] and "no certificate yet" in verdict["blocked"]


def test_expired_backoff_and_retry_now_let_the_renewal_through(tmp_path):
    path = tmp_path / "fullchain.pem"
    old = verdict_for(path, state=_failure(NOW - datetime.timedelta(hours=2), attempts=3))
    assert old["renew"] and not old["backoff_active"] and old["blocked"] is None
    assert old["backoff_until"] == _acme.iso(NOW - datetime.timedelta(hours=1)) and old["last_failure"]["attempts"] == 3
    forced = verdict_for(path, state=_failure(NOW), retry_now=True)
    assert forced["renew"] and forced["backoff_active"] and forced["blocked"] is None
    longer = verdict_for(path, state=_failure(NOW - datetime.timedelta(hours=2)), backoff=3 * 3600)
    assert not longer["renew"] and longer["blocked"]


def test_backoff_does_not_matter_when_not_due(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca)[0]
    verdict = verdict_for(write_chain(tmp_path / "fullchain.pem", leaf, ca[0]), state=_failure(NOW))
    assert not verdict["due"] and not verdict["renew"] and verdict["blocked"] is None and verdict["backoff_active"]


def test_record_failure_counts_attempts_and_round_trips():
    first = _acme.record_failure(None, 'CA said: "no" \n€', NOW + datetime.timedelta(microseconds=5))
    assert first == dict(last_failure=NOW, message='CA said: "no" \n€', attempts=1)
    second = _acme.record_failure(first, "again", NOW + DAY)
    assert second["attempts"] == 2 and second["message"] == "again"
    assert _acme.parse_state(_acme.render_state(first)) == first
    assert json.loads(_acme.render_state(first)) == {
        "last_failure": _acme.iso(NOW),
        "message": 'CA said: "no" \n€',
        "attempts": 1,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"last_failure": "2026-12-07T11:00:00Z", "message": "m", "attempts": 2}', (11, 2)),
        ('{"last_failure": "2026-12-07T12:00:00+01:00", "message": "m"}', (11, 1)),
        ('{"last_failure": "2026-12-07T11:00:00", "message": "m", "attempts": "x"}', (11, 1)),
    ],
)
def test_parse_state_accepts_offsets_and_repairs_attempts(text, expected):
    state = _acme.parse_state(text)
    assert (state["last_failure"].hour, state["attempts"]) == expected
    assert state["last_failure"].tzinfo is not None


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"last_failure": "yesterday"}', "{not json"])
def test_unreadable_state_is_ignored_with_a_reason(tmp_path, text):
    path = tmp_path / "backoff.json"
    path.write_text(text)
    state, problem = _acme.read_state(str(path))
    assert state is None and problem.startswith("back-off record %s unreadable, ignored: " % path)
    assert _acme.read_state(str(tmp_path / "none.json")) == (None, None)


def test_state_is_written_atomically_0600_in_a_0700_directory(tmp_path):
    path = tmp_path / "acme" / "state" / "backoff.json"
    _acme.write_state(str(path), _failure(NOW))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    inode = os.stat(path).st_ino
    _acme.write_state(str(path), _failure(NOW, attempts=2))
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one
    assert os.listdir(path.parent) == ["backoff.json"]  # no temporary file left
    assert _acme.read_state(str(path)) == (_failure(NOW, attempts=2), None)


# The metrics -----------------------------------------------------------------------------


def parse_metrics(text):
    """{name: (labels dict, value)} of a textfile with one sample per metric, HELP and TYPE checked."""
    samples, helped, typed = {}, set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            assert line.split()[3] == "gauge"
            typed.add(line.split()[2])
        else:
            series, value = line.rsplit(" ", 1)
            name, labels = series.rstrip("}").split("{")
            samples[name] = (dict(pair.split("=", 1) for pair in labels.split('",')), float(value))
    assert helped == typed == set(samples)
    return {name: ({k: v.strip('"') for k, v in labels.items()}, value) for name, (labels, value) in samples.items()}


def test_metrics_of_a_valid_certificate_and_of_none(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca, not_after=NOW + 10 * DAY)[0]
    path = write_chain(tmp_path / "fullchain.pem", leaf, ca[0])
    failed_at = NOW - datetime.timedelta(minutes=30)
    prom = tmp_path / "textfile" / "bosun_acme.prom"
    _acme.write_metrics(str(prom), verdict_for(path, state=_failure(failed_at)), NAMES)
    assert stat.S_IMODE(os.stat(prom.parent).st_mode) == 0o755
    metrics = parse_metrics(prom.read_text())
    assert metrics["bosun_tls_certificate_expiry_timestamp_seconds"] == (
        {"names": "shop.example.test,www.shop.example.test"},
        (NOW + 10 * DAY).timestamp(),
    )
    assert metrics["bosun_tls_certificate_days_left"][1] == 10.0
    assert metrics["bosun_acme_last_failure_timestamp_seconds"][1] == failed_at.timestamp()
    assert metrics["bosun_acme_backoff_until_timestamp_seconds"][1] == (failed_at.timestamp() + 3600)
    assert metrics["bosun_acme_renewal_due"][1] == 1
    _acme.write_metrics(str(prom), verdict_for(tmp_path / "none.pem"), NAMES)
    metrics = parse_metrics(prom.read_text())
    assert {name: value for name, (_labels, value) in metrics.items()} == {
        "bosun_tls_certificate_expiry_timestamp_seconds": 0,
        "bosun_tls_certificate_days_left": 0,
        "bosun_acme_last_failure_timestamp_seconds": 0,
        "bosun_acme_backoff_until_timestamp_seconds": 0,
        "bosun_acme_renewal_due": 1,
    }


# The module, run as Ansible runs it ------------------------------------------------------


def _args(tmp_path, **extra):
    args = {
        "certificate_path": str(tmp_path / "live" / "fullchain.pem"),
        "names": NAMES,
        "state_path": str(tmp_path / "acme" / "backoff.json"),
        "metrics_path": str(tmp_path / "textfile" / "bosun_acme.prom"),
    }
    args.update(extra)
    return args


def test_module_decide_reports_and_writes_only_metrics(tmp_path):
    args = _args(tmp_path)
    checked = run_module("acme_renewal", args, check_mode=True)
    assert checked["rc"] == 0 and not checked["changed"] and checked["renew"]
    assert not (tmp_path / "textfile").exists() and not (tmp_path / "acme").exists()
    result = run_module("acme_renewal", args)
    assert result["rc"] == 0 and not result["changed"]
    assert (result["renew"], result["due"], result["reason"]) == (True, True, "no certificate yet")
    for field in ("not_after", "days_left", "serial", "issuer", "ocsp_url", "backoff_until", "last_failure"):
        assert result[field] is None, field
    assert result["names_covered"] == [] and result["names_missing"] == NAMES and not result["backoff_active"]
    assert parse_metrics((tmp_path / "textfile" / "bosun_acme.prom").read_text())["bosun_acme_renewal_due"][1] == 1
    assert not (tmp_path / "acme").exists()


def test_module_failed_backoff_then_retry_then_succeeded(tmp_path, ca):
    message = 'urn:ietf:params:acme:error:unauthorized: Invalid response from http://shop.example.test/: 404 "$x"'
    args = _args(tmp_path)
    state_path = tmp_path / "acme" / "backoff.json"

    checked = run_module("acme_renewal", dict(args, action="failed", error=message), check_mode=True)
    assert checked["rc"] == 0 and checked["changed"] and checked["last_failure"]["attempts"] == 1
    assert not (tmp_path / "acme").exists() and not (tmp_path / "textfile").exists()

    failed = run_module("acme_renewal", dict(args, action="failed", error=message))
    assert failed["rc"] == 0 and failed["changed"] and failed["backoff_active"] and not failed["renew"]
    stored = json.loads(state_path.read_text())
    assert stored == {"last_failure": failed["last_failure"]["last_failure"], "message": message, "attempts": 1}
    assert stat.S_IMODE(os.stat(state_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state_path.parent).st_mode) == 0o700
    at = _acme.parse_iso(stored["last_failure"])
    assert failed["backoff_until"] == _acme.iso(at + datetime.timedelta(seconds=3600))
    metrics = parse_metrics((tmp_path / "textfile" / "bosun_acme.prom").read_text())
    assert metrics["bosun_acme_backoff_until_timestamp_seconds"][1] == at.timestamp() + 3600

    blocked = run_module("acme_renewal", args)
    assert blocked["rc"] == 1 and blocked["failed"] and not blocked["changed"]
    assert blocked["msg"].startswith(
        "not asking the ACME CA again before %s: the attempt at %s failed: %s"
        % (failed["backoff_until"], stored["last_failure"], message)
    )
    assert "nginx_acme_retry_now=true" in blocked["msg"]
    assert blocked["due"] and not blocked["renew"] and blocked["reason"] == "no certificate yet"
    assert blocked["last_failure"]["message"] == message

    retried = run_module("acme_renewal", dict(args, retry_now=True))
    assert retried["rc"] == 0 and retried["renew"] and not retried["changed"]

    again = run_module("acme_renewal", dict(args, action="failed", error="second"))
    assert again["last_failure"]["attempts"] == 2 and json.loads(state_path.read_text())["attempts"] == 2

    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca, ocsp=OCSP)[0]
    (tmp_path / "live").mkdir()
    write_chain(tmp_path / "live" / "fullchain.pem", leaf, ca[0])
    checked = run_module("acme_renewal", dict(args, action="succeeded"), check_mode=True)
    assert checked["changed"] and state_path.exists() and checked["last_failure"] is None
    done = run_module("acme_renewal", dict(args, action="succeeded", force=True))
    assert done["rc"] == 0 and done["changed"] and not state_path.exists()
    assert not done["renew"] and not done["due"] and done["serial"] == format(leaf.serial_number, "x")
    assert done["ocsp_url"] == OCSP and done["last_failure"] is None and done["backoff_until"] is None
    metrics = parse_metrics((tmp_path / "textfile" / "bosun_acme.prom").read_text())
    assert metrics["bosun_acme_last_failure_timestamp_seconds"][1] == 0
    assert metrics["bosun_acme_renewal_due"][1] == 0
    assert metrics["bosun_tls_certificate_expiry_timestamp_seconds"][1] == (NOW + 90 * DAY).timestamp()
    assert not run_module("acme_renewal", dict(args, action="succeeded"))["changed"]


def test_module_backoff_is_irrelevant_when_not_due(tmp_path, ca):
    leaf = make_cert(NAMES[0], names=NAMES, issuer=ca)[0]
    (tmp_path / "live").mkdir()
    write_chain(tmp_path / "live" / "fullchain.pem", leaf, ca[0])
    args = _args(tmp_path)
    run_module("acme_renewal", dict(args, action="failed", error="boom"))
    result = run_module("acme_renewal", args)
    assert result["rc"] == 0 and not result["renew"] and not result["due"] and result["backoff_active"]
    forced = run_module("acme_renewal", dict(args, force=True))
    assert forced["failed"] and forced["reason"] == "forced" and "boom" in forced["msg"]


def test_module_warns_on_a_corrupt_record_and_renews(tmp_path):
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "backoff.json").write_text("{torn")
    result = run_module("acme_renewal", _args(tmp_path))
    assert result["rc"] == 0 and result["renew"]
    warnings = json.dumps(result.get("warnings"))  # strings, or event records since ansible-core 2.19
    assert "back-off record %s unreadable, ignored: not JSON" % (tmp_path / "acme" / "backoff.json") in warnings


def test_module_never_returns_a_private_key(tmp_path, ca):
    leaf, key = make_cert(NAMES[0], names=NAMES[:1], issuer=ca)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode("ascii")
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "fullchain.pem").write_text(pem(leaf) + key_pem)
    result = run_module("acme_renewal", _args(tmp_path))
    body = "".join(key_pem.splitlines()[1:-1])
    assert result["renew"] and result["names_missing"] == NAMES[1:]
    for chunk in (body[:32], body[-32:]):
        assert chunk not in json.dumps(result) and chunk not in result["_stderr"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"metrics_path": "acme.txt"}, "acme.txt must end in .prom"),
        ({"names": [" ", ""]}, "names must hold at least one DNS name"),
        ({"backoff": -1}, "backoff must not be negative"),
        ({"action": "renewed"}, "value of action must be one of"),
    ],
)
def test_module_refuses_bad_arguments(tmp_path, extra, expected):
    result = run_module("acme_renewal", _args(tmp_path, **extra))
    assert result["failed"] and expected in result["msg"]
    assert not (tmp_path / "textfile").exists()


def test_module_without_cryptography_says_what_to_install(tmp_path):
    fake = tmp_path / "hide" / "cryptography"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('cryptography hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "hide"))
    result = run_module("acme_renewal", _args(tmp_path), env=env)
    assert result["failed"] and "cryptography (the python3-cryptography package)" in result["msg"]
