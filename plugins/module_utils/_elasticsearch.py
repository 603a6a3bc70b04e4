# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talking to Elasticsearch's REST API through Ansible's own ``open_url``.

Shared by the ``elasticsearch`` type of health_check and the elasticsearch_maintenance
module, so the managed host needs no client library: one connection spec (URL, basic
authentication or an API key, TLS verified against ``ca_cert``, ``ca_cert_data`` or the
system's CAs), its validation, and one request function whose failures are an
``ElasticsearchError`` naming the method, the URL (never credentials) and the cause in
words (refused, timed out, TLS, HTTP 401/403 with Elasticsearch's own reason). The password
and the API key never appear in a message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import ssl
import tempfile
import threading
from http.client import HTTPException
from urllib import error as urlerror
from urllib import parse as urlparse

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.bosun.platform.plugins.module_utils import _io
from ansible_collections.bosun.platform.plugins.module_utils._checks.base import cause, verifying_context
from ansible_collections.bosun.platform.plugins.module_utils._checks.http_check import safe_url

# The connection options, as the health check's sub-dict and the module share them.
CONNECTION_OPTIONS = dict(
    url=dict(type="str", default="https://127.0.0.1:9200"),
    login_user=dict(type="str"),
    login_password=dict(type="str", no_log=True),
    api_key=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=True),
    ca_cert=dict(type="path"),
    # PEM text of the CA, e.g. from inventory; public, but kept out of logs as bulky noise
    ca_cert_data=dict(type="str", no_log=True),
)

MAX_BODY = 4 * 1024 * 1024
MONITOR = "the cluster privilege monitor"

# open_url installs its opener process-wide (urllib.request.install_opener) before it
# opens the URL: two requests in two threads could each use the other's TLS settings.
# Requests are made one at a time.
OPEN_LOCK = threading.Lock()


class ElasticsearchError(Exception):
    """A request failed: ``message`` in words; ``status`` the HTTP status (None when no
    answer came) and ``error_type`` Elasticsearch's error type (``index_not_found_exception``)."""

    def __init__(self, message, status=None, error_type=None):
        super(ElasticsearchError, self).__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type


# --- options ------------------------------------------------------------------------------
def connection_problems(options, prefix=""):
    """Problems with the connection options; ``prefix`` (``elasticsearch.``) names them."""
    problems = []
    url = options.get("url") or ""
    parts = urlparse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("%surl must be http:// or https:// and a host (got %r)" % (prefix, safe_url(url)))
    if parts.username is not None or parts.password is not None:
        problems.append("%surl must not hold credentials: give login_user and login_password" % prefix)
    if parts.query or parts.fragment:
        problems.append("%surl must not have a query or fragment (got %r)" % (prefix, safe_url(url)))
    if options.get("api_key") and (options.get("login_user") or options.get("login_password")):
        problems.append("%sapi_key and %slogin_user/login_password are mutually exclusive" % (prefix, prefix))
    if options.get("login_password") and not options.get("login_user"):
        problems.append("%slogin_password needs %slogin_user" % (prefix, prefix))
    return problems


def ca_problems(options, prefix=""):
    """``ca_cert`` and ``ca_cert_data`` are exclusive; PEM text must hold a certificate.
    The PEM itself is never quoted back."""
    if options.get("ca_cert") and options.get("ca_cert_data"):
        return ["%sca_cert and %sca_cert_data are mutually exclusive" % (prefix, prefix)]
    if options.get("ca_cert_data"):
        try:
            verifying_context(None, options["ca_cert_data"])
        except (ssl.SSLError, ValueError, TypeError) as exc:
            return ["%sca_cert_data holds no usable PEM CA certificate (%s)" % (prefix, type(exc).__name__)]
    return []


def api_key_header(api_key):
    """``ApiKey <base64>`` from the encoded key Elasticsearch returns, or from ``id:key``."""
    key = str(api_key).strip()
    if ":" in key:
        key = base64.b64encode(key.encode("utf-8")).decode("ascii")
    return "ApiKey " + key


def secrets(options):
    """The password and API key, and the forms they travel in (base64 in a header)."""
    found = []
    user, password = options.get("login_user"), options.get("login_password")
    if password:
        found.append(password)
        pair = "%s:%s" % (user or "", password)
        found.append(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    if options.get("api_key"):
        found.append(str(options["api_key"]))
        found.append(api_key_header(options["api_key"]).split()[-1])
    return found


def redact(text, options):
    """``text`` with every secret of ``options`` masked (a last line of defence)."""
    return _io.redact(str(text), secrets(options))


def describe(options):
    return "Elasticsearch %s" % safe_url(options.get("url") or "")


class CaFile:
    """``with CaFile(options) as ca_path``: the CA file open_url verifies against: ``ca_cert``,
    or ``ca_cert_data`` written to a private temporary file removed on exit; None for the
    system's CAs."""

    def __init__(self, options):
        self.options = options
        self.temp = None

    def __enter__(self):
        if self.options.get("ca_cert_data") and self.options.get("validate_certs", True):
            fd, self.temp = tempfile.mkstemp(prefix="bosun-es-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as f:
                f.write(self.options["ca_cert_data"])
            return self.temp
        return self.options.get("ca_cert")

    def __exit__(self, *exc):
        if self.temp:
            os.unlink(self.temp)
            self.temp = None


# --- errors in words --------------------------------------------------------------------------
def _error(body):
    try:
        return json.loads(body.decode("utf-8", "replace")).get("error")
    except (ValueError, AttributeError):
        return None


def error_reason(body):
    """Elasticsearch's own words from an error body: 'type: reason', or ''."""
    error = _error(body)
    if isinstance(error, dict):
        kind, reason = error.get("type") or "", error.get("reason") or ""
        return "%s: %s" % (kind, reason) if kind and reason else (reason or kind)
    return str(error or "")


def error_type(body):
    error = _error(body)
    return error.get("type") if isinstance(error, dict) else None


def http_failure(code, body, options, privilege=MONITOR):
    """What an error status means, in words; ``privilege`` is what a 403 says is missing."""
    reason = error_reason(body)
    if code == 401:
        who = "with the API key" if options.get("api_key") else "for user %s" % (options.get("login_user") or "(none)")
        if not options.get("api_key") and not options.get("login_user"):
            return "HTTP 401, authentication required: give login_user and login_password or api_key"
        return "HTTP 401, authentication failed %s%s" % (who, " (%s)" % reason if reason else "")
    if code == 403:
        return "HTTP 403, not allowed%s; the user needs %s" % (" (%s)" % reason if reason else "", privilege)
    return "HTTP %s%s" % (code, ": %s" % reason if reason else "")


def hint(options, exc):
    """A closed connection on http:// is most often a node that speaks HTTPS."""
    closed = isinstance(exc, (ConnectionResetError, HTTPException))
    if closed and urlparse.urlsplit(options.get("url") or "").scheme == "http":
        return " (does the node require https?)"
    return ""


# --- the request ------------------------------------------------------------------------------
def request(
    options,
    method,
    path,
    body=None,
    timeout=30,
    ca_path=None,
    agent="bosun.platform",
    privilege=MONITOR,
    timeout_label=None,
    max_body=MAX_BODY,
):
    """``method path`` (path with its query, quoted by the caller) with an optional JSON
    ``body``; returns the parsed JSON answer (None when empty). Any failure raises
    ElasticsearchError. ``timeout`` bounds the wait for the answer; ``timeout_label`` is
    the figure the message names (default ``timeout``)."""
    base = options["url"].rstrip("/")
    shown = "%s %s%s" % (method, safe_url(base), path.split("?", 1)[0])
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    kwargs = {}
    if options.get("api_key"):
        headers["Authorization"] = api_key_header(options["api_key"])
    elif options.get("login_user"):
        kwargs = dict(url_username=options["login_user"], url_password=options.get("login_password") or "")
    label = timeout if timeout_label is None else timeout_label
    try:
        with OPEN_LOCK:
            response = open_url(
                base + path,
                data=data,
                method=method,
                headers=headers,
                use_proxy=False,
                timeout=timeout,
                validate_certs=options.get("validate_certs", True),
                force_basic_auth=True,
                follow_redirects="none",
                http_agent=agent,
                ca_path=ca_path,
                use_netrc=False,
                **kwargs,
            )
        code = response.getcode()
        raw = response.read(max_body)
        response.close()
    except urlerror.HTTPError as exc:
        try:
            raw = exc.read(max_body)
        except (OSError, HTTPException):
            raw = b""
        exc.close()
        raise ElasticsearchError(
            "%s: %s" % (shown, http_failure(exc.code, raw, options, privilege)), exc.code, error_type(raw)
        ) from None
    except urlerror.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise ElasticsearchError("%s: %s%s" % (shown, cause(reason, label), hint(options, reason))) from None
    except (UrlsConnectionError, HTTPException, OSError, ValueError) as exc:
        raise ElasticsearchError("%s: %s%s" % (shown, cause(exc, label), hint(options, exc))) from None
    if not 200 <= code < 300:
        raise ElasticsearchError("%s: %s" % (shown, http_failure(code, raw, options, privilege)), code, error_type(raw))
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        raise ElasticsearchError("%s: HTTP %s but the body is not JSON" % (shown, code), code) from None
