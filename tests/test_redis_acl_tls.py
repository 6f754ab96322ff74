"""Redis with a password, ACL users per role and TLS (docs/SECURITY.md), on Debian's redis-server 7.0.

One server per module with the ACL lines of ``workers.acl`` for the worker, a producer and a subscriber,
a password on the default user, a plain port and a TLS port (CA, server and client certificates made
here). Each role does its job through the real code (FramePublisher and ``posestream publish``,
StreamConsumer and ``posestream worker``, EventSubscriber and ``posestream events``) and is refused the
rest; the commands run with passwords in their URLs and no password shows up in anything they print.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fnmatch
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
from stream_helpers import (
    DEBIAN_REDIS,
    FakePipeline,
    consumer_settings,
    frame_payload,
    image_bytes,
    publish,
    run_scenario,
    run_until_finished,
    skip_unless_available,
)

from schemas.settings import Settings
from schemas.streams import StreamKeys, shard_for
from schemas.wire import STREAM_FIELD, FrameResult
from workers.acl import ROLES, acl_line, role_keys
from workers.client import EventSubscriber, FramePublisher, connect
from workers.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[1]
PREFIX = "acl"
SHARDS = 2
HOST = "127.0.0.1"


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        skip_unless_available("the cryptography package is needed to make test certificates")

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("posestream test CA"))
        .issuer_name(name("posestream test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {"ca": folder / "ca.crt"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(f"posestream test {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if role == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
        paths[role] = folder / f"{role}.crt"
        paths[role].write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        paths[f"{role}_key"] = folder / f"{role}.key"
        write_key(key, paths[f"{role}_key"])
    return paths


@dataclass
class SecureRedis:
    server: RedisServer
    tls_port: int
    certs: dict[str, Path]
    passwords: dict[str, str]  # role (and "admin", the default user) → password
    settings: Settings  # prefix and shards the ACL users were made for

    def url(self, role: str, *, tls: bool = False, query: str = "") -> str:
        scheme, port = ("rediss", self.tls_port) if tls else ("redis", self.server.port)
        return f"{scheme}://{role}:{self.passwords[role]}@{HOST}:{port}/0{query}"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.server.port, username=role, password=self.passwords[role])

    def admin(self) -> redis.Redis:
        return self.server.client()

    def secrets(self) -> list[str]:
        return list(self.passwords.values())


def start_secure_redis(root: Path, tls_auth_clients: str = "optional") -> tuple[RedisServer, SecureRedis]:
    if not DEBIAN_REDIS.is_file():
        skip_unless_available("Debian's redis-server (7.0, built with TLS) is not installed")
    certs = make_certificates(root)
    settings = Settings(stream_prefix=PREFIX, shards=SHARDS)
    # Distinct per role and per run, so that a leak names its source.
    passwords = {role: f"{role}-secret-{uuid.uuid4().hex[:10]}" for role in (*ROLES, "admin")}
    tls_port = free_port()
    config = [acl_line(role, role, settings, password=passwords[role]) for role in ROLES]
    config += [
        f"tls-port {tls_port}",
        f'tls-cert-file "{certs["server"]}"',
        f'tls-key-file "{certs["server_key"]}"',
        f'tls-ca-cert-file "{certs["ca"]}"',
        f"tls-auth-clients {tls_auth_clients}",
    ]
    # The plain port stays (loopback) for the test's own admin client, which knows the default password.
    server = RedisServer(
        root / "redis", executable=DEBIAN_REDIS, password=passwords["admin"], extra_config=config
    )
    server.start()
    return server, SecureRedis(server, tls_port, certs, passwords, settings)


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    server, secure = start_secure_redis(tmp_path_factory.mktemp("secure-redis"))
    try:
        yield secure
    finally:
        server.stop()


@pytest.fixture
def fresh(secure: SecureRedis) -> SecureRedis:
    admin = secure.admin()
    admin.flushall()
    admin.script_flush()
    admin.acl_log_reset()  # each test reads the refusals it caused
    admin.close()
    return secure


def worker_settings(secure: SecureRedis, url: str, **overrides) -> Settings:
    return consumer_settings(url, stream_prefix=PREFIX, shards=SHARDS, **overrides)


def cameras() -> list[str]:
    """Two cameras on different shards (so both shards' keys are exercised)."""
    found: dict[int, str] = {}
    for index in range(100):
        found.setdefault(shard_for(f"door-{index}", SHARDS), f"door-{index}")
    return [found[0], found[1]]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        cwd=REPO,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_for(seconds: float, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """A command that retries on its own (an unreachable Redis): its output after ``seconds`` and a SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        cwd=REPO,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
    return stdout, stderr


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSESTREAM_", "RAY_ADDRESS"))}
    env.update(POSESTREAM_STREAM_PREFIX=PREFIX, POSESTREAM_SHARDS=str(SHARDS), POSESTREAM_LOG_LEVEL="DEBUG")
    env.update(extra or {})
    return env


def assert_no_secret(text: str, secure: SecureRedis, where: str) -> None:
    for secret in secure.secrets():
        assert secret not in text, f"a password reached {where}:\n{text[-3000:]}"


# ------------------------------------------------------------------------------------------ the ACL lines


def test_the_worker_keys_cover_every_key_streamkeys_can_name() -> None:
    """A per-camera key added to StreamKeys without its ACL pattern would be refused to the worker."""
    settings = Settings(stream_prefix=PREFIX, shards=SHARDS)
    patterns = role_keys("worker", settings)
    for keys in settings.all_shard_keys():
        # The prefixes are keys too: EVALSHA declares the bare tracks prefix when a frame has no camera.
        named = [getattr(keys, name) for name in StreamKeys.__dataclass_fields__]
        named += [getattr(keys, name)("cam:x") for name in dir(keys) if _per_camera_method(keys, name)]
        for key in named:
            assert any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns), key
    # A camera id cannot widen the producer's or subscriber's reach: no pattern has a wildcard.
    for role in ("producer", "subscriber"):
        assert not any(set(p) & set("*?[") for p in role_keys(role, settings, dead=True))


def _per_camera_method(keys: StreamKeys, name: str) -> bool:
    if name.startswith("_") or name in StreamKeys.__dataclass_fields__ or name == "for_shard":
        return False
    return callable(getattr(keys, name))


# ------------------------------------------------------------------------------------ each role's job


def test_the_producer_publishes_through_the_publisher_and_the_cli(fresh: SecureRedis, tmp_path: Path) -> None:
    admin = fresh.admin()
    settings = fresh.settings
    camera_a, camera_b = cameras()
    with FramePublisher(fresh.url("producer"), settings=settings) as publisher:
        for frame_id in range(3):
            assert publisher.publish(image_bytes(seed=frame_id), camera_a, frame_id=frame_id).published
        assert publisher.total_backlog() == 3  # XLEN on every shard
    image = tmp_path / "door.png"
    image.write_bytes(image_bytes(seed=9))
    done = cli(
        "publish", str(image), "--camera-id", camera_b, env={"POSESTREAM_REDIS_URL": fresh.url("producer")}
    )
    assert done.returncode == 0, done.stderr
    assert_no_secret(done.stdout + done.stderr, fresh, "posestream publish")
    assert admin.xlen(settings.shard_keys(0).frames) + admin.xlen(settings.shard_keys(1).frames) == 4
    assert admin.xlen(settings.shard_keys(shard_for(camera_b, SHARDS)).frames) >= 1
    admin.close()


def test_the_worker_consumes_publishes_and_fences_with_its_user(fresh: SecureRedis) -> None:
    admin = fresh.admin()
    settings = worker_settings(fresh, fresh.url("worker"))
    camera_a, camera_b = cameras()
    for frame_id in range(3):
        publish(admin, settings, camera_a, frame_payload(camera_a, frame_id, image_bytes(seed=frame_id)))
    publish(admin, settings, camera_b, frame_payload(camera_b, 0))
    publish(admin, settings, camera_b, b"\x93not a frame")  # dead-lettered with its reason

    async def scenario() -> dict:
        from workers.streams import StreamConsumer
        from workers.streams import connect as connect_async

        client = connect_async(settings.redis_url, settings)
        try:
            consumer = StreamConsumer(client, FakePipeline(), settings, name="acl-worker")
            await run_until_finished(consumer, admin, settings, expected=5, timeout_s=60)
            return consumer.stats()
        finally:
            await client.aclose()

    stats = run_scenario(scenario(), timeout_s=120)
    assert stats["redis_errors"] == 0, stats
    keys_a, keys_b = (settings.shard_keys(shard_for(c, SHARDS)) for c in (camera_a, camera_b))
    assert admin.xlen(keys_a.results) == 3 and admin.xlen(keys_b.results) == 1
    assert admin.xlen(keys_a.events) == 3  # FakePipeline: one person per frame
    assert admin.xlen(keys_b.dead) == 1
    assert admin.xlen(keys_a.frames) == 0 and admin.xlen(keys_b.frames) == 0  # acknowledged and deleted
    assert admin.exists(keys_a.track_state(camera_a))  # the fenced script wrote the tracker state
    assert int(admin.get(keys_a.epoch)) >= 1  # leases were minted (INCR) and released (DEL in Lua)
    assert not admin.exists(keys_a.owner)
    failures = [e for e in admin.acl_log() if e.get("username") == "worker"]
    assert failures == [], failures  # nothing the worker sent was refused
    admin.close()


def test_the_subscriber_reads_events_by_position_by_group_and_through_the_cli(fresh: SecureRedis) -> None:
    admin = fresh.admin()
    settings = fresh.settings
    camera_a, _ = cameras()
    keys = settings.shard_keys(shard_for(camera_a, SHARDS))
    from schemas.examples import examples

    sample = examples()
    event = sample["person_event"].model_copy(update={"camera_id": camera_a})
    result = sample["frame_result"].model_copy(update={"camera_id": camera_a})
    admin.xadd(keys.events, {STREAM_FIELD: event.to_bytes()})
    admin.xadd(keys.results, {STREAM_FIELD: result.to_bytes()})

    with EventSubscriber(fresh.url("subscriber"), settings=settings, start="0") as by_position:
        got = list(by_position.messages(follow=False))
    assert sorted(type(m).__name__ for m in got) == ["FrameResult", "PersonEvent"]
    with EventSubscriber(fresh.url("subscriber"), settings=settings, start="0", group="dash") as by_group:
        got = list(by_group.messages(follow=True, idle_timeout_s=1.0))
    assert len(got) == 2
    assert admin.xpending(keys.events, "dash")["pending"] == 0  # acknowledged with XACK

    done = cli("events", "--json", "--results", env={"POSESTREAM_REDIS_URL": fresh.url("subscriber")})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["camera_id"] for line in lines} == {camera_a} and len(lines) == 2
    assert_no_secret(done.stdout + done.stderr, fresh, "posestream events")
    admin.close()


# -------------------------------------------------------------------------------- and nothing else

OWNER_EPOCH = [("get", "owner"), ("set", "owner"), ("del", "owner"), ("pexpire", "owner"), ("incr", "epoch")]


def _attempt(client: redis.Redis, keys: StreamKeys, action: str) -> None:
    frames_group = "posestream"
    calls = {
        "get owner": lambda: client.get(keys.owner),
        "set owner": lambda: client.set(keys.owner, "forged-token", px=60_000),
        "del owner": lambda: client.delete(keys.owner),
        "pexpire owner": lambda: client.pexpire(keys.owner, 60_000),
        "get epoch": lambda: client.get(keys.epoch),
        "incr epoch": lambda: client.incr(keys.epoch),
        "xadd frames": lambda: client.xadd(keys.frames, {STREAM_FIELD: b"forged"}),
        "xadd events": lambda: client.xadd(keys.events, {STREAM_FIELD: b"forged"}),
        "xadd results": lambda: client.xadd(keys.results, {STREAM_FIELD: b"forged"}),
        "xread events": lambda: client.xread({keys.events: "0"}),
        "xread frames": lambda: client.xread({keys.frames: "0"}),
        "xread dead": lambda: client.xread({keys.dead: "0"}),
        "xreadgroup frames": lambda: client.xreadgroup(frames_group, "thief", {keys.frames: ">"}),
        "xrange frames": lambda: client.xrange(keys.frames),
        "xdel frames": lambda: client.xdel(keys.frames, "0-1"),
        "get tracker state": lambda: client.get(keys.track_state("door-0")),
        "set preview": lambda: client.set(keys.preview("door-0"), b"forged"),
        "hincrby strikes": lambda: client.hincrby(keys.strikes, "0-1", 1),
        "eval": lambda: client.eval("return redis.call('GET', KEYS[1])", 1, keys.owner),
        "xadd outside the prefix": lambda: client.xadd("other:frames", {STREAM_FIELD: b"x"}),
        "keys": lambda: client.keys("*"),
        "flushall": lambda: client.flushall(),
        "config get": lambda: client.config_get("requirepass"),
        "acl list": lambda: client.acl_list(),
        "publish": lambda: client.publish("channel", "x"),
    }
    calls[action]()


REFUSED = {
    "producer": [
        "get owner", "set owner", "del owner", "pexpire owner", "get epoch", "incr epoch",
        "xadd events", "xadd results", "xread events", "xread frames", "xreadgroup frames", "xrange frames",
        "xdel frames", "get tracker state", "set preview", "hincrby strikes", "eval",
        "xadd outside the prefix", "keys", "flushall", "config get", "acl list", "publish",
    ],
    "subscriber": [
        "get owner", "set owner", "del owner", "pexpire owner", "get epoch", "incr epoch",
        "xadd frames", "xadd events", "xadd results", "xread frames", "xread dead", "xreadgroup frames",
        "xrange frames", "xdel frames", "get tracker state", "set preview", "hincrby strikes", "eval",
        "xadd outside the prefix", "keys", "flushall", "config get", "acl list", "publish",
    ],
    "worker": ["eval", "xadd outside the prefix", "keys", "flushall", "config get", "acl list", "publish"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("role", "action"), [(role, action) for role, actions in REFUSED.items() for action in actions]
)
def test_each_role_is_refused_what_is_not_its_job(fresh: SecureRedis, role: str, action: str) -> None:
    client = fresh.client(role)
    try:
        for shard in range(SHARDS):
            with pytest.raises(redis.exceptions.NoPermissionError):
                _attempt(client, fresh.settings.shard_keys(shard), action)
    finally:
        client.close()
    admin = fresh.admin()
    assert admin.get(fresh.settings.shard_keys(0).owner) is None  # nothing forged got through
    admin.close()


def test_the_clients_of_the_wrong_role_fail_loudly(fresh: SecureRedis) -> None:
    """The real client code with another role's user: refused at once, not retried."""
    camera_a, _ = cameras()
    refused = pytest.raises(redis.exceptions.NoPermissionError)
    with FramePublisher(fresh.url("subscriber"), settings=fresh.settings) as publisher, refused:
        publisher.publish(image_bytes(), camera_a, frame_id=1)
    refused = pytest.raises(redis.exceptions.NoPermissionError)
    with EventSubscriber(fresh.url("producer"), settings=fresh.settings, start="0") as subscriber, refused:
        list(subscriber.messages(follow=False))
    wrong = f"redis://subscriber:not-the-password@{HOST}:{fresh.server.port}/0"
    # A wrong password ends the loop instead of reconnecting forever.
    with (
        EventSubscriber(wrong, settings=fresh.settings) as subscriber,
        pytest.raises(redis.AuthenticationError),
    ):
        list(subscriber.messages(follow=False))


# ------------------------------------------------------------------------------------------------ TLS


def test_tls_is_required_and_verified(fresh: SecureRedis) -> None:
    settings = fresh.settings
    plain_to_tls = f"redis://producer:{fresh.passwords['producer']}@{HOST}:{fresh.tls_port}/0"
    with pytest.raises(redis.ConnectionError):
        connect(plain_to_tls, retries=0, socket_timeout=2).ping()
    with pytest.raises(redis.ConnectionError, match="(?i)certificate"):  # no CA: the server is not trusted
        connect(fresh.url("producer", tls=True), retries=0, socket_timeout=2).ping()
    query = f"?ssl_ca_certs={fresh.certs['ca']}"
    assert connect(fresh.url("producer", tls=True, query=query), retries=0).ping()
    ca_settings = Settings(stream_prefix=PREFIX, shards=SHARDS, redis_ca_file=fresh.certs["ca"])
    assert connect(fresh.url("producer", tls=True), retries=0, settings=ca_settings).ping()
    with pytest.raises(ValueError, match="rediss://"):  # TLS asked for, a plain URL given: refused
        connect(fresh.url("producer"), settings=ca_settings)
    with FramePublisher(fresh.url("producer", tls=True, query=query), settings=settings) as publisher:
        assert publisher.publish(image_bytes(), cameras()[0], frame_id=1).published


def test_the_async_client_speaks_tls_with_the_settings_ca(fresh: SecureRedis) -> None:
    from workers.streams import connect as connect_async

    settings = worker_settings(fresh, fresh.url("worker", tls=True), redis_ca_file=fresh.certs["ca"])

    async def ping() -> bool:
        client = connect_async(settings.redis_url, settings)
        try:
            return await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(ping())


def test_client_certificates_when_the_server_requires_them(tmp_path: Path) -> None:
    server, secure = start_secure_redis(tmp_path, tls_auth_clients="yes")
    try:
        ca_only = Settings(redis_ca_file=secure.certs["ca"])
        with pytest.raises(redis.ConnectionError):
            connect(secure.url("producer", tls=True), retries=0, socket_timeout=2, settings=ca_only).ping()
        with_cert = Settings(
            redis_ca_file=secure.certs["ca"],
            redis_cert_file=secure.certs["client"],
            redis_key_file=secure.certs["client_key"],
        )
        assert connect(secure.url("producer", tls=True), retries=0, settings=with_cert).ping()
    finally:
        server.stop()


@pytest.mark.slow
def test_publish_worker_and_events_over_tls_never_print_a_password(
    fresh: SecureRedis, tmp_path: Path
) -> None:
    """End to end over rediss:// with each role's user: ``publish`` → ``posestream worker`` (the packaged
    model, in its own process) → ``events``; every line any of them prints is free of every password."""
    admin = fresh.admin()
    settings = fresh.settings
    camera_a, _ = cameras()
    tls = {
        "POSESTREAM_REDIS_CA_FILE": str(fresh.certs["ca"]),
        "POSESTREAM_REDIS_CERT_FILE": str(fresh.certs["client"]),  # optional on this server: accepted
        "POSESTREAM_REDIS_KEY_FILE": str(fresh.certs["client_key"]),
    }
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{index:03d}.png"), pixels)
    producer_env = {"POSESTREAM_REDIS_URL": fresh.url("producer", tls=True), **tls}
    published = cli("publish", str(folder), "--camera-id", camera_a, env=producer_env)
    assert published.returncode == 0, published.stderr
    keys = settings.shard_keys(shard_for(camera_a, SHARDS))
    assert admin.xlen(keys.frames) == 3

    log_path = tmp_path / "worker.log"
    worker_env = cli_env({"POSESTREAM_DEVICE": "cpu", "POSESTREAM_LEASE_TTL_MS": "2000", **tls})
    command = [sys.executable, "-c", "from workers.cli import main; main()", "worker"]
    command += ["--redis-url", fresh.url("worker", tls=True)]
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, env=worker_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 180
        while admin.xlen(keys.results) < 3:
            assert process.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() < deadline, log_path.read_text()[-4000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_path.read_text()[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    worker_output = log_path.read_text()
    assert "worker_started" in worker_output
    stats = json.loads(worker_output.strip().splitlines()[-1])  # the final stats line
    assert stats["frames_ok"] == 3 and stats["frames_dead"] == 0 and stats["redis_errors"] == 0, stats

    read = cli(
        "events",
        "--json",
        "--results",
        env={"POSESTREAM_REDIS_URL": fresh.url("subscriber", tls=True), **tls},
    )
    assert read.returncode == 0, read.stderr
    lines = [json.loads(line) for line in read.stdout.splitlines()]
    results = [line for line in lines if line["kind"] == FrameResult.kind]
    assert sorted(r["frame_id"] for r in results) == sorted(
        FrameResult.from_bytes(f[STREAM_FIELD.encode()]).frame_id for _, f in admin.xrange(keys.results)
    )
    assert len(results) == 3 and {r["status"] for r in results} == {"ok"}, read.stdout

    for name, text in (
        ("publish", published.stdout + published.stderr),
        ("worker", worker_output),
        ("events", read.stdout + read.stderr),
    ):
        assert text.strip(), name
        assert_no_secret(text, fresh, f"posestream {name}")
    admin.close()


def test_failing_commands_never_print_a_password(fresh: SecureRedis, tmp_path: Path) -> None:
    """The error paths: a wrong password, an unreachable Redis, a capture URL with credentials."""
    wrong = f"redis://producer:{fresh.passwords['producer']}-typo@{HOST}:{fresh.server.port}/0"
    fresh.passwords["typo"] = f"{fresh.passwords['producer']}-typo"
    wrong_worker = f"redis://worker:{fresh.passwords['worker']}-typo@{HOST}:{fresh.server.port}/0"
    fresh.passwords["worker typo"] = f"{fresh.passwords['worker']}-typo"
    closed_port = free_port()
    unreachable = f"redis://worker:{fresh.passwords['worker']}@{HOST}:{closed_port}/0"
    camera_secret = f"cam-secret-{uuid.uuid4().hex[:8]}"
    fresh.passwords["camera"] = camera_secret
    image = tmp_path / "one.png"
    image.write_bytes(image_bytes())
    try:
        capture = f"rtsp://admin:{camera_secret}@{HOST}:{closed_port}/live"
        runs = {
            "publish, wrong password": cli(
                "publish", str(image), "--camera-id", "c1", env={"POSESTREAM_REDIS_URL": wrong}
            ),
            "events, wrong password": cli("events", "--json", env={"POSESTREAM_REDIS_URL": wrong}),
            "worker, wrong password": cli(
                "worker", "--redis-url", wrong_worker, env={"POSESTREAM_DEVICE": "cpu"}, timeout=180
            ),
            "publish, capture URL": cli(
                "publish", capture, "--camera-id", "c2", env={"POSESTREAM_REDIS_URL": fresh.url("producer")}
            ),
        }
        for name, done in runs.items():
            assert done.returncode != 0, name
            assert done.stderr.strip(), name
            assert_no_secret(done.stdout + done.stderr, fresh, name)
        assert "OpenCV cannot open rtsp://admin:***@" in runs["publish, capture URL"].stderr
        # This rides out an unreachable Redis (retrying and logging it) until stopped.
        retrying = {
            "events, unreachable": cli_for(6, "events", "--json", env={"POSESTREAM_REDIS_URL": unreachable}),
        }
        for name, (stdout, stderr) in retrying.items():
            assert stderr.strip(), name
            assert_no_secret(stdout + stderr, fresh, name)
        assert "subscriber_reconnect" in retrying["events, unreachable"][1]
        # A wrong password is not an outage: the worker stops at once, with exit code 3, and says why.
        assert runs["worker, wrong password"].returncode == 3
        assert "redis_auth_failed" in runs["worker, wrong password"].stderr
    finally:
        for key in ("typo", "worker typo", "camera"):
            fresh.passwords.pop(key, None)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_serve_over_tls_with_the_worker_user_keeps_the_password_out_of_ray(fresh: SecureRedis) -> None:
    """``posestream serve --redis-url rediss://worker:…`` (its own Ray): the consumer replica connects with
    the worker's ACL user over TLS, frames are processed, and the password is in none of the serve
    command's output nor any file Ray wrote (its logs record the deployed app args)."""
    admin = fresh.admin()
    camera_a, _ = cameras()
    keys = fresh.settings.shard_keys(shard_for(camera_a, SHARDS))
    ray_dir = Path(tempfile.mkdtemp(prefix="psray-", dir="/tmp"))  # short: Ray's socket paths must fit
    log_path = ray_dir.parent / f"{ray_dir.name}-serve.log"
    env = cli_env(
        {
            "POSESTREAM_REDIS_CA_FILE": str(fresh.certs["ca"]),
            "POSESTREAM_LOG_LEVEL": "INFO",
            "RAY_TMPDIR": str(ray_dir),
        }
    )
    command = [sys.executable, "-c", "from workers.cli import main; main()", "serve"]
    command += ["--redis-url", fresh.url("worker", tls=True), "--num-cpus", "2", "--object-store-mb", "200"]
    try:
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 420
            while "serving" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, log_path.read_text()[-4000:]
                time.sleep(0.5)
            query = f"?ssl_ca_certs={fresh.certs['ca']}"
            with FramePublisher(
                fresh.url("producer", tls=True, query=query), settings=fresh.settings
            ) as publisher:
                for frame_id in range(2):
                    publisher.publish(image_bytes(128, 96, seed=frame_id), camera_a, frame_id=frame_id)
            while admin.xlen(keys.results) < 2:
                assert process.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, "no results from posestream serve"
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=180) == 0, log_path.read_text()[-4000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = log_path.read_text()
        assert f"rediss://worker:***@{HOST}:{fresh.tls_port}/0" in output  # logged, redacted
        assert_no_secret(output, fresh, "posestream serve")
        ray_files = [path for path in ray_dir.rglob("*") if path.is_file() and not path.is_symlink()]
        assert any(path.suffix in (".log", ".out", ".err") for path in ray_files)
        for path in ray_files:
            with contextlib.suppress(OSError):
                assert_no_secret(path.read_bytes().decode(errors="replace"), fresh, str(path))
        failures = [e for e in admin.acl_log() if e.get("username") == "worker"]
        assert failures == [], failures  # the Serve consumer (registry included) stayed within its ACL
    finally:
        admin.close()
        shutil.rmtree(ray_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)
