"""WSGI application of the example app (``bosun_example.app:application``).

Endpoints:

- ``GET /health``: ``{"status": "healthy"|"degraded", "checks": {"database": ..., "redis": ...}}``,
  HTTP 200 when healthy, 503 when degraded (a release built with ``build.py --broken`` is
  always degraded). When search is configured, ``checks.search`` says "ok" or "degraded";
  search is optional, so it never changes ``status`` nor the HTTP code.
- ``GET /version``: the release id (the release directory's name), the build version and
  whether the build is the deliberately broken one.
- ``GET /metrics``: Prometheus text format (counters are per worker process).
- ``GET /``: a page listing items from PostgreSQL through a Redis cache, with a form;
  ``GET /items`` and ``POST /items`` are the same as JSON. A new item is also indexed for
  search (best effort: it is stored when Elasticsearch is down, and the answer says so).
- ``GET /search?q=words``: items whose name matches, from Elasticsearch through a Redis
  cache (``search.py``); 503 when search is not configured or Elasticsearch fails.
- ``GET /whoami``: which host and release answered and the proxy headers that reached it.
"""

import datetime
import html
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import parse_qs

from . import search, store

RELEASE_DIR = Path(__file__).resolve().parent.parent
STARTED = time.time()
ECHOED_HEADERS = (
    "HTTP_HOST",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_X_REQUEST_ID",
    "HTTP_UPGRADE",
    "HTTP_CONNECTION",
    "HTTP_USER_AGENT",
)
MAX_BODY = 64 * 1024


def _release_info():
    version_file = RELEASE_DIR / "VERSION"
    version = version_file.read_text(encoding="utf-8").strip() if version_file.exists() else "unknown"
    # Deployed by bosun.platform.app the code lives in <app root>/releases/<release id>.
    if RELEASE_DIR.parent.name == "releases":
        release = RELEASE_DIR.name
    else:
        release = os.environ.get("APP_RELEASE", version)
    return {"release": release, "version": version, "broken": (RELEASE_DIR / "BROKEN").exists()}


INFO = _release_info()
REQUESTS = {}


class Response:
    def __init__(self, status, body, content_type="application/json", headers=None):
        self.status = status
        if content_type == "application/json":
            body = json.dumps(body, indent=None, sort_keys=True) + "\n"
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = [("Content-Type", content_type), ("Content-Length", str(len(self.body)))]
        self.headers.extend(headers or [])


def health(_environ):
    checks = {"database": store.check_database(), "redis": store.check_redis()}
    if INFO["broken"]:
        checks["release"] = {"status": "error", "error": "deliberately broken build"}
    healthy = all(check["status"] == "ok" for check in checks.values())
    if search.configured():  # optional: reported, never a reason to take the app out of service
        checks["search"] = search.check()
    body = {
        "status": "healthy" if healthy else "degraded",
        "release": INFO["release"],
        "version": INFO["version"],
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "checks": checks,
    }
    return Response(200 if healthy else 503, body)


def version(_environ):
    return Response(200, INFO)


