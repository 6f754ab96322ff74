"""One checkpoint file for the whole network, written part by part.

Layout (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    format: "posestream-multiposenet", format_version: 1,
    version: str, config: ModelConfig as JSON-able dict, activities: [...], keypoint_names: [...],
    trained_parts: [...], dtype: "float32" | "float16", extra: {...},
    parts: {"keypoint": state, "detection": state, "prn": state, "activity": state}

The four parts are trained separately (as in the seed); a trainer writes its own with
``update_checkpoint_part`` and the others stay as they were.

Loading never runs code: ``weights_only=True`` unpickles tensors and plain data only, and a file holding
anything else (a function, a class instance, a ``__reduce__`` payload) is refused (``UnsafeCheckpointError``).
The default checkpoint is also checked against the sha256 its card records (``CheckpointDigestError``): a
damaged file, a Git LFS pointer or a swapped file fails at load, not as wrong persons later.

``load_part`` builds one single-module part (PRN, activity) alone, with the same checks: a Serve replica of
the PRN or activity stage then holds neither the backbone's weights nor torchvision (README, "Memory"). So
this module imports the network classes only inside the functions that build them.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from model.config import ModelConfig
from model.predictions import COCO_KEYPOINT_NAMES

if TYPE_CHECKING:
    from torch import nn

    from model.multiposenet import MultiPoseNet

FORMAT = "posestream-multiposenet"
FORMAT_VERSION = 1
# The committed demo checkpoint is package data of ``model`` (model/weights/demo.pt, card demo.md beside
# it): found the same way in a checkout, an editable install and an installed wheel, whatever the cwd.
DEFAULT_CHECKPOINT = Path(str(files("model") / "weights" / "demo.pt"))
# The card's "file:" line, as model/evaluation/demo_weights.py writes it: the tool that writes the weights
# writes their digest, so a rebuilt checkpoint and its recorded digest cannot drift apart.
# the card's own "- file:" line, not the digest of an input checkpoint it names
_CARD_SHA256 = re.compile(r"^- file: .*sha256 `([0-9a-f]{64})`", re.MULTILINE)
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# The parts a stage runs alone, each one module of the network: part → (module, class). Its state dict keys
# are prefixed with the part's name (MultiPoseNet's attribute, model.multiposenet.PARTS). The backbone
# stage needs the keypoint and detection parts together (the whole detector): load_checkpoint.
SINGLE_MODULE_PARTS: dict[str, tuple[str, str]] = {
    "prn": ("model.prn", "PoseResidualNetwork"),
    "activity": ("model.activity", "ActivityClassifier"),
}


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not match the network it describes."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds Python objects other than tensors and plain data: refused, never unpickled."""


class CheckpointDigestError(CheckpointError):
    """The default checkpoint's bytes do not have the sha256 its card records."""


def card_path(path: Path) -> Path:
    """The card (demo.md) beside a checkpoint (demo.pt)."""
    return path.with_suffix(".md")


