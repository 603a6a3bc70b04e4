# Copyright: bosun.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection options shared by every postgres-facing module.

One argument spec (documented once in the ``bosun.platform.postgres`` doc fragment), one
way to turn it into libpq parameters for psycopg2, and one way to hand it to the client
programs (pg_dump, pg_restore, psql ...) through the environment: the password never goes
into argv.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

try:
    import psycopg2
    import psycopg2.extras

    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

from ansible_collections.bosun.platform.plugins.module_utils._io import redact

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

POSTGRES_COMMON_ARGS = dict(
    login_host=dict(type="str", default=""),
    login_port=dict(type="int", default=5432),
    login_user=dict(type="str", default="postgres"),
    login_password=dict(type="str", default="", no_log=True),
    login_unix_socket=dict(type="str", default=""),
    ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
    ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
    ssl_cert=dict(type="path"),
    ssl_key=dict(type="path", no_log=False),
    connect_timeout=dict(type="int", default=10),
)

APPLICATION_NAME = "bosun.platform"


def postgres_argument_spec(**extra):
    """The shared connection options plus a module's own."""
    spec = dict((k, dict(v)) for k, v in POSTGRES_COMMON_ARGS.items())
    spec.update(extra)
    return spec


def _host(params):
    # A unix socket directory wins over a host name, as libpq treats a host starting with /.
    return params.get("login_unix_socket") or params.get("login_host") or ""


def describe(params, dbname=None):
    """A short, secret-free name for the server (and database) for messages."""
    host = _host(params) or "local socket"
    where = "%s:%s" % (host, params.get("login_port"))
    return "%s/%s" % (where, dbname) if dbname else where


def libpq_params(params, dbname=None):
    """Keyword parameters for psycopg2.connect()."""
    kw = dict(
        port=params.get("login_port"),
        user=params.get("login_user"),
        sslmode=params.get("ssl_mode") or "prefer",
        connect_timeout=params.get("connect_timeout") or 10,
        application_name=APPLICATION_NAME,
        dbname=dbname or "postgres",
    )
    host = _host(params)
    if host:
        kw["host"] = host
    if params.get("login_password"):
        kw["password"] = params["login_password"]
    for ours, theirs in (("ca_cert", "sslrootcert"), ("ssl_cert", "sslcert"), ("ssl_key", "sslkey")):
        if params.get(ours):
            kw[theirs] = params[ours]
    return kw


def libpq_env(params, dbname=None, base=None):
    """Environment for libpq client programs: connection settings and the password.

    Starts from ``base`` (default: this process's environment) with any inherited PG*
    connection variable removed, so nothing but the module's options decides where the
    client connects.
    """
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith("PG") and key not in ("PGTZ",):
            del env[key]
    kw = libpq_params(params, dbname)
    mapping = dict(
        host="PGHOST",
        port="PGPORT",
        user="PGUSER",
        password="PGPASSWORD",  # noqa: S106
        sslmode="PGSSLMODE",
        sslrootcert="PGSSLROOTCERT",
        sslcert="PGSSLCERT",
        sslkey="PGSSLKEY",
        connect_timeout="PGCONNECT_TIMEOUT",
        application_name="PGAPPNAME",
        dbname="PGDATABASE",
    )
    for key, var in mapping.items():
        if kw.get(key) not in (None, ""):
            env[var] = str(kw[key])
    return env


def secrets_of(params):
    """The values that must never appear in output."""
    return [params.get("login_password") or ""]


class PostgresError(Exception):
    """A connection or query failed; the message is already free of secrets."""


def connect(params, dbname=None, autocommit=True):
    """Open a psycopg2 connection; raise PostgresError with a secret-free message."""
    if not HAS_PSYCOPG2:
        raise PostgresError(
            "the Python library psycopg2 is required on the managed host "
            "(pip install psycopg2-binary, or the python3-psycopg2 package): %s" % PSYCOPG2_IMPORT_ERROR
        )
    try:
        conn = psycopg2.connect(**libpq_params(params, dbname))
    except psycopg2.Error as exc:
        raise PostgresError(
            "cannot connect to PostgreSQL at %s as %s: %s"
            % (describe(params, dbname), params.get("login_user"), redact(str(exc).strip(), secrets_of(params)))
        ) from None
    conn.autocommit = autocommit
    return conn


def query(conn, sql, args=None):
    """Run a query and return its rows as dicts."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, args)
        if cur.description is None:
            return []
        return [dict(row) for row in cur.fetchall()]


def quote_ident(name):
    """Quote an SQL identifier (database, role, table name) for use in a statement."""
    return '"%s"' % str(name).replace('"', '""')


def conninfo_dbname(dbname):
    """A libpq connection string that names only ``dbname``, for client programs' ``-d``.

    A bare database name containing ``=`` or starting with ``postgres://`` would be read
    as a connection string by pg_restore/psql; quoting it as a conninfo value avoids that.
    The rest of the connection (host, user, password ...) still comes from the environment.
    """
    return "dbname='%s'" % str(dbname).replace("\\", "\\\\").replace("'", "\\'")


def server_version_num(conn):
    """The server's version as an integer (150010 for 15.10)."""
    return int(query(conn, "SHOW server_version_num")[0]["server_version_num"])


def quote_literal(value):
    """Quote a string as an SQL literal (E'' form: safe whatever standard_conforming_strings is)."""
    return "E'%s'" % str(value).replace("\\", "\\\\").replace("'", "''")
