"""Canonical example of every wire message: the source of the committed golden files.

The golden ``.msgpack`` files under ``schemas/golden/`` are these examples encoded once; tests
check that decoding them gives these objects and that encoding these objects gives those bytes,
so a change of the encoding cannot slip in unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.wire import (
    WIRE_MESSAGES,
    ActivityChange,
    DeadLetter,
    Frame,
    FramePreview,
    FrameResult,
    PersonEvent,
    WireMessage,
)

GOLDEN_DIR = Path(__file__).parent / "golden"

# The smallest valid PNG (1×1 grey pixel): enough for a frame example.
_PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c63600000000200015de5d4a70000000049454e44ae426082"
)

_KEYPOINTS = [[100.0 + 2 * j, 40.0 + 10 * j, round(0.9 - 0.01 * j, 2)] for j in range(17)]


def examples() -> dict[str, WireMessage]:
    """Golden name → example. The name is the message's kind, except for later v1 additions shown on a
    message of an existing kind (``person_event_tracked``: the optional tracking keys set)."""
    frame = Frame(
        camera_id="lobby-cam:1",
        frame_id=1_764_000_000_000_000,
        ts=1764000000.25,
        image=_PNG_1X1,
        meta={"site": "hq", "floor": 2, "gain": 1.5},
    )
    event = PersonEvent(
        event_id=PersonEvent.make_id(frame.camera_id, frame.frame_id, 0),
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        ts=frame.ts,
        person=0,
        bbox=[90.0, 30.0, 150.0, 220.0],
        score=0.87,
        keypoints=_KEYPOINTS,
        activity="walking",
        activity_scores={"walking": 0.7, "running": 0.2, "sitting": 0.05, "standing": 0.05},
        model="demo-0.1.0",
        width=640,
        height=480,
        latency_ms=42.5,
    )
    result = FrameResult(
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        ts=frame.ts,
        status="ok",
        persons=1,
        event_ids=[event.event_id],
        width=640,
        height=480,
        latency_ms=42.5,
        meta=frame.meta,
    )
    dead = DeadLetter(
        source_id="1764000000000-0",
        reason="bad_image",
        error="image could not be decoded",
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        payload=b"\x86\xa1v\x01",
    )
    tracked = PersonEvent.model_validate(event.to_dict() | {"track_id": 7, "activity_smoothed": "walking"})
    change = ActivityChange(
        camera_id=frame.camera_id,
        track_id=7,
        frame_id=frame.frame_id,
        ts=frame.ts,
        activity="running",
        previous="walking",
        score=0.64,
    )
    preview = FramePreview(
        camera_id=frame.camera_id, frame_id=frame.frame_id, ts=frame.ts, image=_PNG_1X1, width=640, height=480
    )
    live = Frame.model_validate(frame.to_dict() | {"max_age_s": 2.0})
    named = {m.kind: m for m in (frame, event, result, dead, change, preview)}
    named["frame_live"] = live
    named["person_event_tracked"] = tracked
    return named


def write_golden(out_dir: Path = GOLDEN_DIR) -> list[Path]:
    """Write ``<kind>.msgpack`` for each example and ``<kind>.schema.json`` for each message type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, message in examples().items():
        path = out_dir / f"{name}.msgpack"
        path.write_bytes(message.to_bytes())
        written.append(path)
    written += write_json_schemas(out_dir)
    return written


def write_json_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cls in WIRE_MESSAGES:
        path = out_dir / f"{cls.kind}.schema.json"
        schema = cls.model_json_schema(mode="validation")
        schema["$comment"] = "posestream wire format v1: a msgpack map in the stream entry field 'msg'"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
