"""Checkpoints are data, never code: a file holding Python objects is refused, and the default
checkpoint's bytes must have the sha256 its card records."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import model.checkpoint as checkpoint_module
from model.checkpoint import (
    DEFAULT_CHECKPOINT,
    FORMAT,
    FORMAT_VERSION,
    CheckpointDigestError,
    CheckpointError,
    UnsafeCheckpointError,
    card_path,
    load_checkpoint,
    read_checkpoint,
    recorded_sha256,
)

MARKER_NAME = "code-ran"


class Payload:
    """A class instance: unpickling it would import and build an arbitrary class."""

    def __init__(self):
        self.value = 1


class Exploit:
    """The classic pickle attack: unpickling calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint_like(extra: object) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "version": "x", "parts": {}, "extra": extra}


@pytest.mark.parametrize("kind", ["function", "instance", "reduce"])
def test_a_file_holding_code_objects_is_refused_naming_the_file(kind, tmp_path):
    # A lambda cannot be pickled at all (torch.save fails); a function is pickled by reference, as code.
    marker = tmp_path / MARKER_NAME
    objects = {"function": os.getcwd, "instance": Payload(), "reduce": Exploit(marker)}
    path = tmp_path / f"evil-{kind}.pt"
    torch.save(_checkpoint_like({"hook": objects[kind]}), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "refused" in message and "weights_only=True" in message
    expected_global = {"function": "getcwd", "instance": "Payload", "reduce": "system"}[kind]
    assert expected_global in message  # which object it was
    assert "weights_only` set to `False`" not in message  # torch's advice to turn the guard off is dropped
    assert not marker.exists(), "unpickling ran the file's code"
    assert isinstance(info.value, CheckpointError)  # callers that catch CheckpointError still do


def test_a_damaged_file_is_a_plain_checkpoint_error(tmp_path):
    path = tmp_path / "damaged.pt"
    path.write_bytes(b"\x80\x04not a zip and not a pickle")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in str(info.value)


def test_the_default_checkpoint_matches_the_digest_in_its_card():
    assert DEFAULT_CHECKPOINT.is_file(), f"the demo checkpoint is committed at {DEFAULT_CHECKPOINT}"
    digest = recorded_sha256(DEFAULT_CHECKPOINT)
    assert digest is not None and len(digest) == 64
    assert read_checkpoint(DEFAULT_CHECKPOINT)["format"] == FORMAT  # checked, and it passes


@pytest.fixture
def default_copy(tmp_path, monkeypatch):
    """A copy of the packaged default checkpoint and its card, made the default (as package data is
    found: the loader compares against DEFAULT_CHECKPOINT)."""
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the demo checkpoint is committed at {DEFAULT_CHECKPOINT}")
    copy = tmp_path / "weights" / "demo.pt"
    copy.parent.mkdir()
    shutil.copyfile(DEFAULT_CHECKPOINT, copy)
    shutil.copyfile(card_path(DEFAULT_CHECKPOINT), card_path(copy))
    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", copy)
    return copy


def test_a_default_checkpoint_with_one_byte_changed_is_refused(default_copy):
    read_checkpoint(default_copy)  # the intact copy loads
    data = bytearray(default_copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside some tensor: torch alone would load it without a word
    default_copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointDigestError) as info:
        load_checkpoint(default_copy)
    message = str(info.value)
    assert str(default_copy) in message and recorded_sha256(default_copy) in message
    assert "card" in message


def test_the_same_changed_bytes_elsewhere_are_not_checked(default_copy, tmp_path):
    """The digest guards the default checkpoint; a user's own file has no recorded digest to hold it to."""
    data = bytearray(default_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    other = tmp_path / "mine.pt"
    other.write_bytes(bytes(data))
    assert read_checkpoint(other)["format"] == FORMAT


def test_a_default_checkpoint_whose_card_lost_its_digest_is_refused(default_copy):
    card = card_path(default_copy)
    card.write_text(card.read_text().replace("sha256", "sha-256"))
    with pytest.raises(CheckpointDigestError, match="records no sha256"):
        read_checkpoint(default_copy)
    card.unlink()
    with pytest.raises(CheckpointDigestError, match="records no sha256"):
        read_checkpoint(default_copy)
