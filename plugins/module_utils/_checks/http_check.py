# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""http: one request; status code, body regex, a JSON field; latency against thresholds.

A response slower than the latency's warn threshold is measured again (``slow_retries`` more
requests at most, within the check's timeout) and the fastest is judged, as monitoring
systems confirm a soft state before it counts: one slow response (a cold cache, a busy
second) is not the site's latency. A failed request or an unexpected status is never retried.

Redirects are followed within limits: credentials (the Authorization made from user:password@
in the URL, Authorization, Proxy-Authorization, Cookie) and every header the task set travel
only to the origin (scheme, host, port) they were given for, as curl and requests do; a
redirect to another origin carries only the harmless headers in SAFE_ACROSS_ORIGINS.

``connect_address`` works like curl's --resolve: connections to the URL's host name (on any
port, so also after a redirect to the same name) go to that address, while the Host header,
the TLS server name (SNI) and the certificate's name check stay the URL's name. So a load
balancer can check its own site on 127.0.0.1 under the public name, with verification on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import functools
import http.client
import json
import re
import socket
import ssl
import threading
from http.client import HTTPException
from urllib import error as urlerror
from urllib import parse as urlparse
from urllib import request as urlrequest

from ansible_collections.bosun.platform.plugins.module_utils._checks.base import (
    ca_problems,
    cause,
    fmt_num,
    verifying_context,
)
from ansible_collections.bosun.platform.plugins.module_utils._checks.status import Threshold

TYPE = "http"
REQUIRED = True
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
OPTIONS = dict(
    url=dict(type="str", required=True),
    method=dict(type="str", default="GET", choices=METHODS),
    headers=dict(type="dict"),
    secret_headers=dict(type="dict", no_log=True),
    body=dict(type="str"),
    status_codes=dict(type="list", elements="int", default=[200]),
    body_regex=dict(type="str"),
    json_path=dict(type="str"),
    json_equals=dict(type="raw"),
    json_in=dict(type="list", elements="raw"),
    validate_certs=dict(type="bool", default=True),
    ca_cert=dict(type="path"),
    # PEM text of the CA, e.g. from inventory; public, but kept out of logs as bulky noise
    ca_cert_data=dict(type="str", no_log=True),
    connect_address=dict(type="str"),
    follow_redirects=dict(type="bool", default=True),
    use_proxy=dict(type="bool", default=False),
    slow_retries=dict(type="int", default=2),
)
METRICS = dict(latency=Threshold(200, 500, unit="ms"))

MAX_BODY = 1024 * 1024
SENSITIVE_HEADER = re.compile(r"auth|cookie|token|secret|key|session|password", re.IGNORECASE)
# request headers still sent after a redirect to another origin (lower case)
SAFE_ACROSS_ORIGINS = frozenset(["accept", "accept-language", "user-agent"])
DEFAULT_PORTS = dict(http=80, https=443)
_MISSING = object()


def target(options):
    return safe_url(options.get("url") or "")


def validate(options):
    problems = []
    if (options.get("slow_retries") or 0) < 0:
        problems.append("http.slow_retries must be 0 or more (got %s)" % options["slow_retries"])
    url = options.get("url") or ""
    if urlparse.urlsplit(url).scheme not in ("http", "https"):
        problems.append("http.url must start with http:// or https:// (got %r)" % safe_url(url))
    if options.get("body_regex"):
        try:
            re.compile(options["body_regex"])
        except re.error as exc:
            problems.append("http.body_regex is not a valid regular expression: %s" % exc)
    if (options.get("json_equals") is not None or options.get("json_in") is not None) and not options.get("json_path"):
        problems.append("http.json_equals and http.json_in need http.json_path")
    if options.get("json_equals") is not None and options.get("json_in") is not None:
        problems.append("http.json_equals and http.json_in are mutually exclusive")
    both = set(str(n).lower() for n in options.get("headers") or {}) & set(
        str(n).lower() for n in options.get("secret_headers") or {}
    )
    if both:
        problems.append("http.headers and http.secret_headers both set %s" % ", ".join(sorted(both)))
    if options.get("connect_address") and options.get("use_proxy"):
        problems.append("http.connect_address and http.use_proxy are mutually exclusive")
    problems.extend(ca_problems("http", options))
    return problems


def secrets(options):
    """Values to keep out of output: credentials in the URL and in sensitive headers."""
    found = []
    url = options.get("url")
    parts = urlparse.urlsplit(url if isinstance(url, str) else "")
    if parts.password:
        found.extend([parts.password, urlparse.unquote(parts.password)])
        found.append(basic_auth(url).split()[-1])
    headers, declared = (options.get(key) for key in ("headers", "secret_headers"))
    headers = headers if isinstance(headers, dict) else {}
    declared = declared if isinstance(declared, dict) else {}
    for name, value in list(headers.items()) + list(declared.items()):
        if (name in declared or SENSITIVE_HEADER.search(str(name))) and value:
            found.append(str(value))
            parts = str(value).split()
            if len(parts) > 1:  # "Bearer <token>", "Basic <b64>": the credential alone too
                found.append(parts[-1])
    return found


