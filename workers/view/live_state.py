"""LiveState: what the live view knows, fed by a subscriber thread reading the output streams.

Bounded whatever the traffic: per camera the events of its last ``FRAMES_KEPT`` frames (enough to find
the persons of the frame its preview shows), the last ``CHANGES_KEPT`` activity changes and dead letters
overall, and counters.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.wire import ActivityChange, DeadLetter, FrameResult, PersonEvent

FRAMES_KEPT = 64
CHANGES_KEPT = 50
DEAD_KEPT = 20
RATE_WINDOW_S = 10.0


@dataclass
class CameraView:
    camera_id: str
    frames: dict[int, list[PersonEvent]] = field(default_factory=dict)  # frame_id → its events (bounded)
    results_ok: int = 0
    results_stale: int = 0
    last_frame_id: int | None = None
    last_persons: list[PersonEvent] = field(default_factory=list)  # of the newest ok frame
    result_times: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def add_event(self, event: PersonEvent) -> None:
        self.frames.setdefault(event.frame_id, []).append(event)
        while len(self.frames) > FRAMES_KEPT:
            del self.frames[min(self.frames)]

    def add_result(self, result: FrameResult, now: float) -> None:
        self.result_times.append(now)
        if result.status == "stale":
            self.results_stale += 1
            return
        self.results_ok += 1
        if self.last_frame_id is None or result.frame_id >= self.last_frame_id:
            self.last_frame_id = result.frame_id
            self.last_persons = sorted(self.frames.get(result.frame_id, []), key=lambda e: e.person)

    def frames_per_s(self, now: float) -> float:
        recent = [t for t in self.result_times if now - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def activity_counts(self) -> dict[str, int]:
        """People per activity in the newest frame (the smoothed label where the event has one)."""
        return dict(Counter(e.activity_smoothed or e.activity for e in self.last_persons))


class LiveState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cameras: dict[str, CameraView] = {}
        self.changes: deque[ActivityChange] = deque(maxlen=CHANGES_KEPT)
        self.dead: deque[DeadLetter] = deque(maxlen=DEAD_KEPT)
        self.dead_by_reason: Counter[str] = Counter()
        self.received = 0
        self.started = time.time()

    def camera(self, camera_id: str) -> CameraView:
        if camera_id not in self.cameras:
            self.cameras[camera_id] = CameraView(camera_id)
        return self.cameras[camera_id]

    def add(self, message: PersonEvent | FrameResult | DeadLetter | ActivityChange) -> None:
        now = time.monotonic()
        with self.lock:
            self.received += 1
            if isinstance(message, PersonEvent):
                self.camera(message.camera_id).add_event(message)
            elif isinstance(message, FrameResult):
                self.camera(message.camera_id).add_result(message, now)
            elif isinstance(message, ActivityChange):
                self.changes.appendleft(message)
            elif isinstance(message, DeadLetter):
                self.dead.appendleft(message)
                self.dead_by_reason[message.reason] += 1

    def add_cameras(self, camera_ids: Iterable[str]) -> None:
        with self.lock:
            for camera_id in camera_ids:
                self.camera(camera_id)

    def events_of(self, camera_id: str, frame_id: int) -> list[PersonEvent] | None:
        """The events of one frame, None when the view has not seen (or no longer keeps) them."""
        with self.lock:
            view = self.cameras.get(camera_id)
            if view is None or frame_id not in view.frames:
                return None
            return sorted(view.frames[frame_id], key=lambda e: e.person)

    def snapshot(self) -> dict:
        """The page's JSON: cameras with counts and rates, recent changes and dead letters."""
        now = time.monotonic()
        with self.lock:
            cameras = [
                {
                    "camera_id": view.camera_id,
                    "persons": len(view.last_persons),
                    "activities": view.activity_counts(),
                    "tracks": sorted({e.track_id for e in view.last_persons if e.track_id is not None}),
                    "frames_ok": view.results_ok,
                    "frames_stale": view.results_stale,
                    "frames_per_s": round(view.frames_per_s(now), 2),
                    "last_frame_id": view.last_frame_id,
                }
                for view in sorted(self.cameras.values(), key=lambda v: v.camera_id)
            ]
            totals: Counter[str] = Counter()
            for camera in cameras:
                totals.update(camera["activities"])
            return {
                "cameras": cameras,
                "activities": dict(totals),
                "changes": [
                    {
                        "camera_id": c.camera_id,
                        "track_id": c.track_id,
                        "previous": c.previous,
                        "activity": c.activity,
                        "ts": c.ts,
                    }
                    for c in self.changes
                ],
                "dead": [
                    {"camera_id": d.camera_id, "reason": d.reason, "error": d.error[:120]} for d in self.dead
                ],
                "dead_by_reason": dict(self.dead_by_reason),
                "stale": sum(c["frames_stale"] for c in cameras),
                "received": self.received,
            }
