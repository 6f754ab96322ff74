"""The in-flight window follows the backbone: max_batch_size x replicas on CPU, one more batch on a GPU,
on real Redis."""

from __future__ import annotations

import asyncio

import pytest
from stream_helpers import (
    FakePipeline,
    consumer_settings,
    finished_count,
    frame_payload,
    outputs,
    publish,
    run_scenario,
    wait_until,
)

from schemas.settings import Settings
from workers.streams import StreamConsumer, connect
from workers.streams.ordering import InFlightWindow
from workers.streams.window import (
    BackboneCapacity,
    ReportsBackbone,
    ReportsDevice,
    WindowSize,
    window_size,
)


class BackbonePipeline(FakePipeline):
    """A FakePipeline that reports a backbone's batching, as the Serve pipeline does."""

    def __init__(self, capacity: BackboneCapacity | None, **kwargs):
        super().__init__(**kwargs)
        self.capacity = capacity

    def backbone_capacity(self) -> BackboneCapacity | None:
        return self.capacity


class OnDevice(FakePipeline):
    """A FakePipeline that says where it computes, as the in-process LocalPipeline does."""

    def __init__(self, device_type: str, **kwargs):
        super().__init__(**kwargs)
        self.device_type = device_type


def test_window_rule():
    settings = Settings(redis_url="redis://unused")
    assert isinstance(BackbonePipeline(None), ReportsBackbone)
    # on CPU one batch per replica: a queued batch would wait on the cores the stages after it use
    assert window_size(settings, BackbonePipeline(BackboneCapacity(8, 1)), 4) == WindowSize(
        8, "backbone", 8, 1, "cpu", 0
    )
    assert window_size(settings, BackbonePipeline(BackboneCapacity(8, 3)), 4).frames == 24
    # on a GPU one batch queued behind the computing ones keeps the backbone busy meanwhile
    assert window_size(settings, BackbonePipeline(BackboneCapacity(8, 1, "cuda")), 4) == WindowSize(
        16, "backbone", 8, 1, "cuda", 1
    )
    assert window_size(settings, BackbonePipeline(BackboneCapacity(8, 3, "cuda")), 4).frames == 32
    # nothing reported yet, or an in-process model: one replica whose batch is one call, on its device
    assert window_size(settings, BackbonePipeline(None), 4) == WindowSize(4, "call_batch", 4, 1, "cpu", 0)
    assert window_size(settings, FakePipeline(), 6) == WindowSize(6, "call_batch", 6, 1, "cpu", 0)
    assert window_size(settings, OnDevice("cuda"), 6) == WindowSize(12, "call_batch", 6, 1, "cuda", 1)
    pinned = Settings(redis_url="redis://unused", in_flight=24)
    assert window_size(pinned, BackbonePipeline(BackboneCapacity(8, 1)), 4) == WindowSize(24, "settings")
    with pytest.raises(ValueError, match="replicas"):
        BackboneCapacity(8, 0)


def test_in_process_pipeline_reports_its_device():
    from model.pipeline import PosePipeline
    from workers.pipeline import LocalPipeline

    local = LocalPipeline(PosePipeline.load(None, device="cpu"))
    assert isinstance(local, ReportsDevice) and local.device_type == "cpu"
    assert window_size(Settings(redis_url="redis://unused"), local, 8).frames == 8


def test_window_resize_wakes_a_waiter_and_a_smaller_one_drops_nothing():
    async def scenario() -> list[int]:
        published: list[int] = []

        async def publish_slots(slots) -> None:
            published.extend(s.frame_id for s in slots)

        from workers.streams.ordering import Slot

        window = InFlightWindow(2, publish_slots)
        slots = [Slot(f"{i}-0", "cam", i) for i in range(2)]
        for slot in slots:
            window.add(slot)
        waiter = asyncio.create_task(window.wait_for_room())
        await asyncio.sleep(0.01)
        assert not waiter.done()  # full
        window.resize(3)
        assert await asyncio.wait_for(waiter, 1) == 1
        window.resize(1)  # smaller than what is in flight: no room until two are published
        assert window.room == -1
        window.finish(slots[0], "ok")
        await window.flush()
        assert window.room == 0
        window.finish(slots[1], "ok")
        await window.flush()
        assert await asyncio.wait_for(window.wait_for_room(), 1) == 1
        return published

    assert run_scenario(scenario()) == [0, 1]


def test_consumer_keeps_what_the_backbone_can_take_and_follows_a_change(redis_url, sync_redis):
    # in_flight unset: the window comes from the pipeline's backbone (batch 2, 1 CPU replica → 2 frames)
    settings = consumer_settings(redis_url, shards=1, in_flight=None, read_batch=2)
    camera = "cam-window"
    for frame_id in range(12):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))

    async def scenario() -> tuple[dict, dict]:
        client = connect(redis_url, settings)
        gate = asyncio.Event()
        pipeline = BackbonePipeline(BackboneCapacity(2, 1), gate=gate)
        consumer = StreamConsumer(client, pipeline, settings, name="windowed")
        task = asyncio.create_task(consumer.run())
        await wait_until(lambda: consumer.stats()["in_flight"] == 2, what="a window of 2")
        await asyncio.sleep(0.3)
        first = consumer.stats()
        pipeline.capacity = BackboneCapacity(2, 2)  # autoscaling added a backbone replica: 4 frames
        await wait_until(lambda: consumer.stats()["in_flight"] == 4, what="the window grown to 4")
        second = consumer.stats()
        gate.set()
        await wait_until(lambda: finished_count(sync_redis, settings) >= 12, what="every frame")
        consumer.stop()
        await task
        await client.aclose()
        return first, second

    first, second = run_scenario(scenario())
    assert first["in_flight"] == 2  # held at the window while the backbone is busy, the rest in Redis
    assert first["window"] == {
        0: {
            "frames": 2,
            "source": "backbone",
            "max_batch_size": 2,
            "replicas": 1,
            "device_type": "cpu",
            "queued_batches": 0,
        }
    }
    assert second["window"][0]["frames"] == 4 and second["in_flight"] == 4
    results = outputs(sync_redis, settings)["results"]
    assert [r["frame_id"] for r in results] == list(range(12))  # order kept across the resize
    assert all(r["status"] == "ok" for r in results)
