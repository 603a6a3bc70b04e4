"""Behaviour of a host converged with bosun.platform.postgresql (and its PgBouncer).

Clients connect from the test machine to the container's private address, as the app
servers would over the private network.
"""

import json
from contextlib import closing

import psycopg2
import pytest

APP = {"user": "app", "password": "app pass'with$quotes", "dbname": "appdb"}
REPORTING = {"user": "reporting", "password": "reporting-secret", "dbname": "appdb"}
CERT = "/etc/postgresql/15/main/server.crt"


def _address(host):
    return host.interface("eth0").addresses[0]


def _with(base, **over):
    """A copy of a login dict with some values replaced."""
    merged = dict(base)
    merged.update(over)
    return merged


def _connect(host, port=5432, sslmode="require", **kwargs):
    params = {"host": _address(host), "port": port, "sslmode": sslmode, "connect_timeout": 10}
    params.update(kwargs)
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def _query(conn, sql, *args):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def _psql(host, sql):
    """Run SQL as the postgres system user on the host (peer authentication)."""
    return host.check_output("runuser -u postgres -- psql -XAtq -d postgres -c %s", sql)


def _listeners(host, port):
    out = host.check_output("ss -ltnH 'sport = :%d'" % port)
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()}


@pytest.fixture(scope="module")
def root_cert(host, tmp_path_factory):
    path = tmp_path_factory.mktemp("pg") / "server.crt"
    path.write_text(host.file(CERT).content_string)
    return str(path)


def test_services_run_and_are_enabled(host):
    for name in ("postgresql@15-main", "pgbouncer"):
        service = host.service(name)
        assert service.is_running, name
        assert service.is_enabled, name


@pytest.mark.parametrize("port", [5432, 6432])
def test_listens_on_localhost_and_private_address_only(host, port):
    addresses = _listeners(host, port)
    assert _address(host) in addresses
    assert "127.0.0.1" in addresses
    assert addresses <= {"127.0.0.1", "::1", _address(host)}, addresses


