# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ACME renewal decisions: is the live certificate due, is the CA to be asked now, what to record.

Pure functions (the clock is an argument) that read a certificate's public parts and a small
JSON back-off record; the module ``acme_renewal`` only gathers inputs and writes files.
Nothing here reads, parses or returns a private key: only ``CERTIFICATE`` PEM blocks are
decoded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import datetime
import json
import os
import re

try:
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    x509 = None
    AuthorityInformationAccessOID = None
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = exc

from ansible_collections.bosun.platform.plugins.module_utils._io import atomic_write, write_textfile_metrics

UTC = datetime.timezone.utc
NO_CERTIFICATE = "no certificate yet"
FORCED = "forced"
PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
RETRY_HINT = "set nginx_acme_retry_now=true (the module's retry_now) to try now"


# What cryptography raises on a malformed certificate or extension (some names differ by version).
PARSE_ERRORS = (ValueError, TypeError) + tuple(
    getattr(x509, name) for name in ("DuplicateExtension", "UnsupportedGeneralNameType") if hasattr(x509, name)
)


class CertificateError(Exception):
    """The certificate file exists but is not a readable PEM certificate."""


class StateError(Exception):
    """The back-off record exists but cannot be used."""


def iso(moment):
    """``YYYY-MM-DDTHH:MM:SSZ`` of an aware datetime (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text):
    """An aware UTC datetime from ISO 8601 (``Z`` or an offset; naive counts as UTC)."""
    if not isinstance(text, str):
        raise ValueError("not a time: %r" % (text,))
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def timestamp(moment):
    """Unix seconds of an aware datetime, 0 for None (the metrics' "none")."""
    if moment is None:
        return 0
    return calendar.timegm(moment.astimezone(UTC).utctimetuple())


def normalise_name(name):
    """DNS names compare without case and without a trailing dot."""
    return str(name).strip().rstrip(".").lower()


# Certificates ----------------------------------------------------------------------------


def _not_after(cert):
    moment = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if moment is None:
        moment = cert.not_valid_after.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _dns_names(cert):
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [normalise_name(n) for n in extension.value.get_values_for_type(x509.DNSName)]


def _ocsp_url(cert):
    try:
        extension = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return None
    for description in extension.value:
        if description.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            description.access_location, x509.UniformResourceIdentifier
        ):
            return description.access_location.value
    return None


