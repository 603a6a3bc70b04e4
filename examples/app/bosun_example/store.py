"""PostgreSQL and Redis access of the example app.

Connection details come from the environment (the release's ``.env``, linked from
``shared/``): ``DATABASE_URL`` (``postgresql://user:password@host:5432/db?sslmode=require``)
and ``REDIS_URL`` (``redis://user:password@host:6379/0``, ``rediss://`` for TLS).
Every call has a short timeout, so a dead dependency makes ``/health`` answer "degraded"
quickly instead of hanging a worker.
"""

import json
import os
import ssl
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
import redis

TIMEOUT = float(os.environ.get("APP_BACKEND_TIMEOUT", "2"))
CACHE_KEY = "bosun-example:items"
CACHE_TTL = int(os.environ.get("APP_CACHE_TTL", "30"))


class ConfigError(RuntimeError):
    """A setting the app needs is missing or malformed."""


def _database_params():
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise ConfigError("DATABASE_URL is not set")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    params = {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password) if parts.password is not None else None,
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or None,
        "timeout": TIMEOUT,
        "application_name": "bosun-example",
    }
    sslmode = parse_qs(parts.query).get("sslmode", ["prefer"])[0]
    if sslmode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context()
        if sslmode == "require":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        params["ssl_context"] = context
    return params


def connect_database():
    """A new connection to PostgreSQL (the caller closes it)."""
    return pg8000.native.Connection(**_database_params())


def connect_redis():
    url = os.environ.get("REDIS_URL", "")
    if not url:
        raise ConfigError("REDIS_URL is not set")
    return redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


def _timed(check):
    start = time.monotonic()
    try:
        check()
    except Exception as exc:  # any failure at all makes the dependency unhealthy
        return {"status": "error", "error": "%s: %s" % (type(exc).__name__, exc)}
    return {"status": "ok", "latency_ms": round((time.monotonic() - start) * 1000, 1)}


def check_database():
    def probe():
        conn = connect_database()
        try:
            conn.run("SELECT 1")
        finally:
            conn.close()

    return _timed(probe)


def check_redis():
    return _timed(lambda: connect_redis().ping())


def list_items():
    """Return (items, served_from_cache). Redis is a cache only: when it fails, read PostgreSQL."""
    cache = None
    try:
        cache = connect_redis()
        cached = cache.get(CACHE_KEY)
        if cached is not None:
            return json.loads(cached), True
    except (redis.RedisError, ConfigError):
        cache = None
    conn = connect_database()
    try:
        rows = conn.run("SELECT id, name, created_at FROM items ORDER BY id DESC LIMIT 100")
    finally:
        conn.close()
    items = [{"id": row[0], "name": row[1], "created_at": row[2].isoformat()} for row in rows]
    if cache is not None:
        try:
            cache.set(CACHE_KEY, json.dumps(items), ex=CACHE_TTL)
        except redis.RedisError:
            pass
    return items, False


def add_item(name):
    """Insert an item and drop the cached list; returns {"id", "name", "created_at"}."""
    conn = connect_database()
    try:
        rows = conn.run("INSERT INTO items (name) VALUES (:name) RETURNING id, created_at", name=name)
    finally:
        conn.close()
    try:
        connect_redis().unlink(CACHE_KEY)
    except (redis.RedisError, ConfigError):
        pass
    return {"id": rows[0][0], "name": name, "created_at": rows[0][1].isoformat()}
