"""``posestream demo``: the whole system on one machine, end to end, with a summary that must balance.

Embedded Redis + local Ray Serve (``workers.local_stack``); two cameras publish a synthetic multi-person
sequence (or the videos given) through ``FramePublisher``; a subscriber reads events, results and dead
letters through its own consumer group, prints them live and draws each finished frame into the output
folder (a JPEG per frame and, per camera, an annotated WebM video). The run ends once every published frame
is accounted for (ok + stale + dead == published). Against the synthetic sequence's truth the summary scores
detections, activities and, when the events carry ``track_id``, identities (switches per 100 frames, IDF1).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from model.evaluation.identity_metrics import FrameIdentities
from schemas.settings import Settings
from schemas.wire import DeadLetter, FrameResult, PersonEvent
from workers.demo_figures import (
    TruthPerson,
    activity_figures,
    activity_pairs,
    format_summary,
    frame_identities,
    percentile,
    track_figures,
)
from workers.paths import safe_child

__all__ = [  # the demo's records and figures, for callers of this module
    "Collector",
    "DemoOptions",
    "TruthPerson",
    "activity_figures",
    "activity_pairs",
    "format_summary",
    "run_demo",
    "summarise",
    "synthetic_frames",
]

log = structlog.get_logger()

DEFAULT_CAMERAS = ("demo-cam-a", "demo-cam-b")
# Per camera: two cameras at 3 frames/s stay near what 2 CPU cores process, so latency is not all queueing.
SYNTHETIC_FPS = 3.0


@dataclass
class DemoOptions:
    videos: list[str] = field(default_factory=list)
    frames: int = 60  # per camera
    people: int = 3
    size: tuple[int, int] = (480, 480)  # width, height of the synthetic frames
    fps: float | None = None  # per camera; None: SYNTHETIC_FPS for the synthetic sequence, a video's own rate
    seed: int = 0
    out_dir: Path = Path("demo-output")
    json_summary: Path | None = None
    redis_url: str | None = None
    checkpoint: str | None = None
    config_path: Path | None = None
    timeout_s: float = 600.0  # for the frames to be accounted for once publishing has ended
    save_frames: bool = True
    verbose: bool = False
    view: bool = True  # serve the live view (posestream view) while the demo runs
    view_port: int = 8080  # 0, or taken: any free port
    # The cameras' frames carry this max_age_s (None: settings.live_max_age_s, 2 s; 0: none): the synthetic
    # cameras are live, so under overload their old frames come back stale instead of queueing. Video files
    # given as cameras carry none, as with `posestream publish`.
    max_age_s: float | None = None


def synthetic_frames(
    frames: int, people: int, seed: int, size: tuple[int, int]
) -> Iterator[tuple[np.ndarray, list[TruthPerson]]]:
    """The synthetic sequence's frames with their ground-truth persons (box and activity)."""
    from model.data.sequence import iter_sequence_frames

    for frame, truth in iter_sequence_frames(frames=frames, people=people, seed=seed, size=size):
        people = []
        for person in truth["people"]:
            x, y, w, h = person["bbox"]
            people.append(
                TruthPerson(
                    box=(x, y, x + w, y + h), activity=person["activity"], track_id=person["track_id"]
                )
            )
        yield frame, people


def _video_frames(source) -> Iterator[tuple[np.ndarray | bytes, None]]:
    for frame, _ts in source:
        yield frame, None


