"""Fixtures of the Redis plugin's tests: a real ``redis-server`` and a real 3-primary Redis Cluster, each
on free loopback ports in a temporary directory, started once per test session (the servers themselves
come from :mod:`lssm_jobs_redis.testing`, shared with the project's chaos and fuzz suites).

Tests that need them are skipped, saying why, when the ``redis-server`` / ``redis-cli`` binaries are
missing (CI installs them; set ``LSSM_JOBS_REDIS_SERVER`` / ``LSSM_JOBS_REDIS_CLI`` to use others).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from lssm_jobs.backends.base import QueueBackend
from lssm_jobs_redis import RedisBackend
from lssm_jobs_redis.testing import (
    CLI_BINARY,
    SERVER_BINARY,
    RedisClusterNodes,
    RedisServer,
    free_port,
    start_cluster,
    wait_for,
)


def _require_server() -> None:
    if SERVER_BINARY is None:
        pytest.skip("redis-server binary not found (install redis-server, or set LSSM_JOBS_REDIS_SERVER)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for the whole session; tests isolate themselves with their own key prefix."""
    _require_server()
    server = RedisServer(tmp_path_factory.mktemp("redis-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, with the append-only file on (it may be stopped and restarted)."""
    _require_server()
    server = RedisServer(tmp_path / "redis", extra=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def small_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone that refuses writes when full (``maxmemory-policy noeviction``;
    the test sets ``maxmemory``)."""
    _require_server()
    server = RedisServer(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction"))
    server.start()
    yield server
    server.stop(kill=True)


def _tls_files(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not found (needed to make certificates for the TLS test server)")
    files = {name: directory / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lssm-jobs test CA",
        "-keyout",
        str(files["ca-key"]),
        "-out",
        str(files["ca"]),
    )
    request = directory / "server.csr"
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(files["server-key"]),
        "-out",
        str(request),
    )
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(files["ca"]),
        "-CAkey",
        str(files["ca-key"]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(files["server"]),
    )
    return files


class TlsRedisServer(RedisServer):
    """A redis-server speaking only TLS, with an ACL user ``app`` (password ``app-secret``)."""

    def __init__(self, directory: Path) -> None:
        self.files = _tls_files(directory)
        port = free_port()
        super().__init__(
            directory,
            port=port,
            extra=(
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(self.files["server"]),
                "--tls-key-file",
                str(self.files["server-key"]),
                "--tls-ca-cert-file",
                str(self.files["ca"]),
                "--tls-auth-clients",
                "no",
                "--user",
                "app",
                "on",
                ">app-secret",
                "~*",
                "&*",
                "+@all",
            ),
        )

    @property
    def url(self) -> str:
        ca = self.files["ca"]
        return f"rediss://app:app-secret@127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            ssl=True,
            ssl_ca_certs=str(self.files["ca"]),
            username="app",
            password="app-secret",
            socket_timeout=5,
        )


@pytest.fixture(scope="session")
def tls_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A TLS-only redis-server with an ACL user (skipped when this redis-server was built without TLS)."""
    _require_server()
    server = TlsRedisServer(tmp_path_factory.mktemp("redis-tls"))
    try:
        server.start()
    except RuntimeError as error:
        if "tls" in str(error).lower() or "TLS" in str(error):
            pytest.skip(f"this redis-server cannot serve TLS: {str(error).splitlines()[-1]}")
        raise
    yield server
    server.stop()


class SentinelSetup:
    """A primary and one Sentinel monitoring it as ``mymaster``."""

    def __init__(self, primary: RedisServer, sentinel_port: int) -> None:
        self.primary = primary
        self.sentinel_port = sentinel_port

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/mymaster/0"


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A redis-server primary and a Sentinel (``redis-server --sentinel``) that names it ``mymaster``."""
    _require_server()
    assert SERVER_BINARY is not None
    root = tmp_path_factory.mktemp("redis-sentinel")
    primary = RedisServer(root / "primary")
    primary.start()
    port = free_port()
    config = root / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {root}\nlogfile {root / 'sentinel.log'}\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    process = subprocess.Popen(
        [SERVER_BINARY, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def knows_primary() -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as sentinel:
                address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        except redis.exceptions.RedisError:
            return False
        return bool(address) and int(address[1]) == primary.port

    try:
        wait_for(knows_primary, timeout=20, what="the Sentinel naming the primary")
        yield SentinelSetup(primary, port)
    finally:
        process.terminate()
        process.wait(10)
        primary.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A 3-primary Redis Cluster on loopback ports, created with ``redis-cli --cluster create``."""
    _require_server()
    if CLI_BINARY is None:
        pytest.skip("redis-cli binary not found (needed to create the test Redis Cluster)")
    root = tmp_path_factory.mktemp("redis-cluster")
    cluster = start_cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()


def _unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def unique_prefix() -> Callable[[], str]:
    """Makes key prefixes no other test uses (tests share the session's servers)."""
    return _unique_prefix


@pytest.fixture
def redis_backend_factory(redis_server: RedisServer) -> Callable[..., RedisBackend]:
    """Makes unopened backends on the session server, all with this test's own prefix by default."""
    prefix = _unique_prefix()

    def make(**options: object) -> RedisBackend:
        settings: dict[str, object] = {"url": redis_server.url, "prefix": prefix}
        settings.update(options)
        return RedisBackend(**settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def lssm_jobs_backend_factory(
    redis_backend_factory: Callable[..., RedisBackend],
) -> Callable[[], QueueBackend]:
    return lambda: redis_backend_factory()