def basic_auth(url):
    """The Authorization header value for user:password@ in ``url``, or None."""
    parts = urlparse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    pair = "%s:%s" % (urlparse.unquote(parts.username or ""), urlparse.unquote(parts.password or ""))
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def safe_url(url):
    """The URL without user:password@."""
    parts = urlparse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = "[%s]" % netloc
    if parts.port:
        netloc = "%s:%s" % (netloc, parts.port)
    return urlparse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def short_target(url):
    """'/health' for the report: the path (and query) of the URL."""
    parts = urlparse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return path


def origin(url):
    """(scheme, host, port) of ``url``, the port filled in from the scheme's default."""
    parts = urlparse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme))


class _NoRedirect(urlrequest.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class _Redirect(urlrequest.HTTPRedirectHandler):
    """urllib's redirect handling, minus what it does wrong for a check with credentials.

    urllib copies every request header to the next URL, whatever its origin. Here a redirect
    to another origin keeps only SAFE_ACROSS_ORIGINS (and never gets them back, should a
    later hop return), only http and https are followed, and user:password@ in a Location
    is dropped, never used.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlparse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            # a response with the redirect status, as when redirects are not followed
            raise urlerror.HTTPError(safe_url(newurl), code, msg, headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, safe_url(newurl))
        if new is not None and origin(new.full_url) != origin(req.full_url):
            for name in list(new.headers):
                if name.lower() not in SAFE_ACROSS_ORIGINS:
                    new.remove_header(name)
        return new


def json_lookup(document, path):
    """``a.b.0.c`` (an optional leading ``$.``) in parsed JSON; _MISSING when absent."""
    if path.startswith("$."):
        path = path[2:]
    node = document
    for part in [p for p in path.split(".") if p != ""]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and re.match(r"^-?\d+$", part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


_CONTEXTS = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(validate_certs, ca_cert, ca_cert_data=None):
    """One SSLContext per (validate, CA file, CA PEM), shared by the checks of a run.

    Loading the system's CA store costs tens of milliseconds; contexts are thread-safe.
    """
    key = (bool(validate_certs), ca_cert or None, ca_cert_data or None) if validate_certs else (False,)
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            if validate_certs:
                context = verifying_context(ca_cert, ca_cert_data)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            _CONTEXTS[key] = context
    return context


class _ResolvingMixin:
    """Connects to ``resolve[host name]`` instead of the host name's DNS address; the
    connection's ``host`` (Host header, SNI, certificate name) is left as it is."""

    def __init__(self, host, *args, resolve=None, **kwargs):
        super().__init__(host, *args, **kwargs)
        self._bosun_resolve = resolve or {}
        self._create_connection = self._resolved_connection

    def _resolved_connection(self, address, *args, **kwargs):
        host, port = address
        return socket.create_connection((self._bosun_resolve.get(host.lower(), host), port), *args, **kwargs)


class _ResolvingHTTPConnection(_ResolvingMixin, http.client.HTTPConnection):
    pass


class _ResolvingHTTPSConnection(_ResolvingMixin, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urlrequest.HTTPHandler):
    def __init__(self, resolve):
        super().__init__()
        self._resolve = resolve

    def http_open(self, req):
        return self.do_open(functools.partial(_ResolvingHTTPConnection, resolve=self._resolve), req)


class _HTTPSHandler(urlrequest.HTTPSHandler):
    def __init__(self, resolve, context):
        super().__init__(context=context)
        self._resolve = resolve
        self._bosun_context = context

    def https_open(self, req):
        return self.do_open(
            functools.partial(_ResolvingHTTPSConnection, resolve=self._resolve), req, context=self._bosun_context
        )


def resolve_map(options):
    """{URL host name: connect_address} (curl --resolve), empty without connect_address."""
    address = options.get("connect_address")
    host = (urlparse.urlsplit(options.get("url") or "").hostname or "").lower()
    return {host: address} if address and host else {}


def _opener(options):
    handlers = []
    resolve = resolve_map(options)
    context = tls_context(options.get("validate_certs", True), options.get("ca_cert"), options.get("ca_cert_data"))
    if resolve:
        handlers.extend([_HTTPHandler(resolve), _HTTPSHandler(resolve, context)])
    elif urlparse.urlsplit(options["url"]).scheme == "https" or options.get("follow_redirects", True):
        handlers.append(urlrequest.HTTPSHandler(context=context))
    if not options.get("use_proxy"):
        handlers.append(urlrequest.ProxyHandler({}))
    handlers.append(_Redirect() if options.get("follow_redirects", True) else _NoRedirect())
    return urlrequest.build_opener(*handlers)


def _exchange(probe, opener, request, method, shown):
    """One request: (status code, body, latency in ms); a failure to get a response fails the check."""
    start = probe.clock()
    try:
        response = opener.open(request, timeout=probe.remaining())
        code = response.getcode()
        body = response.read(MAX_BODY)
        response.close()
    except urlerror.HTTPError as exc:  # a response with an error status: still measured
        code = exc.code
        try:
            body = exc.read(MAX_BODY)
        except (OSError, HTTPException):
            body = b""
        exc.close()
    except urlerror.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        probe.fail("%s %s: %s" % (method, shown, cause(reason, probe.timeout)))
    except (socket.timeout, TimeoutError) as exc:
        probe.fail("%s %s: %s" % (method, shown, cause(exc, probe.timeout)))
    except (HTTPException, OSError, ValueError) as exc:
        probe.fail("%s %s: %s" % (method, shown, cause(exc, probe.timeout)))
    return code, body, round((probe.clock() - start) * 1000.0, 1)


def run(probe, options):
    url = options["url"]
    shown = safe_url(url)
    if options.get("connect_address"):
        shown = "%s (at %s)" % (shown, options["connect_address"])
    method = options.get("method") or "GET"
    data = options["body"].encode("utf-8") if options.get("body") is not None else None
    headers = dict((str(k), str(v)) for k, v in (options.get("headers") or {}).items())
    headers.update((str(k), str(v)) for k, v in (options.get("secret_headers") or {}).items())
    headers.setdefault("User-Agent", "bosun.platform.health_check")
    basic = basic_auth(url)
    if basic:  # user:password@ in the URL: HTTP basic authentication, as curl does
        url = shown
        if not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = basic
    # the scheme is checked to be http or https in validate()
    request = urlrequest.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    opener = _opener(options)
    expected = options.get("status_codes") or [200]

    def measured(number):
        """One exchange; an unexpected status fails the check, its latency still recorded."""
        code, body, latency = _exchange(probe, opener, request, method, shown)
        if code not in expected:
            probe.metric("latency", latency, "%s %s ms" % (short_target(url), fmt_num(latency, 0)))
            probe.fail(
                "%s %s: HTTP %s in %s ms, expected %s%s"
                % (
                    method,
                    shown,
                    code,
                    fmt_num(latency, 0),
                    "/".join(str(c) for c in expected),
                    " (request %d)" % number if number > 1 else "",
                )
            )
        return code, body, latency

    code, body, latency = measured(1)
    samples = 1
    threshold = probe.thresholds.get("latency")
    retries = options.get("slow_retries")
    if retries is None:
        retries = OPTIONS["slow_retries"]["default"]
    # A slow response is measured again while the budget leaves room for two more as slow;
    # the fastest counts.
    while (
        threshold is not None
        and threshold.warn is not None
        and latency >= threshold.warn
        and samples <= retries
        and probe.remaining() > 2 * latency / 1000.0
    ):
        samples += 1
        again, again_body, again_latency = measured(samples)
        if again_latency < latency:
            code, body, latency = again, again_body, again_latency
    of = " (fastest of %d)" % samples if samples > 1 else ""
    probe.metric("latency", latency, "%s %s ms%s" % (short_target(url), fmt_num(latency, 0), of))

    detail = ""
    text = body.decode("utf-8", "replace")
    if options.get("body_regex") and not re.search(options["body_regex"], text):
        probe.fail("%s %s: HTTP %s but the body does not match %r" % (method, shown, code, options["body_regex"]))
    if options.get("json_path"):
        path = options["json_path"]
        try:
            document = json.loads(text)
        except ValueError:
            probe.fail("%s %s: HTTP %s but the body is not JSON" % (method, shown, code))
        found = json_lookup(document, path)
        if found is _MISSING:
            probe.fail("%s %s: HTTP %s but the JSON has no %s" % (method, shown, code, path))
        if options.get("json_equals") is not None and found != options["json_equals"]:
            probe.fail(
                "%s %s: %s is %s, expected %s"
                % (method, shown, path, json.dumps(found), json.dumps(options["json_equals"]))
            )
        if options.get("json_in") is not None and found not in options["json_in"]:
            probe.fail(
                "%s %s: %s is %s, expected one of %s"
                % (method, shown, path, json.dumps(found), json.dumps(options["json_in"]))
            )
        detail = ", %s = %s" % (path, json.dumps(found))
    probe.message = "%s %s: HTTP %s in %s ms%s%s" % (method, shown, code, fmt_num(latency, 0), of, detail)
