"""Real servers for the integration tests, once per test session.

Tests take connection details from these fixtures and never from fixed ports. Each server
is stopped and its directory removed when the session ends, whether the tests passed,
failed or were interrupted.
"""

import pytest

from tests.support.modules import run_module as _run_module
from tests.support.servers import PostgresServer, RedisServer, TestCA


@pytest.fixture(scope="session")
def test_ca():
    with TestCA() as ca:
        yield ca


@pytest.fixture(scope="session")
def postgres(test_ca):
    """A running PostgreSQL (scram passwords, TLS) on a free loopback port."""
    with PostgresServer(test_ca) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(test_ca):
    """A running Redis (password, ACL user, TLS port, unix socket) on free loopback ports."""
    with RedisServer(test_ca) as server:
        yield server


@pytest.fixture(scope="session")
def elasticsearch(test_ca):
    """A running Elasticsearch node (TLS, keystore bootstrap password, file-realm monitor
    user) on free loopback ports. Shared by the session: a test that changes the cluster
    (indices, settings) undoes it."""
    from tests.support.elasticsearch import ElasticsearchServer

    with ElasticsearchServer(test_ca) as server:
        yield server


@pytest.fixture
def run_module():
    """Run a bosun.platform module in a subprocess, as Ansible does on a host."""
    return _run_module


@pytest.fixture(scope="session")
def silent_server():
    """A TCP port that accepts connections and never answers (a hung service)."""
    from tests.support.nginx import SilentServer

    with SilentServer() as server:
        yield server


@pytest.fixture(scope="session")
def nginx(test_ca, silent_server):
    """A running nginx (HTTP, HTTPS with good/expired/self-signed certificates) on loopback."""
    from tests.support.nginx import NginxServer

    with NginxServer(test_ca, silent_port=silent_server.port) as server:
        yield server
