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

from model.evaluation.identity_metrics import FrameIdentities, IdentityScores, score_identities
from schemas.settings import Settings
from schemas.wire import DeadLetter, FrameResult, PersonEvent
from workers.paths import safe_child

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


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 1) if values else None


@dataclass(frozen=True)
class TruthPerson:
    """One person of a synthetic frame as the sequence drew it."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    activity: str
    track_id: int | None = None  # the sequence's identity of the person


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


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_pairs(
    truth: list[tuple[float, ...]], found: list[tuple[float, ...]], threshold: float = 0.5
) -> list[tuple[int, int]]:
    """(truth index, detection index) of the ground-truth boxes matched one-to-one (greedy, best IoU
    first) by a detection with IoU >= threshold."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matched.append((i, j))
    return matched


def match_count(
    truth: list[tuple[float, ...]], found: list[tuple[float, ...]], threshold: float = 0.5
) -> int:
    """Ground-truth boxes matched one-to-one by a detection with IoU >= threshold (``match_pairs``)."""
    return len(match_pairs(truth, found, threshold))


def activity_pairs(
    truth: list[TruthPerson], events: list[PersonEvent], threshold: float = 0.5
) -> list[tuple[str, str]]:
    """(true activity, predicted activity) of each true person a detection matches (IoU >= threshold)."""
    pairs = match_pairs([t.box for t in truth], [tuple(e.bbox) for e in events], threshold)
    return [(truth[i].activity, events[j].activity) for i, j in pairs]


def smoothed_activity_pairs(truth: list[TruthPerson], events: list[PersonEvent]) -> list[tuple[str, str]]:
    """The same pairs with the track's smoothed activity (persons whose event carries one)."""
    pairs = match_pairs([t.box for t in truth], [tuple(e.bbox) for e in events], 0.5)
    return [(truth[i].activity, events[j].activity_smoothed) for i, j in pairs if events[j].activity_smoothed]


def frame_identities(truth: list[TruthPerson], events: list[PersonEvent]) -> FrameIdentities:
    """One frame's true identities, reported track ids and which went with which (box IoU >= 0.5)."""
    pairs = match_pairs([t.box for t in truth], [tuple(e.bbox) for e in events])
    return FrameIdentities(
        gt_ids=tuple(t.track_id for t in truth if t.track_id is not None),
        track_ids=tuple(e.track_id for e in events if e.track_id is not None),
        pairs=tuple(
            (truth[i].track_id, events[j].track_id)
            for i, j in pairs
            if truth[i].track_id is not None and events[j].track_id is not None
        ),
    )


def track_figures(identities: dict[str, list[FrameIdentities]], track_ids: set[tuple[str, int]]) -> dict:
    """Identity scores per camera (ids are per camera), summed; ``tracks_available`` False when no event
    carried a track id (tracking off)."""
    if not track_ids:
        return {"tracks_available": False}
    scores = sum((score_identities(frames) for frames in identities.values()), IdentityScores())
    figures: dict[str, Any] = {
        "tracks_available": True,
        "tracks": len(track_ids),
        "track_frames": scores.frames,
    }
    if scores.frames:
        figures.update(
            identity_switches=scores.switches,
            switches_per_100_frames=round(scores.switches_per_100_frames, 2),
            idf1=round(scores.idf1, 3),
            right_identity_share=round(scores.right_identity_share, 3),
        )
    return figures


