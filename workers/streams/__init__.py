"""Redis stream I/O of the frame consumer: one Redis concern per module (DESIGN.md, "Shards, ownership
and the fence", "Delivery semantics")."""

from workers.streams.consumer import StreamConsumer, connect, default_consumer_name
from workers.streams.shard import ShardConsumer
from workers.streams.stats import ConsumerStats

__all__ = ["ConsumerStats", "ShardConsumer", "StreamConsumer", "connect", "default_consumer_name"]
