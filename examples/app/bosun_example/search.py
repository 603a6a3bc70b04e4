"""Elasticsearch access of the example app: ``GET /search``, indexing on write, reindexing.

The items live in PostgreSQL; the index is a copy for searching, written when an item is
created and rebuilt from the table by ``python -m bosun_example.reindex``. HTTP goes
through the standard library (urllib, ssl): no client library.

Settings (environment; search is off when ``SEARCH_URL`` is unset):

- ``SEARCH_URL``: ``https://host:9200`` (``http://`` works too; no credentials in it)
- ``SEARCH_USER`` and ``SEARCH_PASSWORD`` or ``SEARCH_PASSWORD_FILE`` (HTTP basic auth)
- ``SEARCH_CA_FILE``: the CA that signed the node's certificate (default: the system's CAs)
- ``SEARCH_INDEX``: the index name (default ``items``)
- ``SEARCH_CACHE_TTL``: seconds a result stays in Redis (default 30)

Results are cached in Redis under ``search:<index>:<generation>:<hash of the query>``. The
generation is a random token in ``search:<index>:generation``; a write replaces it, so every
earlier result is out of use at once (and expires by its TTL). Deleting ``search:*`` (the
example inventory's cache group ``business``) empties the cache: the next search asks
Elasticsearch. The password appears in no message: every error text is redacted.
"""

import base64
import functools
import hashlib
import json
import os
import re
import secrets
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

import redis

from . import store

DEFAULT_INDEX = "items"
INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
RESULTS = 20
MAX_QUERY = 200
BATCH = 500
BULK_TIMEOUT = max(store.TIMEOUT, 30.0)
MAPPING = {
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "long"},
            "name": {"type": "text"},
            "created_at": {"type": "date"},
        },
    }
}
_READY = set()  # (url, index) pairs whose index this process has seen or created


class NotConfigured(store.ConfigError):
    """SEARCH_URL is not set: the app runs without search."""


class SearchError(RuntimeError):
    """Elasticsearch could not be reached or refused the request (the text is redacted)."""


class Settings:
    def __init__(self, url, index, user, password, ca_file):
        self.url = url
        self.index = index
        self.user = user
        self.password = password
        self.ca_file = ca_file

    def redact(self, text):
        text = str(text)
        if self.password:
            for secret in (self.password, quote(self.password, safe="")):
                text = text.replace(secret, "********")
        return text


def configured():
    return bool(os.environ.get("SEARCH_URL", "").strip())


