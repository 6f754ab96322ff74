"""Annotated video: a WebM (VP8) a browser plays, optional PNGs per frame, a strip of frames, and the
single-process pipeline with tracking over a sequence of frames.

OpenCV's pip wheel has no H.264 encoder (its FFmpeg lacks libx264 and ``avc1`` fails to open), but it
encodes VP8 into WebM, which every current browser plays. VP8 wants even sides: odd frames get a one-pixel
border rather than losing a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from model.predictions import PersonPrediction
from model.tracking import TrackedPerson, TrackerConfig, TrackerState, update

WEBM_FOURCC = "VP80"
STRIP_FRAMES = 4


class AnnotatedVideo:
    """Writes frames to ``path`` (.webm, VP8) and, with ``png_dir``, each as ``png_dir/<index>.png``."""

    def __init__(self, path: str | Path, fps: float, png_dir: str | Path | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        if self.path.suffix.lower() != ".webm":
            raise ValueError(f"the annotated video is WebM: {self.path} must end in .webm")
        self.fps = float(fps)
        self.png_dir = Path(png_dir) if png_dir is not None else None
        self.frames = 0
        self.size: tuple[int, int] | None = None  # width, height of the frames given
        self._writer: cv2.VideoWriter | None = None

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
        even = (width + width % 2, height + height % 2)
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*WEBM_FOURCC), self.fps, even)
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot open a VP8 WebM writer for {self.path}")
        self._writer, self.size = writer, (width, height)

    def write(self, image_bgr: np.ndarray, index: int | None = None) -> None:
        """Append a frame; ``index`` names its PNG (default: its position in the video)."""
        height, width = image_bgr.shape[:2]
        if self._writer is None:
            self._open(width, height)
        elif (width, height) != self.size:
            raise ValueError(f"frame of {width}x{height} in a video of {self.size[0]}x{self.size[1]}")
        padded = cv2.copyMakeBorder(image_bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        self._writer.write(np.ascontiguousarray(padded))
        if self.png_dir is not None:
            name = self.png_dir / f"{self.frames if index is None else index:06d}.png"
            if not cv2.imwrite(str(name), image_bgr):
                raise RuntimeError(f"cannot write {name}")
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> AnnotatedVideo:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def strip_indices(frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """``count`` frame indices spread over a video, leaving out the first frames (no track history yet)."""
    if frames < 1:
        raise ValueError("a strip needs at least one frame")
    start = min(frames - 1, frames // (2 * count))
    return sorted({round(start + (frames - 1 - start) * i / max(count - 1, 1)) for i in range(count)})


def save_strip(images: Sequence[np.ndarray], path: str | Path, max_bytes: int = 300_000) -> Path:
    """The frames side by side as one PNG, scaled down until the file holds at most ``max_bytes``."""
    if not images:
        raise ValueError("a strip needs at least one frame")
    height = min(image.shape[0] for image in images)
    row = np.hstack([cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height)) for im in images])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 1.0
    while True:
        size = (max(1, round(row.shape[1] * scale)), max(1, round(row.shape[0] * scale)))
        small = cv2.resize(row, size, interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".png", small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise RuntimeError("cannot encode the strip as PNG")
        if len(encoded) <= max_bytes or size[1] <= 32:
            break
        scale *= 0.85
    path.write_bytes(encoded.tobytes())
    return path


@dataclass(frozen=True)
class TrackedFrame:
    index: int
    image: np.ndarray  # BGR, as given
    persons: list[PersonPrediction]
    tracked: list[TrackedPerson]  # one per person, same order
    seconds: float  # the pipeline's time on this frame

    def draw(self, blur: bool = False) -> np.ndarray:
        from model.draw import draw_predictions
        from model.privacy import blur_faces

        image = blur_faces(self.image, self.persons) if blur else self.image
        return draw_predictions(
            image,
            self.persons,
            [t.track_id for t in self.tracked],
            [t.activity_smoothed for t in self.tracked],
        )


def track_frames(
    pipeline, frames: Iterable[np.ndarray], config: TrackerConfig | None = None
) -> Iterator[TrackedFrame]:
    """``pipeline.predict`` (a ``PosePipeline``) frame by frame, then the tracker; the state is a value
    passed from one frame to the next, frame ids are the frames' positions."""
    import time

    config = config or TrackerConfig()
    state = TrackerState()
    for index, image in enumerate(frames):
        started = time.perf_counter()
        persons = pipeline.predict([image])[0]
        state, tracked = update(state, index, persons, config)
        yield TrackedFrame(index, image, persons, tracked, time.perf_counter() - started)
