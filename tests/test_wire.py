"""The wire contract: round trips, golden bytes, and every validation rule (table-driven)."""

from __future__ import annotations

import json

import jsonschema
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.examples import GOLDEN_DIR, examples
from schemas.wire import WIRE_MESSAGES, DeadLetter, Frame, FrameResult, PersonEvent, WireDecodeError

EXAMPLES = examples()
BY_KIND = {cls.kind: cls for cls in WIRE_MESSAGES}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip(name):
    message = EXAMPLES[name]
    decoded = type(message).from_bytes(message.to_bytes())
    assert decoded == message
    assert decoded.to_bytes() == message.to_bytes()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_golden_file_decodes_to_example_and_encoding_is_stable(name):
    golden = (GOLDEN_DIR / f"{name}.msgpack").read_bytes()
    assert type(EXAMPLES[name]).from_bytes(golden) == EXAMPLES[name]
    assert EXAMPLES[name].to_bytes() == golden


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_golden_file_matches_committed_json_schema(name):
    schema = json.loads((GOLDEN_DIR / f"{EXAMPLES[name].kind}.schema.json").read_text())
    obj = msgpack.unpackb((GOLDEN_DIR / f"{name}.msgpack").read_bytes(), raw=False)
    # JSON Schema has no bytes type: check the rest of the map, bytes replaced by a string.
    jsonable = {k: ("<bytes>" if isinstance(v, bytes) else v) for k, v in obj.items()}
    jsonschema.validate(jsonable, schema)
    assert schema["required"][0] == "v"


def test_unknown_keys_are_ignored():
    obj = EXAMPLES["frame"].to_dict() | {"future_key": [1, 2, 3], "x-extra": {"a": 1}}
    assert Frame.from_bytes(msgpack.packb(obj, use_bin_type=True)) == EXAMPLES["frame"]


def test_messages_are_frozen():
    with pytest.raises(ValidationError):
        EXAMPLES["frame"].frame_id = 7  # type: ignore[misc]


def _frame(**changes):
    obj = EXAMPLES["frame"].to_dict() | changes
    return {k: v for k, v in obj.items() if v is not _DROP}


_DROP = object()

FRAME_REJECTS = [
    ("v", {"v": 2}),
    ("v", {"v": _DROP}),
    ("v", {"v": "1"}),
    ("camera_id", {"camera_id": ""}),
    ("camera_id", {"camera_id": "a" * 129}),
    ("camera_id", {"camera_id": "cam/1"}),
    ("camera_id", {"camera_id": "cam 1"}),
    ("camera_id", {"camera_id": 12}),
    ("camera_id", {"camera_id": _DROP}),
    ("frame_id", {"frame_id": -1}),
    ("frame_id", {"frame_id": "3"}),
    ("frame_id", {"frame_id": 3.0}),
    ("frame_id", {"frame_id": _DROP}),
    ("ts", {"ts": "now"}),
    ("image", {"image": "not-bytes"}),
    ("image", {"image": b""}),
    ("image", {"image": _DROP}),
    ("meta", {"meta": {"k": [1, 2]}}),
    ("meta", {"meta": "flat"}),
]


@pytest.mark.parametrize(("field", "changes"), FRAME_REJECTS)
def test_frame_validation_names_the_field(field, changes):
    with pytest.raises(ValidationError) as info:
        Frame.from_bytes(msgpack.packb(_frame(**changes), use_bin_type=True))
    assert field in {err["loc"][0] for err in info.value.errors()}


def _event(**changes):
    return EXAMPLES["person_event"].to_dict() | changes


EVENT_REJECTS = [
    ("keypoints", {"keypoints": [[1.0, 2.0, 0.5]] * 16}),
    ("keypoints", {"keypoints": [[1.0, 2.0]] * 17}),
    ("bbox", {"bbox": [1.0, 2.0, 3.0]}),
    ("person", {"person": -1}),
    ("width", {"width": -5}),
    ("latency_ms", {"latency_ms": -1.0}),
    ("activity_scores", {"activity_scores": {"walking": "high"}}),
]


@pytest.mark.parametrize(("field", "changes"), EVENT_REJECTS)
def test_event_validation_names_the_field(field, changes):
    with pytest.raises(ValidationError) as info:
        PersonEvent.from_bytes(msgpack.packb(_event(**changes), use_bin_type=True))
    assert field in {err["loc"][0] for err in info.value.errors()}


def test_result_status_is_closed_set():
    obj = EXAMPLES["frame_result"].to_dict() | {"status": "maybe"}
    with pytest.raises(ValidationError) as info:
        FrameResult.from_bytes(msgpack.packb(obj, use_bin_type=True))
    assert info.value.errors()[0]["loc"][0] == "status"


def test_dead_letter_without_frame_identity():
    dead = DeadLetter(source_id="1-0", reason="not_msgpack", error="garbage", payload=b"\x00\xff")
    assert DeadLetter.from_bytes(dead.to_bytes()) == dead


@pytest.mark.parametrize(
    "data", [b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb("a string"), b"\x81\x01\x02"]
)
def test_not_a_msgpack_map_is_a_decode_error(data):
    with pytest.raises(WireDecodeError):
        Frame.from_bytes(data)


@given(
    camera_id=st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
    frame_id=st.integers(min_value=0, max_value=2**63 - 1),
    ts=st.floats(allow_nan=False, allow_infinity=False),
    image=st.binary(min_size=1, max_size=64),
    meta=st.none() | st.dictionaries(st.text(max_size=8), st.integers(-(2**31), 2**31) | st.text(max_size=8)),
)
def test_any_valid_frame_round_trips(camera_id, frame_id, ts, image, meta):
    frame = Frame(camera_id=camera_id, frame_id=frame_id, ts=ts, image=image, meta=meta)
    assert Frame.from_bytes(frame.to_bytes()) == frame
