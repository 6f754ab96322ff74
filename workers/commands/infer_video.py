"""``posestream infer VIDEO``: the single-process pipeline with tracking over a video file.

Writes OUT/<name>.webm (annotated: boxes, skeletons, ``#track`` and smoothed activity), optionally a PNG
per frame (OUT/<name>/), OUT/<name>.jsonl in the format of ``posestream events --json --results`` (so
``posestream annotate`` can draw it again) and a strip of annotated frames; prints one PersonEvent JSON
per person on stdout and a line per frame on stderr.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from workers.paths import safe_child


@dataclass(frozen=True)
class VideoOutputs:
    png: bool = False
    json_lines: bool = False
    blur_faces: bool = False
    strip: Path | None = None
    max_frames: int | None = None


@dataclass(frozen=True)
class VideoSummary:
    video: Path
    frames: int
    person_frames: int
    tracks: int
    fps: float

    def line(self, source: Path) -> str:
        return (
            f"{source} → {self.video}: {self.frames} frames, {self.person_frames} person-frames, "
            f"{self.tracks} track(s)"
        )


def _events(camera_id: str, model_version: str, frame, ts: float) -> list:
    from schemas.wire import PersonEvent

    height, width = frame.image.shape[:2]
    return [
        PersonEvent(
            event_id=PersonEvent.make_id(camera_id, frame.index, index),
            camera_id=camera_id,
            frame_id=frame.index,
            ts=ts,
            person=index,
            model=model_version,
            width=width,
            height=height,
            latency_ms=frame.seconds * 1000.0,
            track_id=tracked.track_id,
            activity_smoothed=tracked.activity_smoothed,
            **person.to_plain(),
        )
        for index, (person, tracked) in enumerate(zip(frame.persons, frame.tracked, strict=True))
    ]


def _result(camera_id: str, frame, ts: float, events: list, source: str):
    from schemas.wire import FrameResult

    height, width = frame.image.shape[:2]
    return FrameResult(
        camera_id=camera_id, frame_id=frame.index, ts=ts, status="ok", persons=len(events),
        event_ids=[event.event_id for event in events], width=width, height=height,
        latency_ms=frame.seconds * 1000.0, meta={"source": source[:120], "frame_index": frame.index},
    )  # fmt: skip


def run_video(pipeline, path: Path, out: Path, outputs: VideoOutputs) -> VideoSummary:
    """Infer, track and draw every frame of the video at ``path``."""
    import itertools

    from model.video import AnnotatedVideo, save_strip, strip_indices, track_frames
    from workers.client.sources import camera_id_for, video_fps, video_frames
    from workers.commands.events import message_json

    camera_id = camera_id_for(str(path))
    fps = video_fps(str(path)) or 25.0
    frames = itertools.islice(video_frames(str(path)), outputs.max_frames)
    video_path = safe_child(out, camera_id, ".webm")
    jsonl = safe_child(out, camera_id, ".jsonl").open("w") if outputs.json_lines else None
    drawn_frames: list[np.ndarray] = []
    person_frames, track_ids = 0, set()
    started = time.time()
    try:
        with AnnotatedVideo(video_path, fps, safe_child(out, camera_id) if outputs.png else None) as video:
            for frame in track_frames(pipeline, frames):
                ts = started + frame.index / fps  # the frame's time in the video, from the start of the run
                events = _events(camera_id, pipeline.model_version, frame, ts)
                drawn = frame.draw(blur=outputs.blur_faces)
                video.write(drawn, frame.index)
                if outputs.strip is not None:
                    drawn_frames.append(drawn)
                for event in events:
                    typer.echo(json.dumps(event.to_dict()))
                if jsonl is not None:
                    for message in [*events, _result(camera_id, frame, ts, events, path.name)]:
                        jsonl.write(json.dumps(message_json(message), separators=(",", ":")) + "\n")
                person_frames += len(events)
                track_ids.update(t.track_id for t in frame.tracked)
                labels = ", ".join(f"#{t.track_id} {t.activity_smoothed}" for t in frame.tracked) or "nobody"
                typer.echo(f"frame {frame.index}: {labels} ({frame.seconds * 1000:.0f} ms)", err=True)
    finally:
        if jsonl is not None:
            jsonl.close()
    if video.frames == 0:
        raise ValueError(f"{path}: OpenCV read no frame from this video")
    if outputs.strip is not None:
        save_strip([drawn_frames[i] for i in strip_indices(len(drawn_frames))], outputs.strip)
    return VideoSummary(video_path, video.frames, person_frames, len(track_ids), fps)