def certificate_info(data):
    """The public facts of the first (leaf) certificate of a PEM chain given as bytes or str.

    Raises CertificateError when there is no PEM certificate or it does not parse. Only the
    ``CERTIFICATE`` blocks are looked at: any other block in the file is never decoded.
    """
    if not HAS_CRYPTOGRAPHY:
        raise RuntimeError("cryptography is not installed: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    found = PEM_CERTIFICATE.search(data)
    if not found:
        raise CertificateError("no PEM certificate in it")
    block = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(found.group(1).split())
    try:
        cert = x509.load_pem_x509_certificate(block.encode("ascii"))
        return dict(
            not_after=_not_after(cert),
            serial=format(cert.serial_number, "x"),
            issuer=cert.issuer.rfc4514_string(),
            subject=cert.subject.rfc4514_string(),
            self_signed=cert.issuer == cert.subject,
            names=_dns_names(cert),
            ocsp_url=_ocsp_url(cert),
        )
    except PARSE_ERRORS as exc:
        raise CertificateError("the first PEM certificate does not parse (%s)" % exc) from exc


def read_certificate(path):
    """``(info, problem)``: certificate_info of the file, or None and why (never raises)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, NO_CERTIFICATE
    except OSError as exc:
        return None, "certificate %s unreadable: %s" % (path, exc.strerror or exc)
    try:
        return certificate_info(data), None
    except CertificateError as exc:
        return None, "certificate %s unreadable: %s" % (path, exc)


def assess_certificate(info, problem, names, remaining_days, now, force=False):
    """Whether the certificate is due for renewal, and why. ``now`` is an aware datetime.

    Reasons, first match wins: no certificate, unreadable, self-signed placeholder, names
    missing, expired, fewer than ``remaining_days`` left, ``force``. A name counts as
    covered only when the certificate lists it (case and a trailing dot do not matter).
    """
    wanted = []
    for given in names:
        name = normalise_name(given)
        if name and name not in wanted:
            wanted.append(name)
    result = dict(
        due=False,
        reason="",
        not_after=None,
        days_left=None,
        serial=None,
        issuer=None,
        names_covered=[],
        names_missing=list(wanted),
        ocsp_url=None,
        placeholder=False,
    )
    if info is None:
        result.update(due=True, reason=problem or NO_CERTIFICATE)
        return result
    days_left = round((info["not_after"] - now).total_seconds() / 86400.0, 2)
    missing = [n for n in wanted if n not in info["names"]]
    result.update(
        not_after=iso(info["not_after"]),
        days_left=days_left,
        serial=info["serial"],
        issuer=info["issuer"],
        names_covered=list(info["names"]),
        names_missing=missing,
        ocsp_url=info["ocsp_url"],
        placeholder=bool(info["self_signed"]),
    )
    if info["self_signed"]:
        reason = "placeholder: the certificate is self-signed (issuer %s is its subject)" % info["issuer"]
    elif missing:
        reason = "names missing from the certificate: %s" % ", ".join(missing)
    elif info["not_after"] <= now:
        reason = "expired at %s" % iso(info["not_after"])
    elif days_left < remaining_days:
        reason = "expires at %s, %.2f days left: fewer than %d" % (iso(info["not_after"]), days_left, remaining_days)
    elif force:
        reason = FORCED
    else:
        result["reason"] = "not due: valid until %s, %.2f days left (renewal when fewer than %d)" % (
            iso(info["not_after"]),
            days_left,
            remaining_days,
        )
        return result
    result.update(due=True, reason=reason)
    return result


# Back-off record ------------------------------------------------------------------------


def parse_state(text):
    """The back-off record ``{"last_failure", "message", "attempts"}`` from JSON text.

    Returns a dict with ``last_failure`` as an aware datetime; raises StateError.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise StateError("not JSON (%s)" % exc) from exc
    if not isinstance(raw, dict):
        raise StateError("not a JSON object")
    try:
        last_failure = parse_iso(raw.get("last_failure"))
    except ValueError as exc:
        raise StateError("last_failure is not an ISO 8601 time (%s)" % exc) from exc
    attempts = raw.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        attempts = 1
    message = raw.get("message")
    return dict(last_failure=last_failure, message="" if message is None else str(message), attempts=attempts)


def read_state(path):
    """``(state, problem)``: the back-off record at ``path``, None when there is none.

    A record that cannot be read gives ``(None, why)``: the caller warns and goes on without
    a back-off rather than leaving the certificate to expire.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, "back-off record %s unreadable, ignored: %s" % (path, exc)
    try:
        return parse_state(text), None
    except StateError as exc:
        return None, "back-off record %s unreadable, ignored: %s" % (path, exc)


def record_failure(state, message, now):
    """The record after a failed attempt at ``now``: attempts counted since the last success."""
    attempts = (state or {}).get("attempts", 0) + 1
    return dict(last_failure=now.astimezone(UTC).replace(microsecond=0), message=message or "", attempts=attempts)


def render_state(state):
    """JSON text of a record (the file's content)."""
    return (
        json.dumps(
            dict(last_failure=iso(state["last_failure"]), message=state["message"], attempts=state["attempts"]),
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def public_failure(state):
    """The record as the module returns it (times as ISO strings), None without one."""
    if state is None:
        return None
    return dict(last_failure=iso(state["last_failure"]), message=state["message"], attempts=state["attempts"])


def backoff_until(state, backoff):
    """When the CA may be asked again after the recorded failure (None without one)."""
    if state is None:
        return None
    return state["last_failure"] + datetime.timedelta(seconds=backoff)


def decide(
    info,
    problem,
    names,
    state,
    now,
    remaining_days=30,
    force=False,
    backoff=3600,
    retry_now=False,
    certificate_path="the certificate",
):
    """The full verdict: the certificate's facts, whether to ask the CA now, and why not.

    Returns a dict with the module's return fields (``renew``, ``due``, ``reason``,
    ``not_after``, ``days_left``, ``serial``, ``issuer``, ``names_covered``,
    ``names_missing``, ``ocsp_url``, ``placeholder``, ``backoff_until``, ``backoff_active``,
    ``last_failure``) and ``blocked``: the refusal message when renewal is due but the back-off
    after a failure is still running (and not ``retry_now``), else None. ``renew`` is true only
    when the CA is to be asked now.
    """
    result = assess_certificate(info, problem, names, remaining_days, now, force=force)
    until = backoff_until(state, backoff)
    active = until is not None and now < until
    result.update(
        renew=result["due"],
        backoff_until=iso(until),
        backoff_active=active,
        last_failure=public_failure(state),
        blocked=None,
    )
    if result["due"] and active and not retry_now:
        result["renew"] = False
        result["blocked"] = (
            "not asking the ACME CA again before %s: the attempt at %s failed: %s "
            "(renewal of %s is due: %s; %d failed attempt%s since the last success; %s)"
            % (
                iso(until),
                iso(state["last_failure"]),
                state["message"] or "(no message)",
                certificate_path,
                result["reason"],
                state["attempts"],
                "" if state["attempts"] == 1 else "s",
                RETRY_HINT,
            )
        )
    return result


# Metrics ---------------------------------------------------------------------------------


def metrics(verdict, names):
    """The textfile metrics of a verdict (render_metrics' list), labelled with the names."""
    labels = dict(names=",".join(normalise_name(n) for n in names))
    not_after = parse_iso(verdict["not_after"]) if verdict["not_after"] else None
    last_failure = verdict["last_failure"]
    failed_at = parse_iso(last_failure["last_failure"]) if last_failure else None
    until = parse_iso(verdict["backoff_until"]) if verdict["backoff_until"] else None
    days_left = verdict["days_left"] if verdict["days_left"] is not None else 0
    return [
        (
            "bosun_tls_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter) of the live certificate, 0 when there is none or it is unreadable.",
            "gauge",
            [(labels, timestamp(not_after))],
        ),
        (
            "bosun_tls_certificate_days_left",
            "Days until the live certificate expires (negative once expired, 0 without one).",
            "gauge",
            [(labels, days_left)],
        ),
        (
            "bosun_acme_last_failure_timestamp_seconds",
            "Time of the last failed ACME attempt since the last success, 0 when none.",
            "gauge",
            [(labels, timestamp(failed_at))],
        ),
        (
            "bosun_acme_backoff_until_timestamp_seconds",
            "The ACME CA is not asked again before this time after a failure, 0 when none.",
            "gauge",
            [(labels, timestamp(until))],
        ),
        (
            "bosun_acme_renewal_due",
            "1 when the certificate must be renewed (missing, placeholder, names, expiry, forced).",
            "gauge",
            [(labels, 1 if verdict["due"] else 0)],
        ),
    ]


def write_metrics(path, verdict, names):
    """Write the metrics file ``path`` (``*.prom``) atomically, its directory made 0755 if missing."""
    directory, filename = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    write_textfile_metrics(directory, filename, metrics(verdict, names))


def write_state(path, state):
    """Write the back-off record atomically, mode 0600, its directory made 0700 if missing."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    atomic_write(path, render_state(state), mode=0o600)
