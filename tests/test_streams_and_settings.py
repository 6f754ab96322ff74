"""Shard choice, key names and settings."""

from __future__ import annotations

import zlib

import pytest
from pydantic import ValidationError

from schemas.settings import Settings
from schemas.streams import StreamKeys, all_shard_keys, shard_for


def test_shard_is_crc32_of_utf8_camera_id():
    # Values other languages must reproduce: crc32 of the UTF-8 bytes.
    assert zlib.crc32(b"cam-1") == 2_865_850_432
    assert shard_for("cam-1", 4) == 2_865_850_432 % 4
    assert shard_for("caméra", 7) == zlib.crc32("caméra".encode()) % 7
    assert shard_for("anything", 1) == 0


def test_shards_spread_cameras():
    counts = [0] * 4
    for i in range(400):
        counts[shard_for(f"cam-{i}", 4)] += 1
    assert min(counts) > 60


def test_shard_count_must_be_positive():
    with pytest.raises(ValueError, match="shards"):
        shard_for("cam", 0)


def test_single_shard_uses_plain_names():
    keys = StreamKeys.for_shard(0, 1)
    assert (keys.frames, keys.events, keys.results, keys.dead) == (
        "posestream:frames",
        "posestream:events",
        "posestream:results",
        "posestream:dead",
    )


def test_sharded_keys_share_a_cluster_hash_tag():
    keys = StreamKeys.for_shard(3, 8, prefix="ps")
    assert keys.frames == "ps:{3}:frames"
    assert keys.owner == "ps:{3}:owner"
    assert keys.epoch == "ps:{3}:epoch"
    assert len({k.frames for k in all_shard_keys(8, "ps")}) == 8
    with pytest.raises(ValueError):
        StreamKeys.for_shard(8, 8)


def test_on_a_cluster_one_shard_is_tagged_too(monkeypatch):
    keys = StreamKeys.for_shard(0, 1, cluster=True)
    every = [keys.frames, keys.events, keys.results, keys.dead, keys.owner, keys.epoch, keys.strikes]
    assert all(key.startswith("posestream:{0}:") for key in every)  # one slot for the fenced script
    monkeypatch.setenv("POSESTREAM_REDIS_CLUSTER", "true")
    assert Settings().shard_keys(0).frames == "posestream:{0}:frames"
    assert [k.frames for k in Settings(shards=2).all_shard_keys()] == [
        "posestream:{0}:frames",
        "posestream:{1}:frames",
    ]
    monkeypatch.setenv("POSESTREAM_REDIS_CLUSTER", "false")
    assert Settings().shard_keys(0).frames == "posestream:frames"  # standalone S = 1: the public names


def test_settings_read_the_env_prefix(monkeypatch):
    monkeypatch.setenv("POSESTREAM_SHARDS", "4")
    monkeypatch.setenv("POSESTREAM_REDIS_URL", "redis://127.0.0.1:7777/0")
    monkeypatch.setenv("POSESTREAM_LEASE_TTL_MS", "3000")
    settings = Settings()
    assert settings.shards == 4
    assert settings.redis_url == "redis://127.0.0.1:7777/0"
    assert settings.renew_interval_ms == 1000
    assert settings.shard_keys(2).frames == "posestream:{2}:frames"


@pytest.mark.parametrize(
    "env",
    [
        {"POSESTREAM_SHARDS": "0"},
        {"POSESTREAM_LEASE_TTL_MS": "1000", "POSESTREAM_LEASE_RENEW_MS": "1000"},
        {"POSESTREAM_STREAM_PREFIX": "bad prefix"},
        {"POSESTREAM_MAX_DELIVERIES": "0"},
    ],
)
def test_unsafe_settings_are_rejected(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()
