# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis connection options shared by every redis-facing module.

One argument spec (documented once in the ``bosun.platform.redis`` doc fragment) and one
connect() that turns it into a redis-py client with TLS, ACL user and timeouts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ssl

try:
    import redis

    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    redis = None
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = exc

try:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - redis-py missing or too old to have retries
    NoBackoff = Retry = None

from ansible_collections.bosun.platform.plugins.module_utils._io import redact

REDIS_COMMON_ARGS = dict(
    login_host=dict(type="str", default="127.0.0.1"),
    login_port=dict(type="int", default=6379),
    login_unix_socket=dict(type="path"),
    login_user=dict(type="str"),
    login_password=dict(type="str", no_log=True),
    login_db=dict(type="int", default=0),
    tls=dict(type="bool", default=False),
    validate_certs=dict(type="bool", default=True),
    ca_cert=dict(type="path"),
    client_cert=dict(type="path"),
    client_key=dict(type="path", no_log=False),
    connect_timeout=dict(type="float", default=5.0),
    socket_timeout=dict(type="float", default=30.0),
)


def redis_argument_spec(**extra):
    """The shared connection options plus a module's own."""
    spec = dict((k, dict(v)) for k, v in REDIS_COMMON_ARGS.items())
    spec.update(extra)
    return spec


def describe(params):
    """A short, secret-free name for the server for messages."""
    if params.get("login_unix_socket"):
        where = params["login_unix_socket"]
    else:
        where = "%s:%s" % (params.get("login_host"), params.get("login_port"))
    return "%s db %s" % (where, params.get("login_db", 0))


def secrets_of(params):
    """The values that must never appear in output."""
    return [params.get("login_password") or ""]


class RedisError(Exception):
    """A connection or command failed; the message is already free of secrets."""


def client_kwargs(params):
    """Keyword arguments for redis.Redis().

    One attempt per connection: redis-py 6+ retries a failed connection three times with
    backoff by default, which turns a refused port into seconds of waiting and hides the
    first error. A module reports the failure instead.
    """
    kw = dict(
        db=params.get("login_db") or 0,
        username=params.get("login_user") or None,
        password=params.get("login_password") or None,
        socket_connect_timeout=params.get("connect_timeout"),
        socket_timeout=params.get("socket_timeout"),
    )
    if Retry is not None:
        kw["retry"] = Retry(NoBackoff(), 0)
    if params.get("login_unix_socket"):
        kw["unix_socket_path"] = params["login_unix_socket"]
    else:
        kw["host"] = params.get("login_host")
        kw["port"] = params.get("login_port")
        if params.get("tls"):
            kw.update(
                ssl=True,
                ssl_cert_reqs=ssl.CERT_REQUIRED if params.get("validate_certs", True) else ssl.CERT_NONE,
                ssl_check_hostname=bool(params.get("validate_certs", True)),
                ssl_ca_certs=params.get("ca_cert"),
                ssl_certfile=params.get("client_cert"),
                ssl_keyfile=params.get("client_key"),
            )
    return kw


def connect(params, ping=True):
    """Return a redis.Redis client (AUTH and PING done); raise RedisError on failure."""
    if not HAS_REDIS:
        raise RedisError(
            "the Python library redis is required on the managed host "
            "(pip install redis, or the python3-redis package): %s" % REDIS_IMPORT_ERROR
        )
    client = redis.Redis(**client_kwargs(params))
    if ping:
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            raise RedisError(
                "cannot connect to Redis at %s%s: %s"
                % (
                    describe(params),
                    " as %s" % params["login_user"] if params.get("login_user") else "",
                    redact(str(exc), secrets_of(params)),
                )
            ) from None
    return client