def activity_figures(confusion: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Activity against the ground truth over matched person-frames, from (true, predicted) counts: overall
    accuracy, per true class (persons, correct, accuracy = that class's recall) and the confusion counts."""
    total = sum(confusion.values())
    correct = sum(n for (truth, predicted), n in confusion.items() if truth == predicted)
    by_class: dict[str, dict[str, Any]] = {}
    matrix: dict[str, dict[str, int]] = {}
    for (truth, predicted), n in sorted(confusion.items()):
        row = by_class.setdefault(truth, {"persons": 0, "correct": 0})
        row["persons"] += n
        row["correct"] += n if truth == predicted else 0
        matrix.setdefault(truth, {})[predicted] = n
    for row in by_class.values():
        row["accuracy"] = round(row["correct"] / row["persons"], 3)
    return {
        "activity_matched": total,
        "activity_correct": correct,
        "activity_accuracy": round(correct / total, 3) if total else None,
        "activity_by_class": by_class,
        "activity_confusion": matrix,  # true activity -> predicted activity -> person-frames
    }


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
            self.smoothed_confusion.update(smoothed_activity_pairs(truth, events))
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


def _publish_camera(publisher, collector: Collector, camera_id: str, frames, fps: float) -> None:
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    for index, (image, truth) in enumerate(frames):
        if interval:
            time.sleep(max(0.0, next_due - time.monotonic()))
            next_due = max(next_due + interval, time.monotonic())
        ts = time.time()
        frame_id = publisher.next_frame_id(camera_id, ts)
        collector.keep(camera_id, frame_id, image, truth)
        publisher.publish(image, camera_id, frame_id=frame_id, ts=ts, meta={"frame_index": index})


def summarise(collector: Collector, published: int, dropped: int, started: float) -> dict:
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
        "results_stale": stale,
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


def format_summary(summary: dict) -> str:
    lat, flat = summary["latency_ms"], summary["frame_latency_ms"]
    activities = ", ".join(f"{k} {v}" for k, v in summary["activities"].items()) or "none"
    lines = [
        "── posestream demo summary " + "─" * 40,
        f"frames published   {summary['frames_published']}  (dropped: {summary['frames_dropped']})",
        f"results            ok {summary['results_ok']}, stale {summary['results_stale']}",
        f"dead letters       {summary['dead_letters']} {summary['dead_reasons'] or ''}",
        f"balanced           {'yes' if summary['balanced'] else 'NO'}  (published == ok + stale + dead)",
        f"persons            {summary['persons']} in {summary['frames_with_persons']} frames "
        f"({summary['events']} events)",
        f"activities         {activities}",
        f"latency ms         p50 {lat['p50']}  p95 {lat['p95']}  "
        f"(per frame: p50 {flat['p50']}  p95 {flat['p95']})",
        f"throughput         {summary['frames_per_s']} frames/s over {summary['elapsed_s']} s",
        f"model              {summary['model']}",
        f"annotated frames   {summary['annotated_frames']} in {summary['out_dir']}",
    ]
    if summary["ground_truth_persons"]:
        lines.insert(
            -1,
            f"ground truth       {summary['ground_truth_found']} of {summary['ground_truth_persons']} "
            f"persons found (IoU >= 0.5, recall {summary['detection_recall']})",
        )
    lines.insert(-1, _tracks_line(summary))
    if summary.get("activity_matched"):
        per_class = ", ".join(
            f"{name} {row['correct']}/{row['persons']}" for name, row in summary["activity_by_class"].items()
        )
        lines.insert(
            -1,
            f"activity vs truth  {summary['activity_correct']} of {summary['activity_matched']} found "
            f"persons right (accuracy {summary['activity_accuracy']}; {per_class})",
        )
    if summary.get("smoothed_activity_matched"):
        lines.insert(
            -1,
            f"smoothed activity  {summary['smoothed_activity_correct']} of "
            f"{summary['smoothed_activity_matched']} right with each track's smoothed label "
            f"(accuracy {summary['smoothed_activity_accuracy']})",
        )
    if summary.get("view_url"):
        lines.append(f"live view          {summary['view_url']} (was up while the demo ran)")
    if summary.get("annotated_videos"):
        lines.append(f"annotated videos   {', '.join(summary['annotated_videos'])}")
    return "\n".join(lines)


def _tracks_line(summary: dict) -> str:
    if not summary.get("tracks_available"):
        return "tracks             unavailable (the events carry no track_id: tracking is off)"
    if "idf1" not in summary:
        return f"tracks             {summary['tracks']} track ids (no ground truth to score them against)"
    return (
        f"tracks             {summary['tracks']} track ids; {summary['identity_switches']} identity switches "
        f"over {summary['track_frames']} frames ({summary['switches_per_100_frames']} per 100 frames), "
        f"IDF1 {summary['idf1']}, right identity {summary['right_identity_share']}"
    )


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
                target=_publish_camera, args=(publisher, collector, cam, frames, synthetic_fps), daemon=True
            )
            for cam, frames in cameras.items()
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
    summary = summarise(collector, published, dropped, started)
    summary["view_url"] = view.url if view is not None else None
    if options.json_summary:
        options.json_summary.parent.mkdir(parents=True, exist_ok=True)
        options.json_summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary), file=sys.stdout, flush=True)
    return summary


class _ViewServer:
    """The live view under uvicorn in a thread, for as long as the demo runs."""

    def __init__(self, server, thread: threading.Thread, port: int):
        self.server, self.thread, self.port = server, thread, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _start_view(settings: Settings, port: int, metrics_url: str | None) -> _ViewServer | None:
    """Start the view on ``port`` (a free one if it is taken); None, with a warning, if it cannot start."""
    import socket

    import uvicorn

    from workers.client.connection import connect
    from workers.view.web import LiveView, ViewOptions

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = connect(settings.redis_url, cluster=settings.redis_cluster)
    live = LiveView(client, settings, ViewOptions(start="0", metrics_url=metrics_url))
    server = uvicorn.Server(uvicorn.Config(live.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-view", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        log.warning("view_not_started", port=port)
        server.should_exit = True
        return None
    return _ViewServer(server, thread, port)
