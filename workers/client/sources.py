"""Frame sources for ``posestream publish``: an image, a folder of images, a video file, or a live
OpenCV capture (RTSP/HTTP URL or a webcam index).

Each yields ``(frame, ts)``: ``frame`` is a JPEG/PNG file's bytes (images are sent as they are) or a
BGR uint8 array (decoded video), ``ts`` the capture time in seconds since the epoch. ``indexed()`` also
gives each frame's index within its source (image number in the sorted folder, frame number in a video or
capture; it starts again at 0 when ``loop`` starts the source again): ``meta.frame_index`` on the wire.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
WIRE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})  # sent as they are; others are re-encoded
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
_LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")

Frame = bytes | np.ndarray


class SourceError(ValueError):
    """The source does not exist, cannot be opened, or holds no frame."""


def camera_id_for(spec: str) -> str:
    """A camera id derived from a source: the file/folder name, ``webcam<N>``, or a URL's host/path."""
    if spec.isdigit():
        return f"webcam{spec}"
    if spec.startswith(_LIVE_PREFIXES):
        name = spec.split("://", 1)[1].split("@")[-1]
    else:
        path = Path(spec)
        name = path.stem if path.is_file() else path.name or path.resolve().name
    name = re.sub(r"[^A-Za-z0-9._:-]+", "-", name).strip("-")
    return name[:128] or "camera"


@dataclass
class FrameSource:
    """A source of frames, paced to ``fps`` when given (None or 0: as fast as they come)."""

    spec: str
    fps: float | None = None
    loop: bool = False
    max_frames: int | None = None

    def __post_init__(self) -> None:
        self.kind = _kind_of(self.spec)
        if self.kind == "folder" and not _folder_images(Path(self.spec)):
            raise SourceError(f"no image ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.spec}")
        if self.kind == "video" and self.fps is None:
            self.fps = video_fps(self.spec)  # a file plays at its own rate unless told otherwise

    @property
    def camera_id(self) -> str:
        return camera_id_for(self.spec)

    def __iter__(self) -> Iterator[tuple[Frame, float]]:
        for _index, frame, ts in self.indexed():
            yield frame, ts

    def indexed(self) -> Iterator[tuple[int, Frame, float]]:
        """``(frame index within the source, frame, ts)``, paced like iterating the source."""
        interval = 1.0 / self.fps if self.fps else 0.0
        next_due = time.monotonic()
        for count, (index, frame) in enumerate(self._frames()):
            if self.max_frames is not None and count >= self.max_frames:
                return
            if interval:
                delay = next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                # A late frame does not make the next ones early: pace from now when behind.
                next_due = max(next_due + interval, time.monotonic())
            yield index, frame, time.time()

    def _frames(self) -> Iterator[tuple[int, Frame]]:
        while True:
            produced = 0
            for index, frame in enumerate(self._one_pass()):
                produced += 1
                yield index, frame
            if not self.loop or self.kind == "live":
                return
            if produced == 0:
                raise SourceError(f"{self.spec} gave no frame")

    def _one_pass(self) -> Iterator[Frame]:
        if self.kind == "image":
            yield _read_image(Path(self.spec))
        elif self.kind == "folder":
            for path in _folder_images(Path(self.spec)):
                yield _read_image(path)
        else:
            yield from video_frames(self.spec)


def _kind_of(spec: str) -> str:
    if spec.isdigit() or spec.startswith(_LIVE_PREFIXES):
        return "live"
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise SourceError(f"no such file, folder or capture URL: {spec}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise SourceError(f"unknown file type {suffix!r}: {spec} (images: {sorted(IMAGE_SUFFIXES)})")


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> bytes:
    """The file's bytes when they are JPEG/PNG already, else the image re-encoded as PNG."""
    if path.suffix.lower() in WIRE_SUFFIXES:
        return path.read_bytes()
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"cannot decode image {path}")
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise SourceError(f"cannot re-encode image {path}")
    return buf.tobytes()


def _open_capture(spec: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(int(spec)) if spec.isdigit() else cv2.VideoCapture(spec)
    if not capture.isOpened():
        from workers.redacting import redact_url  # a capture URL may hold the camera's password

        raise SourceError(f"OpenCV cannot open {redact_url(spec)}")
    return capture


def video_fps(spec: str) -> float | None:
    """The video's frame rate as its container states it, None when it states none (or nonsense)."""
    capture = _open_capture(spec)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return fps if 0 < fps <= 1000 else None


def video_frames(spec: str) -> Iterator[np.ndarray]:
    """Every frame of a video file or capture, in order (the numbering of ``indexed``)."""
    capture = _open_capture(spec)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return  # end of file, or a live stream that ended
            yield frame
    finally:
        capture.release()
