# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tls_cert: days until a certificate expires, from a server (host:port, SNI) or a PEM file.

The certificate is read without verification so that an expired or untrusted one can still
be measured; with ``validate_certs`` a second, verifying handshake decides whether it is
trusted for the name (an untrusted certificate is crit whatever its dates).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import math
import re
import socket
import ssl

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import ca_problems, cause, verifying_context
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

TYPE = "tls_cert"
REQUIRED = True
OPTIONS = dict(
    host=dict(type="str"),
    port=dict(type="int", default=443),
    server_name=dict(type="str"),
    path=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    ca_cert=dict(type="path"),
    # PEM text of the CA, e.g. from inventory; public, but kept out of logs as bulky noise
    ca_cert_data=dict(type="str", no_log=True),
)
METRICS = dict(days=Threshold(21, 7, higher_is_worse=False, unit="days"))

PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def target(options):
    if options.get("path"):
        return options["path"]
    return "%s:%s" % (options.get("host"), options.get("port"))


def validate(options):
    if bool(options.get("host")) == bool(options.get("path")):
        return ["tls_cert needs exactly one of tls_cert.host (a server) or tls_cert.path (a PEM file)"]
    return ca_problems("tls_cert", options)


class DERError(ValueError):
    pass


def _tlv(data, pos):
    """(tag, content start, content length) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise DERError("truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DERError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise DERError("truncated")
    return tag, pos, length


def _children(data, start, length):
    out = []
    pos, end = start, start + length
    while pos < end:
        tag, cstart, clen = _tlv(data, pos)
        out.append((tag, cstart, clen))
        pos = cstart + clen
    return out


def _time(tag, raw):
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise DERError("unexpected time tag %#x" % tag)
    return datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)


def validity(der):
    """(not_before, not_after) as aware UTC datetimes from a DER X.509 certificate."""
    tag, start, length = _tlv(der, 0)
    if tag != 0x30:
        raise DERError("not a certificate")
    tbs_tag, tbs_start, tbs_len = _children(der, start, length)[0]
    fields = _children(der, tbs_start, tbs_len)
    index = 1 if fields and fields[0][0] == 0xA0 else 0  # optional [0] version
    v_tag, v_start, v_len = fields[index + 3]  # serial, signature algorithm, issuer, validity
    times = _children(der, v_start, v_len)
    if v_tag != 0x30 or len(times) != 2:
        raise DERError("no validity")
    return tuple(_time(t, der[s : s + n]) for t, s, n in times)


def pem_to_der(text):
    found = PEM_CERT.search(text)
    if not found:
        raise DERError("no PEM certificate")
    return base64.b64decode("".join(found.group(1).split()))


def _fetch(options, timeout):
    host, port = options["host"], options["port"]
    name = options.get("server_name") or host
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


def _verify(options, timeout):
    """None when the server's certificate is trusted for the name, else the reason."""
    host, port = options["host"], options["port"]
    name = options.get("server_name") or host
    context = verifying_context(options.get("ca_cert"), options.get("ca_cert_data"))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=name):
                return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or str(exc)


def days_text(days):
    if days < 0:
        return "TLS cert expired %d day%s ago" % (-days, "" if days == -1 else "s")
    return "TLS cert %d day%s" % (days, "" if days == 1 else "s")


def run(probe, options, now=None):
    where = target(options)
    untrusted = None
    try:
        if options.get("path"):
            with open(options["path"], "r") as handle:
                pem = handle.read()
        else:
            der = _fetch(options, probe.remaining())
            if options.get("validate_certs", True):
                untrusted = _verify(options, probe.remaining())
    except (OSError, ValueError) as exc:
        probe.fail("%s: %s" % (where, cause(exc, probe.timeout)))
    try:
        if options.get("path"):
            der = pem_to_der(pem)
        not_before, not_after = validity(der)
    except (DERError, ValueError, IndexError) as exc:
        probe.fail("%s: cannot read the certificate's dates: %s" % (where, exc))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    days = (not_after - now).total_seconds() / 86400.0
    # whole days left; once expired, whole days since (at least 1)
    days = int(math.floor(days)) if days >= 0 else -max(1, int(-days))
    probe.metric("days", days, days_text(days))
    expiry = not_after.strftime("%Y-%m-%d %H:%M UTC")
    if not_before > now:
        probe.fail("%s: certificate not valid before %s" % (where, not_before.strftime("%Y-%m-%d %H:%M UTC")))
    if days < 0:
        probe.fail("%s: certificate expired on %s" % (where, expiry))
    if untrusted:
        probe.fail("%s: certificate not trusted: %s (expires %s)" % (where, untrusted, expiry))
    probe.message = "%s: certificate expires in %d days (%s)" % (where, days, expiry)