class Collector:
    """Reads the output streams through its own group; keeps what the summary and the drawings need."""

    def __init__(
        self, settings: Settings, out_dir: Path | None, echo: bool = True, fps: float = SYNTHETIC_FPS
    ) -> None:
        from workers.client import EventSubscriber

        self.subscriber = EventSubscriber(
            settings=settings, kinds=("events", "results", "dead"), start="0", group="posestream-demo",
            consumer="demo", block_ms=200,
        )  # fmt: skip
        self.out_dir = out_dir
        self.echo = echo
        self.events: dict[tuple[str, int], list[PersonEvent]] = {}
        self.results: list[FrameResult] = []
        self.dead: list[DeadLetter] = []
        self.result_times: list[float] = []
        self.images: dict[tuple[str, int], np.ndarray] = {}
        self.annotated = 0
        self.truth: dict[tuple[str, int], list[TruthPerson]] = {}
        self.truth_persons = 0
        self.truth_matched = 0
        self.activity_confusion: Counter[tuple[str, str]] = Counter()  # (true, predicted) of matched persons
        self.smoothed_confusion: Counter[tuple[str, str]] = Counter()  # (true, the track's smoothed label)
        self.identities: dict[str, list[FrameIdentities]] = {}  # per camera, ok frames with truth, in order
        self.track_ids: set[tuple[str, int]] = set()  # (camera, track id) seen in events
        self.fps = fps if fps > 0 else SYNTHETIC_FPS  # of the annotated videos
        self.videos: dict[str, Any] = {}  # camera → model.video.AnnotatedVideo
        self._waiting: dict[tuple[str, int], FrameResult] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-collector", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.subscriber.close()
        self.close_videos()

    def close_videos(self) -> None:
        """Finish each camera's annotated WebM (its frames so far stay playable)."""
        for video in self.videos.values():
            video.close()

    def keep(self, camera_id: str, frame_id: int, image: np.ndarray | bytes, truth) -> None:
        """Remember the frame (for drawing) and its ground truth (for the detection and activity figures)."""
        with self.lock:
            if self.out_dir is not None and isinstance(image, np.ndarray):
                self.images[(camera_id, frame_id)] = image
            if truth is not None:
                self.truth[(camera_id, frame_id)] = truth

    @property
    def accounted(self) -> int:
        return len(self.results) + len(self.dead)

    def _run(self) -> None:
        for message in self.subscriber.messages(follow=True, stop=self._stop):
            with self.lock:
                if isinstance(message, PersonEvent):
                    key = (message.camera_id, message.frame_id)
                    self.events.setdefault(key, []).append(message)
                    waiting = self._waiting.get(key)
                    if waiting is not None and len(self.events[key]) >= waiting.persons:
                        self._finish_frame(self._waiting.pop(key))
                elif isinstance(message, FrameResult):
                    self.results.append(message)
                    self.result_times.append(time.monotonic())
                    key = (message.camera_id, message.frame_id)
                    # A read may bring a frame's result before all of its (older) events: wait for them.
                    if len(self.events.get(key, [])) < message.persons:
                        self._waiting[key] = message
                    else:
                        self._finish_frame(message)
                else:
                    self.dead.append(message)
                    self._say(
                        f"DEAD  {message.camera_id}:{message.frame_id}  {message.reason}: {message.error}"
                    )

    def _say(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)

    def _finish_frame(self, result: FrameResult) -> None:
        key = (result.camera_id, result.frame_id)
        events = sorted(self.events.get(key, []), key=lambda e: e.person)
        people = ", ".join(_spoken(e) for e in events) or "nobody"
        truth = self.truth.pop(key, None)
        self.track_ids.update((e.camera_id, e.track_id) for e in events if e.track_id is not None)
        if truth is not None and result.status == "ok":
            pairs = activity_pairs(truth, events)
            self.truth_persons += len(truth)
            self.truth_matched += len(pairs)
            self.activity_confusion.update(pairs)
            self.smoothed_confusion.update(activity_pairs(truth, events, smoothed=True))
            self.identities.setdefault(result.camera_id, []).append(frame_identities(truth, events))
        self._say(
            f"{result.camera_id:>12}  frame {result.frame_id}  {result.status:5}  "
            f"{result.persons} person(s): {people}  ({result.latency_ms:.0f} ms)"
        )
        image = self.images.pop(key, None)
        if image is None or self.out_dir is None:
            return
        import cv2

        from model.video import AnnotatedVideo
        from workers.annotate import draw_events

        drawn = draw_events(image, events)
        camera_dir = safe_child(self.out_dir, result.camera_id)
        camera_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(camera_dir / f"{result.frame_id}.jpg"), drawn)
        self.annotated += 1
        video = self.videos.setdefault(
            result.camera_id, AnnotatedVideo(safe_child(self.out_dir, result.camera_id, ".webm"), self.fps)
        )
        try:
            video.write(drawn)  # frames finish in camera order: the video plays them in capture order
        except (RuntimeError, ValueError) as exc:  # no video is no reason to stop collecting
            log.warning("demo_video_frame_skipped", camera_id=result.camera_id, error=str(exc))


