"""OCSP responder for pebble (test fixture of the acme scenario, not part of any role).

Pebble sets an OCSP URL in the certificates it issues but does not answer OCSP itself.
This answers RFC 6960 requests (POST, or GET with the request base64 in the path) with
the status pebble's management API reports for the serial (good, or revoked with its time
and reason), signed directly by pebble's intermediate, which is fetched from the
management API. Pebble makes a new intermediate at every start: when a request names
another issuer, the intermediate is fetched again. Requests for certificates pebble does
not know (issued before its last start), or for another issuer, get `unauthorized`.
"""

import argparse
import base64
import datetime
import json
import re
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

MAX_REQUEST = 16384
VALIDITY = datetime.timedelta(hours=1)
# RFC 5280 CRLReason codes, as pebble reports them.
REASON_CODES = {
    0: x509.ReasonFlags.unspecified,
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


class Pebble:
    """Pebble's management API: the current intermediate and the status of a serial."""

    def __init__(self, url, cafile):
        if not url.startswith("https://"):
            raise SystemExit("--pebble must be an https:// URL")
        self.url = url.rstrip("/")
        self.context = ssl.create_default_context(cafile=cafile)
        self.lock = threading.Lock()
        self.issuer = None  # (certificate, private key)

    def _get(self, path):
        # The scheme is checked in __init__ (https only).
        with urllib.request.urlopen(self.url + path, timeout=5, context=self.context) as answer:  # noqa: S310
            return answer.read()

    def intermediate(self, refresh=False):
        with self.lock:
            if self.issuer is None or refresh:
                cert = x509.load_pem_x509_certificate(self._get("/intermediates/0"))
                key = serialization.load_pem_private_key(self._get("/intermediate-keys/0"), password=None)
                self.issuer = (cert, key)
            return self.issuer

    def status(self, serial):
        """The JSON pebble keeps for a serial, or None when pebble does not know it."""
        try:
            return json.loads(self._get("/cert-status-by-serial/%x" % serial))
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise


def go_time(text):
    """A naive UTC datetime from pebble's time stamp, or None.

    Pebble 2.4 writes Go's time.String() ("2026-12-07 11:19:12.312324007 +0000 UTC"); RFC
    3339 ("2026-12-07T11:19:12.3Z") is read too.
    """
    match = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?", text)
    if not match:
        return None
    offset = (match.group(3) or "Z").replace("Z", "+0000").replace(":", "")
    stamp = datetime.datetime.strptime("%s %s %s" % (match.group(1), match.group(2), offset), "%Y-%m-%d %H:%M:%S %z")
    return stamp.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def same_issuer(request, cert, issuer):
    """Whether the request's issuer hashes are those of `issuer` (for `cert`)."""
    ours = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, request.hash_algorithm).build()
    return (ours.issuer_key_hash, ours.issuer_name_hash) == (request.issuer_key_hash, request.issuer_name_hash)


def respond(pebble, der):
    """DER of the OCSP response to the DER request `der`."""
    try:
        request = ocsp.load_der_ocsp_request(der)
        serial = request.serial_number
    except ValueError:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    known = pebble.status(serial)
    if known is None:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    cert = x509.load_pem_x509_certificate(known["Certificate"].encode())
    issuer, key = pebble.intermediate()
    if not same_issuer(request, cert, issuer):
        issuer, key = pebble.intermediate(refresh=True)
        if not same_issuer(request, cert, issuer):
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, tzinfo=None)
    revoked_at = reason = None
    if known.get("Status") == "Revoked":
        status = ocsp.OCSPCertStatus.REVOKED
        revoked_at = go_time(known.get("RevokedAt") or "") or now
        reason = REASON_CODES.get(known.get("Reason"), x509.ReasonFlags.unspecified)
    else:
        status = ocsp.OCSPCertStatus.GOOD
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert,
            issuer=issuer,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=now,
            next_update=now + VALIDITY,
            revocation_time=revoked_at,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
    )
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    return builder.sign(key, hashes.SHA256())


class Handler(BaseHTTPRequestHandler):
    pebble = None

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _answer(self, der):
        try:
            response = respond(self.pebble, der)
            body = response.public_bytes(serialization.Encoding.DER)
        except (OSError, ValueError, KeyError) as err:
            # Pebble unreachable or an answer it should not give: try later.
            self.log_message("cannot answer: %s", err)
            body = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
                serialization.Encoding.DER
            )
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_REQUEST:
            self.send_error(400, "request body missing or too long")
            return
        self._answer(self.rfile.read(length))

    def do_GET(self):
        encoded = urllib.parse.unquote(self.path.lstrip("/"))
        try:
            der = base64.b64decode(encoded, validate=True)
        except ValueError:
            self.send_error(400, "not a base64 OCSP request")
            return
        self._answer(der)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--pebble", default="https://127.0.0.1:15000", help="pebble's management API")
    parser.add_argument("--cafile", required=True, help="the root of the management API's TLS certificate")
    args = parser.parse_args()
    Handler.pebble = Pebble(args.pebble, args.cafile)
    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