def settings():
    """The search settings from the environment; NotConfigured or ConfigError when unusable."""
    url = os.environ.get("SEARCH_URL", "").strip()
    if not url:
        raise NotConfigured("search is not configured: SEARCH_URL is not set")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise store.ConfigError("SEARCH_URL must look like https://host:9200")
    if "@" in parts.netloc:
        raise store.ConfigError("SEARCH_URL must not hold credentials: set SEARCH_USER and SEARCH_PASSWORD")
    if parts.query or parts.fragment:
        raise store.ConfigError("SEARCH_URL must have no query or fragment")
    index = os.environ.get("SEARCH_INDEX", "").strip() or DEFAULT_INDEX
    if not INDEX_RE.match(index):
        raise store.ConfigError("SEARCH_INDEX must be lowercase letters, digits, '.', '_' or '-'")
    user = os.environ.get("SEARCH_USER", "")
    password = os.environ.get("SEARCH_PASSWORD", "")
    password_file = os.environ.get("SEARCH_PASSWORD_FILE", "")
    if password and password_file:
        raise store.ConfigError("set SEARCH_PASSWORD or SEARCH_PASSWORD_FILE, not both")
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except OSError as exc:
            raise store.ConfigError("SEARCH_PASSWORD_FILE %s: %s" % (password_file, exc.strerror)) from None
    if password and not user:
        raise store.ConfigError("a search password is set but SEARCH_USER is not")
    return Settings(url.rstrip("/"), index, user, password, os.environ.get("SEARCH_CA_FILE", "") or None)


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file):
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise store.ConfigError("SEARCH_CA_FILE cannot be used: %s" % (exc.strerror or exc)) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the Authorization header would go along."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    """Requests to one Elasticsearch cluster as SEARCH_USER, for one index."""

    def __init__(self, conf, timeout=store.TIMEOUT):
        self.conf = conf
        self.index = conf.index
        self.timeout = timeout
        handlers = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if conf.url.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=_tls_context(conf.ca_file)))
        self._opener = urllib.request.build_opener(*handlers)
        self._headers = {"Accept": "application/json"}
        if conf.user:
            token = "%s:%s" % (conf.user, conf.password)
            self._headers["Authorization"] = "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")

    def request(self, method, path, body=None, ndjson=None, timeout=None):
        """Return (status, parsed JSON or None); SearchError when the node cannot be reached."""
        headers = dict(self._headers)
        data = None
        if ndjson is not None:
            data = "".join(json.dumps(line) + "\n" for line in ndjson).encode("utf-8")
            headers["Content-Type"] = "application/x-ndjson"
        elif body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.conf.url + path, data=data, headers=headers, method=method)  # noqa: S310 - the scheme is checked in settings()
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except urllib.error.URLError as exc:
            raise SearchError(self.conf.redact("cannot reach Elasticsearch: %s" % (exc.reason,))) from None
        except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
            raise SearchError(self.conf.redact("cannot reach Elasticsearch: %s" % (exc,))) from None
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            payload = None
        return status, payload

    def checked(self, method, path, what, **kwargs):
        """request() that raises SearchError unless the answer is a success."""
        status, payload = self.request(method, path, **kwargs)
        if status >= 300:
            raise SearchError(self.conf.redact(self._describe(status, payload, what)))
        return payload

    def _describe(self, status, payload, what):
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            detail = "%s: %s" % (error.get("type"), error.get("reason"))
            kind = error.get("type")
        else:
            detail = str(error) if error else "no details"
            kind = None
        if status == 401:
            return "Elasticsearch refused the credentials (HTTP 401): check SEARCH_USER and SEARCH_PASSWORD"
        if status == 403:
            return "SEARCH_USER may not %s (HTTP 403): %s" % (what, detail)
        if kind == "index_not_found_exception":
            return "index %s does not exist: run python -m bosun_example.reindex" % self.index
        return "%s failed: HTTP %d %s" % (what, status, detail)

    # the index ------------------------------------------------------------------------
    def ensure_index(self):
        """Create the index with MAPPING if it is absent; True when it was created."""
        status, _payload = self.request("HEAD", "/" + self.index)
        if status == 200:
            _READY.add((self.conf.url, self.index))
            return False
        if status != 404:
            self.checked("GET", "/" + self.index, "read index %s" % self.index)
        status, payload = self.request("PUT", "/" + self.index, body=MAPPING)
        if status >= 300:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not (isinstance(error, dict) and error.get("type") == "resource_already_exists_exception"):
                raise SearchError(self.conf.redact(self._describe(status, payload, "create index %s" % self.index)))
        _READY.add((self.conf.url, self.index))
        return status < 300

    def check_mapping(self):
        """SearchError unless the index maps ``name`` as text (as MAPPING does)."""
        payload = self.checked("GET", "/%s/_mapping" % self.index, "read the mapping of %s" % self.index)
        for mapping in (payload or {}).values():
            field = mapping.get("mappings", {}).get("properties", {}).get("name", {})
            if field.get("type") != "text":
                raise SearchError(
                    "index %s maps name as %s, not text: delete the index and run reindex again"
                    % (self.index, field.get("type") or "nothing")
                )

    def index_item(self, item):
        """Index one item, visible to searches when this returns (refresh=wait_for)."""
        if (self.conf.url, self.index) not in _READY:
            self.ensure_index()
        self.checked(
            "PUT",
            "/%s/_doc/%d?refresh=wait_for" % (self.index, item["id"]),
            "index into %s" % self.index,
            body=_document(item),
        )

    def bulk_index(self, items):
        lines = []
        for item in items:
            lines.append({"index": {"_index": self.index, "_id": str(item["id"])}})
            lines.append(_document(item))
        self._bulk(lines)

    def bulk_delete(self, ids):
        self._bulk([{"delete": {"_index": self.index, "_id": str(doc_id)}} for doc_id in ids])

    def _bulk(self, lines):
        if not lines:
            return
        payload = self.checked("POST", "/_bulk", "bulk into %s" % self.index, ndjson=lines, timeout=BULK_TIMEOUT)
        if payload and payload.get("errors"):
            for entry in payload.get("items", []):
                result = next(iter(entry.values()))
                error = result.get("error")
                if error and not (result.get("status") == 404 and "delete" in entry):
                    raise SearchError(
                        self.conf.redact(
                            "bulk into %s: document %s: %s: %s"
                            % (self.index, result.get("_id"), error.get("type"), error.get("reason"))
                        )
                    )

    def indexed_ids(self, max_id):
        """The ids of the documents with id <= max_id, a page at a time (search_after on id)."""
        after = None
        while True:
            body = {
                "size": 1000,
                "_source": False,
                "query": {"range": {"id": {"lte": max_id}}},
                "sort": [{"id": "asc"}],
            }
            if after is not None:
                body["search_after"] = after
            payload = self.checked(
                "POST", "/%s/_search" % self.index, "search %s" % self.index, body=body, timeout=BULK_TIMEOUT
            )
            hits = payload["hits"]["hits"]
            if not hits:
                return
            for hit in hits:
                yield int(hit["_id"])
            after = hits[-1]["sort"]

    def refresh(self):
        self.checked("POST", "/%s/_refresh" % self.index, "refresh %s" % self.index, timeout=BULK_TIMEOUT)

    # searching ------------------------------------------------------------------------
    def search(self, query):
        body = {
            "query": {"match": {"name": {"query": query}}},
            "size": RESULTS,
            "_source": ["id", "name", "created_at"],
        }
        payload = self.checked("POST", "/%s/_search" % self.index, "search %s" % self.index, body=body)
        hits = payload["hits"]
        items = [dict(hit["_source"], score=hit.get("_score")) for hit in hits["hits"]]
        return {"total": hits["total"]["value"], "items": items}

    def count(self):
        return self.checked("GET", "/%s/_count" % self.index, "count %s" % self.index)["count"]


def _document(item):
    created = item["created_at"]
    return {
        "id": item["id"],
        "name": item["name"],
        "created_at": created if isinstance(created, str) else created.isoformat(),
    }


# the cache ----------------------------------------------------------------------------
def _ttl():
    try:
        return max(1, int(os.environ.get("SEARCH_CACHE_TTL", "30")))
    except ValueError:
        return 30


def _generation_key(index):
    return "search:%s:generation" % index


def _cache_key(cache, index, query):
    generation_key = _generation_key(index)
    generation = cache.get(generation_key)
    if generation is None:
        cache.set(generation_key, secrets.token_hex(8), nx=True)
        generation = cache.get(generation_key) or b"0"
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()[:32]
    return "search:%s:%s:%s" % (index, generation.decode("ascii", "replace"), digest)


def invalidate_cache(index):
    """Put every cached result of ``index`` out of use (best effort: Redis is a cache only)."""
    try:
        store.connect_redis().set(_generation_key(index), secrets.token_hex(8))
    except (redis.RedisError, store.ConfigError):
        pass


# what the app and the command call --------------------------------------------------------
def normalize(query):
    return " ".join(str(query).split())


def search(query):
    """Search the items; returns {"total", "items", "cached", "index"}. Errors: ConfigError, SearchError."""
    conf = settings()
    cache = key = None
    try:
        cache = store.connect_redis()
        key = _cache_key(cache, conf.index, query)
        hit = cache.get(key)
        if hit is not None:
            return dict(json.loads(hit), cached=True, index=conf.index)
    except (redis.RedisError, store.ConfigError):
        cache = None
    result = Client(conf).search(query)
    if cache is not None:
        try:
            cache.set(key, json.dumps(result), ex=_ttl())
        except redis.RedisError:
            pass
    return dict(result, cached=False, index=conf.index)


def index_item(item):
    """Index a new item and put the cached results out of use. Raises on failure."""
    conf = settings()
    Client(conf).index_item(item)
    invalidate_cache(conf.index)


def check():
    """The /health entry: "ok", or "degraded" (search is optional: the app serves without it)."""
    start = time.monotonic()
    conf = None
    try:
        conf = settings()
        Client(conf).count()
    except Exception as exc:  # any failure at all makes search degraded
        text = str(exc) if isinstance(exc, (SearchError, store.ConfigError)) else "%s: %s" % (type(exc).__name__, exc)
        return {"status": "degraded", "error": conf.redact(text) if conf else text}
    return {"status": "ok", "latency_ms": round((time.monotonic() - start) * 1000, 1)}


def reindex(conn, client, batch=BATCH):
    """Copy every row of ``items`` into the index (by id, so a rerun changes nothing) and
    delete documents whose row is gone. Returns (index created, indexed, removed)."""
    created = client.ensure_index()
    if not created:
        client.check_mapping()
    # Ids above the sequence's value now belong to items created while this runs, which
    # their own write indexes: only documents up to it are compared with the table.
    last_value, is_called = conn.run("SELECT last_value, is_called FROM items_id_seq")[0]
    bound = last_value if is_called else 0
    seen = set()
    after = 0
    while True:
        rows = conn.run(
            "SELECT id, name, created_at FROM items WHERE id > :after ORDER BY id LIMIT :limit",
            after=after,
            limit=batch,
        )
        if not rows:
            break
        client.bulk_index({"id": row[0], "name": row[1], "created_at": row[2]} for row in rows)
        seen.update(row[0] for row in rows)
        after = rows[-1][0]
    stale = [doc_id for doc_id in client.indexed_ids(bound) if doc_id not in seen]
    for start in range(0, len(stale), batch):
        client.bulk_delete(stale[start : start + batch])
    client.refresh()
    return created, len(seen), len(stale)