def _spoken(event: PersonEvent) -> str:
    raw = f"{event.activity} {event.activity_scores.get(event.activity, 0.0):.2f}"
    if event.track_id is None:
        return raw
    return f"#{event.track_id} {event.activity_smoothed or event.activity} ({raw})"


def _publish_camera(
    publisher, collector: Collector, camera_id: str, frames, fps: float, max_age_s: float | None
) -> None:
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    for index, (image, truth) in enumerate(frames):
        if interval:
            time.sleep(max(0.0, next_due - time.monotonic()))
            next_due = max(next_due + interval, time.monotonic())
        ts = time.time()
        frame_id = publisher.next_frame_id(camera_id, ts)
        collector.keep(camera_id, frame_id, image, truth)
        meta = {"frame_index": index}
        publisher.publish(image, camera_id, frame_id=frame_id, ts=ts, meta=meta, max_age_s=max_age_s)


def summarise(
    collector: Collector, published: int, dropped: int, started: float, max_age_s: float | None = None
) -> dict:
    results, dead = collector.results, collector.dead
    events = [e for frame_events in collector.events.values() for e in frame_events]
    ok = sum(r.status == "ok" for r in results)
    stale = sum(r.status == "stale" for r in results)
    elapsed = (collector.result_times[-1] if collector.result_times else time.monotonic()) - started
    frame_latency = [r.latency_ms for r in results if r.status == "ok"]
    event_latency = [e.latency_ms for e in events]
    return {
        "frames_published": published,
        "frames_dropped": dropped,
        "results_ok": ok,
        "results_stale": stale,  # an outcome like ok: older than max_age_s on arrival, or policy-dropped
        "max_age_s": max_age_s,
        "dead_letters": len(dead),
        "dead_reasons": dict(Counter(d.reason for d in dead)),
        "balanced": published == ok + stale + len(dead),
        "persons": sum(r.persons for r in results),
        "events": len(events),
        "frames_with_persons": sum(r.persons > 0 for r in results),
        "activities": dict(Counter(e.activity for e in events).most_common()),
        "latency_ms": {"p50": percentile(event_latency, 50), "p95": percentile(event_latency, 95)},
        "frame_latency_ms": {"p50": percentile(frame_latency, 50), "p95": percentile(frame_latency, 95)},
        "frames_per_s": round(len(results) / elapsed, 2) if results and elapsed > 0 else 0.0,
        "elapsed_s": round(elapsed, 2),
        "cameras": sorted({r.camera_id for r in results}),
        "model": ", ".join(sorted({e.model for e in events})) or "unknown (no events)",
        "annotated_frames": collector.annotated,
        "annotated_videos": [str(v.path) for v in collector.videos.values() if v.frames],
        "ground_truth_persons": collector.truth_persons,
        "ground_truth_found": collector.truth_matched,  # matched by a detection with IoU >= 0.5
        "detection_recall": round(collector.truth_matched / collector.truth_persons, 3)
        if collector.truth_persons
        else None,
        # Of those matched persons: predicted activity == the sequence's activity in that frame.
        **activity_figures(collector.activity_confusion),
        # The same with each track's smoothed activity (what activity_smoothed and ActivityChange report).
        **{
            f"smoothed_{key}": value
            for key, value in activity_figures(collector.smoothed_confusion).items()
            if key in ("activity_matched", "activity_correct", "activity_accuracy")
        },
        # Identities against the sequence's, from the events' track_id (None: tracking off).
        **track_figures(collector.identities, collector.track_ids),
        "out_dir": str(collector.out_dir) if collector.out_dir else None,
    }


