"""ONNX export of the three networks: the backbone stage's graph, the PRN and the activity MLP.

* ``backbone.onnx`` — images (B, 3, H, W) preprocessed → raw head outputs: ``heatmaps`` (B, 18, H/4, W/4),
  ``cls_logits`` (B, A, 1), ``bbox_regression`` (B, A, 4) (A = anchors over P3–P7). Batch, height and
  width are dynamic (test-time augmentation runs other canvases). Anchors, box decoding, NMS and peak
  extraction stay outside the graph: ``model.onnx_backend`` runs the very torch code the torch stage runs.
* ``prn.onnx`` — grids (N, 17, grid_h, grid_w) → per-joint probabilities of the same shape; N dynamic.
* ``activity.onnx`` — features (N, 51) → logits (N, n_classes); N dynamic.
* ``manifest.json`` — ``OnnxManifest``: model version, the weights' fingerprint, input size, graph names;
  after ``--int8`` (``model.onnx_quantize``) the backbone graph is ``backbone.int8.onnx`` and
  ``quantization`` says how it was made (the fp32 ``backbone.onnx`` stays beside it).

torch's exporter is its dynamo path (``torch.export``), which needs ``onnx`` and ``onnxscript``: the
``onnx`` extra (``pip install 'posestream[onnx]'``), checked first so a missing one fails with that name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import structlog
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from model.multiposenet import MultiPoseNet, PoseDetector
from model.predictions import NUM_KEYPOINTS

FORMAT = "posestream-onnx"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GRAPHS = ("backbone", "prn", "activity")
BACKBONE_OUTPUTS = ("heatmaps", "cls_logits", "bbox_regression")
OPSET = 18  # what onnxruntime ≥ 1.20 runs in full
EXTRA_HINT = "pip install 'posestream[onnx]' (onnx, onnxscript, onnxruntime)"


class OnnxExtraMissing(ValueError):
    """A package of the ``onnx`` extra is not installed. A ValueError, so that the places that report a bad
    setting (``infer``'s error line, a Serve reconfigure) report ``backend: onnx`` without it the same way."""


def require(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise OnnxExtraMissing(f"the ONNX backend needs {', '.join(missing)}: {EXTRA_HINT}")


class OnnxGraph(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    inputs: dict[str, tuple[int | str, ...]]  # name → shape, a str for a dynamic axis
    outputs: tuple[str, ...]


class OnnxQuantization(BaseModel):
    """How the backbone graph was quantised (``model.onnx_quantize``); absent for an fp32 export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: str
    float_file: str  # the fp32 graph it was made from, kept beside it
    calibration_images: int
    calibration_seed: int
    calibration_source: str


class OnnxManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    model_version: str
    weights_sha256: str  # of the backbone stage's weights: ``detector_fingerprint``
    preset: str
    input_size: tuple[int, int]  # the canvas the pipeline letterboxes onto (the graph takes others too)
    pixel_mean_bgr: tuple[float, float, float]
    activities: tuple[str, ...]
    opset: int
    exporter: str
    torch_version: str
    graphs: dict[str, OnnxGraph]
    quantization: OnnxQuantization | None = None  # None: every graph fp32 (format v1 readers never wrote it)

    @classmethod
    def read(cls, folder: Path) -> OnnxManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ValueError(f"{folder} holds no {MANIFEST}: not a `posestream export onnx` folder")
        manifest = cls.model_validate_json(path.read_text())
        if manifest.format != FORMAT or manifest.format_version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format {manifest.format} v{manifest.format_version} is not {FORMAT} v1"
            )
        return manifest


class DetectorGraph(nn.Module):
    """The backbone stage up to its raw head outputs (``PoseDetector._run_view`` before postprocess)."""

    def __init__(self, detector: PoseDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        detector = self.detector
        features = detector.backbone(images)
        heatmaps, _ = detector.keypoint_head(detector.keypoint_fpn(features))
        outputs = detector.detection_head(images, detector.detection_fpn(features))
        return heatmaps, outputs["cls_logits"], outputs["bbox_regression"]


def detector_fingerprint(model: MultiPoseNet) -> str:
    """sha256 of the backbone stage's weights (names, shapes, values): an export is for these weights.
    Settings outside the graph (input size, thresholds, …) are left out: the graph serves any of them."""
    digest = hashlib.sha256(f"{FORMAT}:{model.config.backbone_depth}".encode())
    for part in ("keypoint", "detection"):
        state = model.part_state_dict(part)
        for key in sorted(state):
            digest.update(f"{key}:{tuple(state[key].shape)}".encode())
            digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(module: nn.Module, example: torch.Tensor, path: Path, graph: OnnxGraph, dims: dict) -> None:
    [name] = graph.inputs
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        input_names=[name],
        output_names=list(graph.outputs),
        dynamic_shapes={name: dims},
        opset_version=OPSET,
        dynamo=True,
        external_data=False,  # one self-contained file per graph (far below protobuf's 2 GB)
        verbose=False,
    )


def export_onnx(
    model: MultiPoseNet, out_dir: str | Path, model_version: str, graphs: tuple[str, ...] = GRAPHS
) -> OnnxManifest:
    """Write ``graphs`` of ``model`` (eval mode, CPU copies untouched) and the manifest into ``out_dir``."""
    require("onnx", "onnxscript")
    unknown = set(graphs) - set(GRAPHS)
    if unknown or not graphs:
        raise ValueError(f"graphs must be some of {GRAPHS}, got {graphs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    grid_h, grid_w = config.prn_grid
    # Batch examples of 2: torch.export specialises a dimension it sees as 1.
    batch = torch.export.Dim("batch", min=1, max=4096)
    specs = {
        "backbone": (
            DetectorGraph(model.detector()),
            torch.zeros(2, 3, 128, 128),
            OnnxGraph(
                file="backbone.onnx",
                inputs={"images": ("batch", 3, "height", "width")},
                outputs=BACKBONE_OUTPUTS,
            ),
            # canvases of 64 to 2048 px a side, multiples of 32 (the trunk's stride)
            {
                0: batch,
                2: 32 * torch.export.Dim("h32", min=2, max=64),
                3: 32 * torch.export.Dim("w32", min=2, max=64),
            },
        ),
        "prn": (
            model.prn,
            torch.zeros(2, NUM_KEYPOINTS, grid_h, grid_w),
            OnnxGraph(
                file="prn.onnx",
                inputs={"grids": ("persons", NUM_KEYPOINTS, grid_h, grid_w)},
                outputs=("probabilities",),
            ),
            {0: torch.export.Dim("persons", min=1, max=4096)},
        ),
        "activity": (
            model.activity,
            torch.zeros(2, 3 * NUM_KEYPOINTS),
            OnnxGraph(
                file="activity.onnx", inputs={"features": ("persons", 3 * NUM_KEYPOINTS)}, outputs=("logits",)
            ),
            {0: torch.export.Dim("persons", min=1, max=4096)},
        ),
    }
    # The exporter's optimiser logs every pass at INFO (dozens of lines per graph): keep its warnings only.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log = structlog.get_logger()
    written: dict[str, OnnxGraph] = {}
    was_training = model.training
    model.eval()
    try:
        for name in graphs:
            module, example, graph, dims = specs[name]
            _export(module, example, out / graph.file, graph, dims)
            written[name] = graph
            log.info("onnx_exported", graph=name, path=str(out / graph.file))
    finally:
        model.train(was_training)
    manifest = OnnxManifest(
        model_version=model_version,
        weights_sha256=detector_fingerprint(model),
        preset=config.preset_name,
        input_size=config.input_size,
        pixel_mean_bgr=config.pixel_mean_bgr,
        activities=model.activities,
        opset=OPSET,
        exporter="torch.onnx.export(dynamo=True)",
        torch_version=torch.__version__,
        graphs=written,
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def cache_root() -> Path:
    """``$POSESTREAM_CACHE_DIR/onnx`` or ``~/.cache/posestream/onnx``."""
    configured = os.environ.get("POSESTREAM_CACHE_DIR")
    return (Path(configured).expanduser() if configured else Path.home() / ".cache" / "posestream") / "onnx"


def cache_folder(model: MultiPoseNet) -> Path:
    """Where ``cached_backbone_export`` keeps this model's graph: one folder per weights + torch version."""
    key = hashlib.sha256(f"{detector_fingerprint(model)}:{torch.__version__}:{FORMAT_VERSION}".encode())
    return cache_root() / key.hexdigest()[:24]


def cached_backbone_export(model: MultiPoseNet, model_version: str) -> Path:
    """A folder holding ``backbone.onnx`` for exactly this model, exported once per weights + torch version.

    Replicas on one node may race: each exports into its own temporary folder and renames it into place;
    a loser finds the winner's folder and drops its own."""
    folder = cache_folder(model)
    if (folder / MANIFEST).is_file() and (folder / "backbone.onnx").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        export_onnx(model, scratch, model_version, graphs=("backbone",))
        try:
            scratch.rename(folder)
        except OSError:  # another process got there first
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
