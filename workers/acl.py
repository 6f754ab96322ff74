"""Redis ACL rules for posestream's three roles: the worker, a producer and a subscriber (docs/SECURITY.md).

Each role gets the commands it sends and nothing else (``-@all`` first), and the keys it touches:
exact key names per shard (a glob such as ``posestream:*:frames`` would also match a camera's tracker
state key ``posestream:track:<camera id>`` for a camera id ending in ``:frames``), plus the prefixes
whose suffix is not known in advance, the worker's only: ``…:track:<camera>``, ``…:preview:<camera>``
and the Serve consumers' registry ``<prefix>:consumers:<app>``. Redis checks a script's commands
against the caller's ACL too, so the worker's list holds what the fenced Lua scripts call (XADD, SET,
DEL, XDEL, HDEL).

Print the lines for a deployment (its POSESTREAM_* settings decide prefix, shards and cluster)::

    python -m workers.acl worker --user posestream-worker --password-file /run/secrets/worker
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path
from typing import Literal

from schemas.settings import Settings
from schemas.streams import StreamKeys

Role = Literal["worker", "producer", "subscriber"]
ROLES: tuple[Role, ...] = ("worker", "producer", "subscriber")

# Connection housekeeping every client sends: PING (health checks). AUTH and HELLO need no grant.
_COMMON = ("ping",)
# workers.streams: lease.py, reader.py, shard.py, tracks.py, writer.py (and its Lua), consumer.py;
# workers.serve.balance (the consumers registry). redis-py's INCR sends INCRBY.
_WORKER_KEYS = ("get", "set", "exists", "incrby", "del", "pexpire", "hincrby", "hdel")
_WORKER_STREAMS = ("xgroup|create", "xinfo|groups", "xreadgroup", "xautoclaim", "xclaim", "xpending")
_WORKER_ENTRIES = ("xrange", "xrevrange", "xlen", "xack", "xdel", "xadd")
_WORKER_SCRIPTS = ("evalsha", "script|load", "time")  # fenced scripts: loaded once, called by sha
_WORKER_REGISTRY = ("zadd", "zremrangebyscore", "zcard", "zrem")  # Serve's consumers registry
COMMANDS: dict[Role, tuple[str, ...]] = {
    "worker": _COMMON + _WORKER_KEYS + _WORKER_STREAMS + _WORKER_ENTRIES + _WORKER_SCRIPTS + _WORKER_REGISTRY,
    # workers.client.publisher: the backlog (XLEN) and the XADD.
    "producer": _COMMON + ("xlen", "xadd"),
    # workers.client.subscriber: position mode (XINFO STREAM, XREAD) and group mode (XGROUP CREATE
    # MKSTREAM, XREADGROUP, XACK, XAUTOCLAIM). XREADGROUP and XACK write the group's state, not the stream.
    "subscriber": _COMMON + ("xinfo|stream", "xread", "xgroup|create", "xreadgroup", "xack", "xautoclaim"),
}
# On a Redis Cluster the clients also read the slot map.
CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "cluster|nodes", "readonly")
PREFIX_FIELDS = ("tracks", "previews")  # StreamKeys fields that prefix per-camera keys
SUBSCRIBER_KINDS = ("events", "results", "changes")  # dead letters hold raw frame bytes: ask for them


def role_keys(role: Role, settings: Settings, *, dead: bool = False) -> list[str]:
    """The ACL key patterns (without ``~``) of ``role``: exact names, ``*`` only after a known prefix.
    ``dead``: the subscriber may read the dead letters too (they keep the first bytes of each frame)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    keys: list[str] = []
    for shard in settings.all_shard_keys():
        if role == "producer":
            keys.append(shard.frames)
        elif role == "subscriber":
            keys += [getattr(shard, kind) for kind in SUBSCRIBER_KINDS + (("dead",) if dead else ())]
        else:
            for field in fields(StreamKeys):
                value = getattr(shard, field.name)
                keys.append(value)  # a prefix too: the writer names it as the script's unused state key
                if field.name in PREFIX_FIELDS:
                    keys.append(f"{value}:*")
    if role == "worker":
        keys.append(f"{settings.stream_prefix}:consumers:*")
    return keys


def role_rules(
    role: Role, settings: Settings, *, password: str | None = None, dead: bool = False
) -> list[str]:
    """The ACL rules of ``role`` (what follows ``user <name>`` in an ACL file or ``ACL SETUSER <name>``).
    The password goes in as its SHA-256 (``#…``), so the ACL file never holds it in the clear."""
    rules = ["reset", "on"]
    if password is not None:
        rules.append("#" + hashlib.sha256(password.encode()).hexdigest())
    rules.append("resetchannels")  # no pub/sub: posestream uses none (Redis 6.2 allows all by default)
    rules += [f"~{key}" for key in role_keys(role, settings, dead=dead)]
    rules.append("-@all")
    commands = COMMANDS[role] + (CLUSTER_COMMANDS if settings.redis_cluster else ())
    rules += [f"+{command}" for command in commands]
    return rules


def acl_line(
    role: Role, user: str, settings: Settings, *, password: str | None = None, dead: bool = False
) -> str:
    """One ``user …`` line for an ACL file (``aclfile``) or redis.conf."""
    if not user or any(ch.isspace() for ch in user):
        raise ValueError(f"a Redis user name must be non-empty without spaces, got {user!r}")
    return " ".join(["user", user, *role_rules(role, settings, password=password, dead=dead)])


def main() -> None:
    import typer

    def command(
        role: str = typer.Argument(..., help="worker, producer or subscriber"),
        user: str = typer.Option(..., "--user", help="The Redis user name."),
        password_file: Path | None = typer.Option(
            None, "--password-file", help="A file holding its password."
        ),
        dead: bool = typer.Option(False, "--dead", help="Subscriber: may read the dead letters too."),
    ) -> None:
        """Print the ACL file line of one role for the settings in the environment (POSESTREAM_*)."""
        if role not in ROLES:
            raise typer.BadParameter(f"must be one of {ROLES}", param_hint="ROLE")
        password = password_file.read_text().strip() if password_file else None
        typer.echo(acl_line(role, user, Settings(), password=password, dead=dead))  # type: ignore[arg-type]

    typer.run(command)


if __name__ == "__main__":
    main()
