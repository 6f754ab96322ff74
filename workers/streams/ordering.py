"""InFlightWindow: up to K frames in flight, published per camera in frame_id order as they complete.

The consumer keeps several frames in flight so that GPU batches can fill, yet a camera's results must
come out in frame order. Each taken frame gets a slot; a slot is published once it and every earlier
slot of its camera are finished. Frames without a readable camera (dead letters before the schema
check) have no order to keep and go out as soon as they are finished.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Slot:
    """One frame taken from the stream, from read to publish."""

    entry_id: str
    camera_id: str | None = None
    frame_id: int | None = None
    outcome: Any = None  # what the consumer will publish (set by finish)
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def sort_key(self) -> tuple[int, str]:
        return (self.frame_id if self.frame_id is not None else -1, self.entry_id)


Publish = Callable[[list[Slot]], Awaitable[None]]


class InFlightWindow:
    def __init__(self, capacity: int, publish: Publish):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._publish = publish
        self._by_camera: dict[str, list[Slot]] = {}  # each list sorted by (frame_id, entry id)
        self._unordered: list[Slot] = []
        self._size = 0
        self._room = asyncio.Event()
        self._publish_lock = asyncio.Lock()

    def __len__(self) -> int:
        return self._size

    def entry_ids(self) -> set[str]:
        """The stream entry ids of every frame in the window (taken, not yet published)."""
        ids = {slot.entry_id for slot in self._unordered}
        for queue in self._by_camera.values():
            ids.update(slot.entry_id for slot in queue)
        return ids

    @property
    def room(self) -> int:
        return self.capacity - self._size

    def resize(self, capacity: int) -> None:
        """Change how many frames may be in flight (the backbone's batching changed). A smaller window
        takes no new frame until enough of those in flight are published; none is dropped."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        if self.room > 0:
            self._room.set()

    async def wait_for_room(self) -> int:
        """Wait until at least one frame can be taken; returns how many can."""
        while self.room <= 0:
            self._room.clear()
            await self._room.wait()
        return self.room

    def add(self, slot: Slot) -> None:
        if slot.camera_id is None:
            self._unordered.append(slot)
        else:
            queue = self._by_camera.setdefault(slot.camera_id, [])
            keys = [s.sort_key() for s in queue]
            queue.insert(bisect.bisect_right(keys, slot.sort_key()), slot)
        self._size += 1

    def finish(self, slot: Slot, outcome: Any) -> None:
        slot.outcome = outcome
        slot.done = True

    def _pop_ready(self) -> list[Slot]:
        ready = [s for s in self._unordered if s.done]
        self._unordered = [s for s in self._unordered if not s.done]
        for camera_id in list(self._by_camera):
            queue = self._by_camera[camera_id]
            count = 0
            while count < len(queue) and queue[count].done:
                count += 1
            ready.extend(queue[:count])
            del queue[:count]
            if not queue:
                del self._by_camera[camera_id]
        return ready

    async def flush(self) -> int:
        """Publish every slot that is ready, in order; returns how many were published.

        Popping happens under the lock so that two concurrent flushes cannot reorder a camera.
        """
        async with self._publish_lock:
            ready = self._pop_ready()
            if ready:
                try:
                    await self._publish(ready)
                finally:
                    self._size -= len(ready)
                    self._room.set()
            return len(ready)