def recorded_sha256(path: str | Path) -> str | None:
    """The sha256 a checkpoint's card records, None when there is no card or no digest in it."""
    card = card_path(Path(path))
    if not card.is_file():
        return None
    match = _CARD_SHA256.search(card.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def _is_default(path: Path) -> bool:
    try:
        return path.resolve() == DEFAULT_CHECKPOINT.resolve()
    except OSError:
        return False


def _verified_bytes(path: Path) -> bytes:
    """The default checkpoint's bytes once their sha256 matches its card's (read once: the bytes checked
    are the bytes loaded)."""
    card = card_path(path)
    expected = recorded_sha256(path)
    if expected is None:
        raise CheckpointDigestError(
            f"{path}: the default checkpoint's card {card} records no sha256 to check it against"
        )
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointDigestError(
            f"{path}: sha256 {actual} is not the {expected} its card {card} records: the file is damaged or "
            "not the checkpoint its card describes (a partial copy, a Git LFS pointer?)"
        )
    return data


def _state_for_disk(state: Mapping[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        value = value.detach().cpu()
        out[key] = value.half() if half and value.is_floating_point() else value.clone()
    return out


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Through a file object: torch.save then names the archive after nothing random, so the same
        # weights give the same bytes (the demo checkpoint is reproducible for a seed).
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path,
    model: MultiPoseNet,
    version: str = "dev",
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
    trained_parts: Iterable[str] | None = None,
) -> Path:
    """Write the whole model. ``trained_parts`` defaults to ``model.trained_parts``; ``half`` stores
    floating-point tensors as float16 (they are cast back to float32 on load)."""
    from model.multiposenet import PARTS

    path = Path(path)
    parts = set(model.trained_parts if trained_parts is None else trained_parts)
    unknown = parts - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; parts are {sorted(PARTS)}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": str(version),
        "config": model.config.model_dump(mode="json"),
        "activities": list(model.activities),
        "keypoint_names": list(COCO_KEYPOINT_NAMES),
        "trained_parts": sorted(parts),
        "dtype": "float16" if half else "float32",
        "extra": dict(extra or {}),
        "parts": {part: _state_for_disk(model.part_state_dict(part), half) for part in PARTS},
    }
    atomic_save(payload, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw, validated payload (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    source: Path | io.BytesIO = io.BytesIO(_verified_bytes(path)) if _is_default(path) else path
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSAFE_GLOBAL.search(str(exc))
        if found is None:  # a damaged pickle (an unknown opcode), not a refused object
            raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
        # torch's own message suggests weights_only=False: never here, whatever the file says.
        raise UnsafeCheckpointError(
            f"{path} holds Python objects, not only weights ({found.group(1)}): refused. Checkpoints are "
            "loaded with weights_only=True and never run code they carry; write one with save_checkpoint."
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a posestream checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format version {payload.get('format_version')!r}"
        )
    missing = [
        key for key in ("version", "config", "parts", "activities", "trained_parts") if key not in payload
    ]
    if missing or not isinstance(payload["parts"], dict):
        raise CheckpointError(f"{path}: checkpoint lacks {missing or ['parts']}")
    if list(payload.get("keypoint_names", COCO_KEYPOINT_NAMES)) != list(COCO_KEYPOINT_NAMES):
        raise CheckpointError(f"{path}: keypoints are not the 17 COCO joints in COCO order")
    return payload


def _config_of(payload: dict[str, Any], path: Path) -> ModelConfig:
    try:
        config = ModelConfig.model_validate(payload["config"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from exc
    if list(config.activities) != list(payload["activities"]):
        raise CheckpointError(f"{path}: activity classes {payload['activities']} do not match the config")
    return config


def load_checkpoint(
    path: str | Path, map_location: torch.device | str | None = None
) -> tuple[MultiPoseNet, dict[str, Any]]:
    """Build the network the checkpoint describes and load all four parts strictly.

    Returns the model (eval mode, float32, on ``map_location`` or CPU) and the metadata (everything but
    the weights)."""
    from model.multiposenet import PARTS, MultiPoseNet

    path = Path(path)
    payload = read_checkpoint(path)
    config = _config_of(payload, path)
    model = MultiPoseNet(config)
    for part in PARTS:
        if part not in payload["parts"]:
            raise CheckpointError(f"{path}: part {part!r} missing")
        try:
            model.load_part_state_dict(part, payload["parts"][part])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: part {part!r} does not match its config: {exc}") from exc
    model.trained_parts = set(payload["trained_parts"]) & set(PARTS)
    model.eval()
    if map_location is not None:
        model.to(map_location)
    meta = {key: value for key, value in payload.items() if key != "parts"}
    return model, meta


def update_checkpoint_part(
    path: str | Path,
    part: str,
    source: MultiPoseNet | Mapping[str, torch.Tensor],
    trained: bool = True,
    version: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Replace one part of a checkpoint (creating the file from ``source`` when it is a model and the file
    does not exist yet). The part is checked against the checkpoint's config before writing."""
    from model.multiposenet import PARTS, MultiPoseNet

    path = Path(path)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; parts are {sorted(PARTS)}")
    if not path.exists():
        if not isinstance(source, MultiPoseNet):
            raise CheckpointError(f"{path} does not exist; pass the whole model to create it")
        parts = set(source.trained_parts) | ({part} if trained else set())
        return save_checkpoint(path, source, version=version or "dev", extra=extra, trained_parts=parts)
    payload = read_checkpoint(path)
    config = _config_of(payload, path)
    state = source.part_state_dict(part) if isinstance(source, MultiPoseNet) else dict(source)
    try:  # a model of the file's config must accept it
        MultiPoseNet(config).load_part_state_dict(part, state)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"part {part!r} does not match the config in {path}: {exc}") from exc
    payload["parts"][part] = _state_for_disk(state, payload.get("dtype") == "float16")
    parts = set(payload["trained_parts"])
    parts = parts | {part} if trained else parts - {part}
    payload["trained_parts"] = sorted(parts)
    if version is not None:
        payload["version"] = str(version)
    if extra:
        payload["extra"] = {**payload.get("extra", {}), **dict(extra)}
    atomic_save(payload, path)
    return path


def load_part(
    path: str | Path, part: str, map_location: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build one part of the network alone (``SINGLE_MODULE_PARTS``: ``prn`` or ``activity``) from the
    checkpoint's config and that part's state, loaded strictly, with the checks of ``load_checkpoint``
    (weights only, the default checkpoint's sha256). Nothing of the other parts is built or kept.

    Returns the module (eval mode, float32, on ``map_location`` or CPU) and the metadata (everything but
    the weights), as ``load_checkpoint`` does."""
    if part not in SINGLE_MODULE_PARTS:
        raise ValueError(
            f"part {part!r} cannot be loaded alone; single-module parts are {sorted(SINGLE_MODULE_PARTS)} "
            "(the backbone stage needs the whole detector: load_checkpoint)"
        )
    path = Path(path)
    payload = read_checkpoint(path)
    config = _config_of(payload, path)
    state = payload["parts"].get(part)
    if state is None:
        raise CheckpointError(f"{path}: part {part!r} missing")
    module_name, class_name = SINGLE_MODULE_PARTS[part]
    module: nn.Module = getattr(importlib.import_module(module_name), class_name)(config)
    prefix = f"{part}."
    try:
        unknown = [key for key in state if not key.startswith(prefix)]
        if unknown:
            raise RuntimeError(f"unexpected keys in part {part!r}: {unknown[:5]}")
        module.load_state_dict({key[len(prefix) :]: value for key, value in state.items()}, strict=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: part {part!r} does not match its config: {exc}") from exc
    module.eval()
    if map_location is not None:
        module.to(map_location)
    meta = {key: value for key, value in payload.items() if key != "parts"}
    return module, meta