def whoami(environ):
    headers = {key[5:].replace("_", "-").title(): environ[key] for key in ECHOED_HEADERS if key in environ}
    body = {
        "hostname": socket.gethostname(),
        "release": INFO["release"],
        "remote_addr": environ.get("REMOTE_ADDR"),
        "scheme": environ.get("wsgi.url_scheme"),
        "headers": headers,
    }
    return Response(200, body)


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(_environ):
    lines = [
        "# HELP bosun_example_build_info The release and build this process runs.",
        "# TYPE bosun_example_build_info gauge",
        'bosun_example_build_info{release="%s",version="%s",broken="%s"} 1'
        % (_escape_label(INFO["release"]), _escape_label(INFO["version"]), str(INFO["broken"]).lower()),
        "# HELP bosun_example_process_start_time_seconds Start time of this worker process.",
        "# TYPE bosun_example_process_start_time_seconds gauge",
        "bosun_example_process_start_time_seconds %.3f" % STARTED,
        "# HELP bosun_example_requests_total Requests answered by this worker process.",
        "# TYPE bosun_example_requests_total counter",
    ]
    for (method, route, status), count in sorted(REQUESTS.items()):
        lines.append(
            'bosun_example_requests_total{method="%s",route="%s",status="%d"} %d'
            % (_escape_label(method), _escape_label(route), status, count)
        )
    return Response(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4; charset=utf-8")


def _read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise ValueError("request body too large")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _item_name(environ):
    body = _read_body(environ)
    if environ.get("CONTENT_TYPE", "").startswith("application/json"):
        name = json.loads(body or b"{}").get("name", "")
    else:
        name = parse_qs(body.decode("utf-8")).get("name", [""])[0]
    name = str(name).strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("name must have 1 to 200 characters")
    return name


def items(environ):
    if environ["REQUEST_METHOD"] == "POST":
        try:
            name = _item_name(environ)
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        item = store.add_item(name)
        indexed = _index_item(environ, item)
        if environ.get("CONTENT_TYPE", "").startswith("application/json"):
            body = {"id": item["id"], "name": name}
            if indexed is not None:
                body["search"] = indexed
            return Response(201, body)
        return Response(303, "", "text/plain", [("Location", "/")])
    rows, cached = store.list_items()
    return Response(200, {"items": rows, "cached": cached, "release": INFO["release"]})


def _index_item(environ, item):
    """Index a new item for search. None when search is off, else {"indexed": bool[, "error"]}:
    the item is stored either way; a failure is logged and repaired by a reindex."""
    if not search.configured():
        return None
    try:
        search.index_item(item)
    except Exception as exc:  # best effort: the database holds the item
        error = str(exc) if isinstance(exc, (search.SearchError, store.ConfigError)) else type(exc).__name__
        environ["wsgi.errors"].write("bosun-example: item %d stored but not indexed: %s\n" % (item["id"], error))
        return {"indexed": False, "error": error}
    return {"indexed": True}


def search_items(environ):
    query = search.normalize(parse_qs(environ.get("QUERY_STRING", "")).get("q", [""])[0])
    if not query:
        return Response(400, {"error": "q is required: /search?q=words"})
    if len(query) > search.MAX_QUERY:
        return Response(400, {"error": "q must have at most %d characters" % search.MAX_QUERY})
    try:
        result = search.search(query)
    except search.NotConfigured as exc:
        return Response(503, {"error": str(exc)})
    except (search.SearchError, store.ConfigError) as exc:
        environ["wsgi.errors"].write("bosun-example: search failed: %s\n" % exc)
        return Response(503, {"error": "search is unavailable: %s" % exc})
    return Response(200, dict(result, query=query, release=INFO["release"]))


def index(_environ):
    rows, cached = store.list_items()
    listing = "\n".join("<li>%s</li>" % html.escape(row["name"]) for row in rows) or "<li>(none yet)</li>"
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>bosun example</title></head><body>\n"
        "<h1>bosun example app</h1>\n<p>release %s (%s)</p>\n"
        "<form method='post' action='/items'><input name='name' maxlength='200' required> "
        "<button>add</button></form>\n<ul>\n%s\n</ul>\n</body></html>\n"
    ) % (html.escape(INFO["release"]), "from the cache" if cached else "from the database", listing)
    return Response(200, page, "text/html; charset=utf-8")


ROUTES = {
    "/health": (health, ("GET", "HEAD")),
    "/version": (version, ("GET", "HEAD")),
    "/metrics": (metrics, ("GET", "HEAD")),
    "/whoami": (whoami, ("GET", "HEAD")),
    "/items": (items, ("GET", "HEAD", "POST")),
    "/search": (search_items, ("GET", "HEAD")),
    "/": (index, ("GET", "HEAD")),
}

REASONS = {
    200: "OK",
    201: "Created",
    303: "See Other",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/") or "/"
    method = environ.get("REQUEST_METHOD", "GET")
    route = path if path in ROUTES else "other"
    if route == "other":
        response = Response(404, {"error": "not found"})
    elif method not in ROUTES[route][1]:
        response = Response(405, {"error": "method not allowed"}, headers=[("Allow", ", ".join(ROUTES[route][1]))])
    else:
        try:
            response = ROUTES[route][0](environ)
        except Exception as exc:  # the error is answered and logged, the worker stays up
            environ["wsgi.errors"].write("bosun-example: %s %s failed: %r\n" % (method, path, exc))
            response = Response(500, {"error": type(exc).__name__})
    key = (method, route, response.status)
    REQUESTS[key] = REQUESTS.get(key, 0) + 1
    start_response("%d %s" % (response.status, REASONS.get(response.status, "")), response.headers)
    return [b""] if method == "HEAD" else [response.body]
