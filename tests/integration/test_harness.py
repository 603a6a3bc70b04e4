"""The test servers behave like production ones: authentication and TLS are enforced."""

import ssl
import subprocess

import pytest


def test_postgres_requires_password(postgres):
    proc = postgres.psql("SELECT 1", password="wrong password", check=False)
    assert proc.returncode != 0
    assert "password authentication failed" in proc.stderr


def test_postgres_accepts_awkward_password_and_uses_scram(postgres):
    assert postgres.psql("SELECT 1") == "1"
    stored = postgres.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
    assert stored.startswith("SCRAM-SHA-256$")
    assert postgres.psql("SELECT current_user", db="app", user="app", password=postgres.app_password) == "app"


def test_postgres_tls_verifies_against_test_ca(postgres):
    env = postgres.env(PGSSLMODE="verify-full", PGSSLROOTCERT=postgres.ca_cert, PGHOST="localhost")
    proc = subprocess.run(
        [postgres.bindir + "/psql", "-X", "-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "t"


def test_redis_requires_auth(redis_server):
    import redis

    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=10)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    assert redis_server.client().ping() is True


def test_redis_acl_user_and_tls(redis_server):
    client = redis_server.client(
        port=redis_server.tls_port,
        username=redis_server.acl_user,
        password=redis_server.acl_password,
        ssl=True,
        ssl_ca_certs=redis_server.ca_cert,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    whoami = client.acl_whoami()
    assert (whoami.decode() if isinstance(whoami, bytes) else whoami) == "bosun_ops"
    client.set("harness:key", "value")
    assert redis_server.client().get("harness:key") == b"value"


def test_redis_unix_socket(redis_server):
    import redis

    client = redis.Redis(unix_socket_path=redis_server.socket, password=redis_server.password)
    assert client.ping() is True