def _video_rate(options: DemoOptions, sources) -> float:
    """The annotated videos' frame rate: the cameras' own (or the one given)."""
    if options.fps:
        return options.fps
    if sources:
        return next((src.fps for src in sources if src.fps), SYNTHETIC_FPS)
    return SYNTHETIC_FPS


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``options.json_summary``)."""
    from workers.client import FramePublisher, FrameSource, camera_id_for
    from workers.local_stack import local_stack

    out_dir = options.out_dir.resolve() if options.save_frames else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if options.videos:
        sources = [FrameSource(v, fps=options.fps, max_frames=options.frames) for v in options.videos]
        cameras = {
            camera_id_for(v): _video_frames(src) for v, src in zip(options.videos, sources, strict=True)
        }
    else:
        cameras = {
            cam: synthetic_frames(options.frames, options.people, options.seed + i, options.size)
            for i, cam in enumerate(DEFAULT_CAMERAS)
        }
    user_config = {"checkpoint": options.checkpoint} if options.checkpoint else None
    if options.checkpoint is None:
        from model.checkpoint import DEFAULT_CHECKPOINT

        if not DEFAULT_CHECKPOINT.exists():
            # The replicas log this too, but in their own log files: say it where the user looks.
            print(
                f"WARNING: no checkpoint at {DEFAULT_CHECKPOINT}: the UNTRAINED network runs and finds no "
                "persons (make demo-weights trains one)",
                file=sys.stderr,
            )
    # A Redis of the user's may hold other streams: the demo's own prefix keeps its counts its own.
    prefix = f"posestream-demo-{time.strftime('%Y%m%d%H%M%S')}"
    overrides: dict[str, Any] = {"stream_prefix": prefix} if options.redis_url else {}
    if options.view:
        overrides["preview_fps"] = 4.0  # livelier tiles than the 1/s default; still one small key a camera
    # Videos are paced by their FrameSource; the synthetic frames here.
    synthetic_fps = 0.0 if options.videos else (SYNTHETIC_FPS if options.fps is None else options.fps)
    with local_stack(
        redis_url=options.redis_url,
        settings=overrides, config_path=options.config_path, user_config=user_config,
        log_to_driver=options.verbose,
    ) as stack:  # fmt: skip
        settings = Settings(**stack.settings)
        live_max_age = settings.live_max_age_s if options.max_age_s is None else options.max_age_s
        from workers.commands.publish import source_max_age

        if options.videos:
            ages = [source_max_age(src.kind, live_max_age) for src in sources]
        else:  # the synthetic cameras stand for live ones
            ages = [source_max_age("live", live_max_age)] * len(cameras)
        collector = Collector(
            settings, out_dir, fps=_video_rate(options, sources if options.videos else None)
        )
        collector.start()
        view = _start_view(settings, options.view_port, stack.metrics_endpoint) if options.view else None
        if view is not None:
            print(f"live view: {view.url}  (open it in a browser while the demo runs)", flush=True)
        publisher = FramePublisher(settings=settings, policy="wait", max_backlog=32, wait_timeout_s=600)
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=_publish_camera,
                args=(publisher, collector, cam, frames, synthetic_fps, age),
                daemon=True,
            )
            for (cam, frames), age in zip(cameras.items(), ages, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        published, dropped = publisher.counts["published"], publisher.counts["dropped"]
        deadline = time.monotonic() + options.timeout_s
        while collector.accounted < published and time.monotonic() < deadline:
            time.sleep(0.1)
        collector.stop()
        publisher.close()
        if view is not None:
            view.stop()
    summary = summarise(collector, published, dropped, started, max(ages, key=lambda a: a or 0.0))
    summary["view_url"] = view.url if view is not None else None
    if options.json_summary:
        options.json_summary.parent.mkdir(parents=True, exist_ok=True)
        options.json_summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary), file=sys.stdout, flush=True)
    return summary


def _start_view(settings: Settings, port: int, metrics_url: str | None):
    """The live view on ``port`` (a free one if taken) for as long as the demo runs; None, with a warning,
    if it cannot start."""
    from workers.client.connection import connect
    from workers.view.server import ViewServer
    from workers.view.web import LiveView, ViewOptions

    client = connect(settings.redis_url, cluster=settings.redis_cluster)
    live = LiveView(client, settings, ViewOptions(start="0", metrics_url=metrics_url))
    try:
        return ViewServer(live, port=port, fallback_to_free_port=True).start()
    except RuntimeError as exc:
        log.warning("view_not_started", port=port, error=str(exc))
        return None
