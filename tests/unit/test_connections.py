"""Shared connection options: libpq parameters/environment and redis-py arguments."""

from ansible_collections.bosun.platform.plugins.module_utils import _postgres, _redis


def _pg_params(**over):
    params = {k: v.get("default") for k, v in _postgres.POSTGRES_COMMON_ARGS.items()}
    params.update(over)
    return params


def test_libpq_env_carries_password_only_in_env_and_drops_inherited():
    params = _pg_params(login_host="db1", login_password="s3 'cr$t", ca_cert="/ca.pem", ssl_mode="verify-full")
    env = _postgres.libpq_env(params, "app", base={"PGHOST": "elsewhere", "PGPASSFILE": "/x", "PATH": "/bin"})
    assert env["PGHOST"] == "db1"
    assert env["PGPASSWORD"] == "s3 'cr$t"
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/ca.pem"
    assert env["PGDATABASE"] == "app"
    assert "PGPASSFILE" not in env
    assert env["PATH"] == "/bin"


def test_unix_socket_wins_and_describe_has_no_secret():
    params = _pg_params(login_host="db1", login_unix_socket="/run/postgresql", login_password="hunter2")
    assert _postgres.libpq_params(params)["host"] == "/run/postgresql"
    assert "hunter2" not in _postgres.describe(params, "app")


def test_argument_specs_mark_passwords_no_log():
    assert _postgres.postgres_argument_spec()["login_password"]["no_log"] is True
    assert _redis.redis_argument_spec()["login_password"]["no_log"] is True


def test_redis_client_kwargs_tls():
    params = {k: v.get("default") for k, v in _redis.REDIS_COMMON_ARGS.items()}
    params.update(tls=True, ca_cert="/ca.pem", login_user="ops", login_password="pw")
    kw = _redis.client_kwargs(params)
    assert kw["ssl"] is True and kw["ssl_ca_certs"] == "/ca.pem"
    assert kw["username"] == "ops"


def test_redis_connect_error_is_redacted():
    params = {k: v.get("default") for k, v in _redis.REDIS_COMMON_ARGS.items()}
    params.update(login_port=1, login_password="very-secret", connect_timeout=1)
    try:
        _redis.connect(params)
    except _redis.RedisError as exc:
        assert "very-secret" not in str(exc)
        assert "127.0.0.1:1" in str(exc)
    else:
        raise AssertionError("connect to port 1 succeeded")