def test_scram_login_over_verified_tls(host, root_cert):
    # verify-full: the generated certificate names the private address
    with closing(_connect(host, sslmode="verify-full", sslrootcert=root_cert, **APP)) as conn:
        assert _query(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
        assert _query(conn, "SELECT current_user") == [("app",)]
    secret = _psql(host, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    assert secret.startswith("SCRAM-SHA-256$")


def test_wrong_password_is_refused(host):
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _connect(host, **_with(APP, password="not the password"))


def test_connection_without_tls_is_refused(host):
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        _connect(host, sslmode="disable", **APP)


def test_hba_has_no_trust_or_md5_host_lines(host):
    rules = _psql(host, "SELECT type || ' ' || auth_method FROM pg_hba_file_rules WHERE error IS NULL")
    for rule in rules.splitlines():
        kind, method = rule.split()
        assert method in ("scram-sha-256", "peer", "reject"), rule
        if kind != "local":
            assert method in ("scram-sha-256", "reject"), rule
    assert _psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_settings_are_live(host):
    """The small profile's values are in force: shared_buffers needed the restart."""
    with closing(_connect(host, **APP)) as conn:
        settings = dict(
            _query(
                conn,
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                [
                    "shared_buffers",
                    "max_connections",
                    "log_min_duration_statement",
                    "password_encryption",
                    "ssl",
                    "data_checksums",
                ],
            )
        )
        assert _query(conn, "SELECT count(*) FROM pg_settings WHERE pending_restart") == [(0,)]
        assert _query(conn, "SELECT count(*) >= 0 FROM pg_stat_statements") == [(True,)]
    # only superusers see it
    assert _psql(host, "SHOW shared_preload_libraries") == "pg_stat_statements"
    assert settings == {
        "shared_buffers": "64MB",
        "max_connections": "50",
        "log_min_duration_statement": "500ms",
        "password_encryption": "scram-sha-256",
        "ssl": "on",
        "data_checksums": "on",
    }


def test_reporting_role_reads_but_cannot_write(host):
    with closing(_connect(host, **APP)) as app:
        _query(app, "CREATE TABLE IF NOT EXISTS orders (id int)")
        _query(app, "TRUNCATE orders")
        app.cursor().execute("INSERT INTO orders VALUES (1), (2)")
    with closing(_connect(host, **REPORTING)) as rep:
        # a table created after the converge is readable (default privileges)
        assert _query(rep, "SELECT count(*) FROM orders") == [(2,)]
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            rep.cursor().execute("INSERT INTO orders VALUES (3)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            rep.cursor().execute("CREATE TABLE sneaky (id int)")


def test_only_granted_roles_connect_to_the_app_database(host):
    _psql(host, "DROP ROLE IF EXISTS outsider")
    _psql(host, "CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
    try:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            _connect(host, user="outsider", password="outsider-pw", dbname="appdb")
    finally:
        _psql(host, "DROP ROLE outsider")


def test_pgbouncer_pools_in_transaction_mode(host):
    first = _connect(host, port=6432, **APP)
    second = _connect(host, port=6432, **APP)
    try:
        # Between transactions the server connection goes back to the pool: the second
        # client gets the one the first client just used.
        pid = _query(first, "SELECT pg_backend_pid()")[0][0]
        assert _query(second, "SELECT pg_backend_pid()")[0][0] == pid
        # Inside a transaction the first client holds it, and the second gets another.
        _query(first, "BEGIN")
        held = _query(first, "SELECT pg_backend_pid()")[0][0]
        assert _query(second, "SELECT pg_backend_pid()")[0][0] != held
        _query(first, "COMMIT")
    finally:
        first.close()
        second.close()
    with closing(_connect(host, port=6432, **_with(REPORTING, dbname="pgbouncer"))) as console:
        with console.cursor() as cur:
            cur.execute("SHOW POOLS")
            columns = [c.name for c in cur.description]
            pools = [dict(zip(columns, row)) for row in cur.fetchall()]
    modes = {p["database"]: p["pool_mode"] for p in pools if p["user"] == "app"}
    assert modes == {"appdb": "transaction"}


def test_pgbouncer_refuses_wrong_password_and_plain_connections(host):
    with pytest.raises(psycopg2.OperationalError, match="SASL authentication failed"):
        _connect(host, port=6432, **_with(APP, password="wrong"))
    with pytest.raises(psycopg2.OperationalError, match="SSL required"):
        _connect(host, port=6432, sslmode="disable", **APP)


def test_backup_directory_belongs_to_postgres(host):
    backups = host.file("/var/backups/postgresql")
    assert backups.is_directory
    assert backups.user == "postgres"
    assert backups.mode == 0o700


ARCHIVE = "/var/backups/postgresql/_pitr/wal"


def test_wal_segments_are_archived_by_bosun_wal(host):
    settings = _psql(
        host,
        "SELECT string_agg(name || '=' || setting, ';' ORDER BY name) FROM pg_settings "
        "WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout')",
    )
    assert "archive_mode=on" in settings and "archive_timeout=60" in settings
    assert "/usr/local/bin/bosun-wal push --archive %s --compress zstd %%p %%f" % ARCHIVE in settings
    _psql(
        host,
        "CREATE TABLE IF NOT EXISTS bosun_verify_wal (at timestamptz DEFAULT now()); "
        "INSERT INTO bosun_verify_wal DEFAULT VALUES",
    )
    segment = _psql(host, "SELECT pg_walfile_name(pg_switch_wal())").strip()
    stored = "%s/%s/%s.zst" % (ARCHIVE, segment[:16], segment)
    # The archiver runs at once after a switch; allow it a few retries.
    host.run("for i in $(seq 1 60); do test -f %s && break; sleep 0.5; done", stored)
    archived = host.file(stored)
    assert archived.exists and archived.user == "postgres" and archived.mode == 0o600
    checksum = host.file(stored + ".sha256").content_string.split()[0]
    assert checksum == host.check_output("sha256sum %s", stored).split()[0]
    failed = _psql(host, "SELECT failed_count FROM pg_stat_archiver").strip()
    assert failed == "0"
    # The tool fetches it back whole (as restore_command), and answers 1 for a missing file.
    out = host.run("runuser -u postgres -- bosun-wal fetch --archive %s %s /tmp/bosun-fetched", ARCHIVE, segment)
    assert out.rc == 0, out.stderr
    assert host.file("/tmp/bosun-fetched").size == 16 * 1024 * 1024
    missing = host.run("runuser -u postgres -- bosun-wal fetch --archive %s 0000000900000000000000FF /tmp/x", ARCHIVE)
    assert missing.rc == 1 and missing.stderr == ""
    host.run("rm -f /tmp/bosun-fetched")


@pytest.mark.parametrize("program", ["zstd", "lz4"])
def test_compressors_are_installed(host, program):
    """Installed on every db host (the role's package list), not for WAL archiving alone."""
    assert host.exists(program), program
    assert host.run("%s --version", program).rc == 0


DUMPS = "/var/lib/postgresql/bosun-verify-dumps"


def test_a_dump_with_default_compression_is_a_zstd_stream(host):
    """postgresql_dump's compression: auto takes the zstd stream with PostgreSQL 15's pg_dump."""
    host.run("rm -rf %s", DUMPS)
    try:
        result = host.ansible(
            "bosun.platform.postgresql_dump",
            json.dumps({"db": "appdb", "backup_dir": DUMPS, "login_unix_socket": "/var/run/postgresql"}),
            check=False,
            become=True,
            become_user="postgres",
        )
        assert result["compression"]["method"] == "zstd" and result["compression"]["via"] == "stream", result
        (backup,) = result["backups"]
        assert backup["verified"] and backup["path"].endswith(".dump.zst"), backup
        magic = host.check_output("head -c 4 %s | od -An -tx1", backup["path"]).split()
        assert magic == ["28", "b5", "2f", "fd"], magic  # the zstd frame magic
        assert host.run("zstd -tq %s", backup["path"]).rc == 0
    finally:
        host.run("rm -rf %s", DUMPS)


def test_postgres_exporter_reads_the_server_as_its_pg_monitor_login(host):
    """bosun.platform.exporters (postgres): up on the private address, password in its env file only."""
    import http.client

    conn = http.client.HTTPConnection(_address(host), 9187, timeout=15)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    assert "\npg_up 1" in metrics, metrics[:2000]
    assert "pg_stat_database_xact_commit" in metrics
    # the collection's extra queries, which two alert rules read: a primary lags 0 s
    lag = [line for line in metrics.splitlines() if line.startswith("pg_replication_lag{")]
    assert lag and float(lag[0].split()[-1]) == 0, lag
    wal = [line for line in metrics.splitlines() if line.startswith("pg_wal_size_bytes{")]
    assert wal and float(wal[0].split()[-1]) > 0, wal
    env = host.file("/etc/default/prometheus-postgres-exporter")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    argv = host.check_output("cat /proc/$(pidof prometheus-postgres-exporter)/cmdline | tr '\\0' ' '")
    assert "pass" not in argv and "DATA_SOURCE" not in argv, argv
    assert host.check_output("ps -o user= -p $(pidof prometheus-postgres-exporter)").strip() == "prometheus"
