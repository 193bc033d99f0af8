"""Real Redis servers for tests: a ``redis-server`` process on a free loopback port, and a local 3-primary
Redis Cluster, both in a directory of your choosing. Used by this plugin's own test fixtures and by the
project's chaos and fuzz suites; handy for testing an application against a real server too::

    from lssm_jobs_redis.testing import RedisServer

    server = RedisServer(tmp_path / "redis", extra=("--appendonly", "yes"))
    server.start()
    ...  # open_queue("redis", url=server.url, ...)
    server.restart(kill=True)  # SIGKILL, then start again on the same port and directory
    server.stop()

``SERVER_BINARY`` / ``CLI_BINARY`` are the ``redis-server`` / ``redis-cli`` programs found on ``PATH`` (or
named by ``LSSM_JOBS_REDIS_SERVER`` / ``LSSM_JOBS_REDIS_CLI``), None when missing: callers skip then.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

SERVER_BINARY = os.environ.get("LSSM_JOBS_REDIS_SERVER") or shutil.which("redis-server")
CLI_BINARY = os.environ.get("LSSM_JOBS_REDIS_CLI") or shutil.which("redis-cli")


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and, for cluster nodes, a free bus port at +10000)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not with_bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port found")


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


class RedisServer:
    """One redis-server process we own: start, stop (gracefully or with SIGKILL), restart on its port."""

    def __init__(self, directory: Path, *, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        assert SERVER_BINARY is not None
        self.directory = directory
        self.port = port or free_port(with_bus="yes" in extra)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.exceptions.BusyLoadingError:
            return False
        except redis.exceptions.ConnectionError:
            return False

    def start(self) -> None:
        assert SERVER_BINARY is not None
        command = [
            SERVER_BINARY,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
            "--protected-mode",
            "no",
            *self.extra,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._answers, timeout=20, what=f"redis-server on port {self.port}")
        except TimeoutError:
            self.stop(kill=True)
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}") from None

    def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


class RedisClusterNodes:
    """A local Redis Cluster of three primaries (no replicas)."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def cluster_ok(self) -> bool:
        for node in self.nodes:
            try:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO")
            except redis.exceptions.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(kill=True)


def start_cluster(
    root: Path, *, appendonly: bool = False, node_timeout_ms: int = 5000
) -> RedisClusterNodes:
    """Start three cluster-enabled servers under ``root`` and join them with ``redis-cli --cluster create``.

    :param appendonly: keep each node's data in an append-only file (fsync on every write), so a node can
        be killed and restarted without losing what it acknowledged.
    :raises RuntimeError: a binary is missing, or the cluster did not form (every node started is stopped).
    """
    if SERVER_BINARY is None or CLI_BINARY is None:
        raise RuntimeError("redis-server and redis-cli are needed to start a Redis Cluster")
    nodes: list[RedisServer] = []
    persistence = ("--appendonly", "yes", "--appendfsync", "always") if appendonly else ("--appendonly", "no")
    try:
        for index in range(3):
            directory = root / f"node{index}"
            node = RedisServer(
                directory,
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(directory / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    *persistence,
                ),
            )
            node.start()
            nodes.append(node)
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [CLI_BINARY, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        cluster = RedisClusterNodes(nodes)
        wait_for(cluster.cluster_ok, timeout=30, what="cluster_state:ok on every node")
    except BaseException:
        for node in nodes:
            node.stop(kill=True)
        raise
    return cluster
