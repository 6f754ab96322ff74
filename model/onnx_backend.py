"""The backbone stage on ONNX Runtime: ``OnnxBackboneStage``, a drop-in for ``model.stages.BackboneStage``.

Only the graph (trunk, both FPNs, both heads: ``model.onnx_export.DetectorGraph``) runs in onnxruntime. Its
raw outputs go through the torch stage's own decoding (anchors, box decoding, NMS, peak extraction,
letterbox mapping, test-time view merging) by subclassing ``PoseDetector`` and replacing only
``_run_view``, so both backends decode the same way by construction.

Provider: CUDA when the stage's device is a GPU and onnxruntime has the CUDA provider (the
``onnxruntime-gpu`` wheel), else CPU. Graph optimisation ``ORT_ENABLE_ALL``; intra-op threads default to
torch's (what the process was given: a Serve replica's ``num_cpus``, ``pin_threads`` in a benchmark). A
session given fewer threads than the machine has cores shares it with other replicas: its idle threads
then sleep instead of spin-waiting (ORT's default), which would burn the cores its neighbours compute on.
An int8 export (``posestream export onnx --int8``, ``model.onnx_quantize``) loads the same way: the
manifest's backbone graph is then the quantised file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from model.config import resolve_device
from model.multiposenet import MultiPoseNet, PoseDetector
from model.onnx_export import (
    BACKBONE_OUTPUTS,
    OnnxManifest,
    cached_backbone_export,
    detector_fingerprint,
    require,
)
from model.stages import BackboneStage
from model.test_time import TestTimeAugmentation

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def make_session(path: Path, device: torch.device, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``path`` on ``device`` (see the module docstring)."""
    require("onnxruntime")
    import onnxruntime as ort

    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # one graph, run sequentially: parallelism is intra-op
    if intra < (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [CPU_PROVIDER]
    if device.type == "cuda":
        if CUDA_PROVIDER in ort.get_available_providers():
            providers = [(CUDA_PROVIDER, {"device_id": device.index or 0}), CPU_PROVIDER]
        else:
            structlog.get_logger().warning(
                "onnxruntime has no CUDA provider (install onnxruntime-gpu): the backbone runs on CPU",
                device=str(device),
            )
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def _level_sizes(canvas_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """P3–P7 grid sizes of a canvas: strides 8, 16, 32, then two 3×3 stride-2 convs (LastLevelP6P7)."""
    sizes = [(canvas_hw[0] // stride, canvas_hw[1] // stride) for stride in (8, 16, 32)]
    for _ in range(2):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


class OnnxPoseDetector(PoseDetector):
    """``PoseDetector`` whose network pass is an onnxruntime session; decoding is inherited unchanged."""

    def __init__(self, model: MultiPoseNet, session: Any) -> None:
        super().__init__(
            model.config,
            model.backbone,
            model.keypoint_fpn,
            model.keypoint_head,
            model.detection_fpn,
            model.detection_head,
        )
        self.session = session

    def raw_outputs(self, images: torch.Tensor) -> list[np.ndarray]:
        """heatmaps, cls_logits, bbox_regression of a preprocessed batch, as numpy."""
        feed = {"images": np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)}
        return self.session.run(list(BACKBONE_OUTPUTS), feed)

    def _run_view(self, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        canvas_hw = (int(images.shape[-2]), int(images.shape[-1]))
        heatmaps, logits, regression = (torch.from_numpy(out) for out in self.raw_outputs(images))
        # The anchor generator and postprocess read only the pyramid's grid sizes: channel-less stand-ins.
        pyramid = [images.new_empty((images.shape[0], 0, h, w)) for h, w in _level_sizes(canvas_hw)]
        anchors = self.detection_head.anchors(images, pyramid)
        if anchors[0].shape[0] != logits.shape[1]:
            raise RuntimeError(
                f"the ONNX graph gave {logits.shape[1]} anchors, the decoder expects {anchors[0].shape[0]}"
            )
        outputs = {"cls_logits": logits, "bbox_regression": regression}
        return heatmaps, self.detection_head.postprocess(outputs, anchors, pyramid, canvas_hw)


def graph_differences(model: MultiPoseNet, folder: str | Path, seed: int = 0) -> dict[str, float]:
    """Per exported graph, the max abs difference between onnxruntime and torch on seeded inputs (two
    images on the model's canvas, two persons): the check ``posestream export onnx`` prints."""
    from model.onnx_export import DetectorGraph

    folder = Path(folder)
    manifest = OnnxManifest.read(folder)
    generator = torch.Generator().manual_seed(seed)
    height, width = model.config.input_size
    grid_h, grid_w = model.config.prn_grid
    inputs = {
        "backbone": (
            DetectorGraph(model.detector()),
            torch.randn(2, 3, height, width, generator=generator) * 60,
        ),
        "prn": (model.prn, torch.rand(2, 17, grid_h, grid_w, generator=generator)),
        "activity": (model.activity, torch.rand(2, 51, generator=generator)),
    }
    differences = {}
    for name, graph in manifest.graphs.items():
        module, example = inputs[name]
        session = make_session(folder / graph.file, torch.device("cpu"))
        [input_name] = graph.inputs
        with torch.inference_mode():
            expected = module.eval()(example)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(list(graph.outputs), {input_name: example.numpy()})
        differences[name] = max(
            float(np.abs(out - ref.numpy()).max()) for out, ref in zip(got, expected, strict=True)
        )
    return differences


class OnnxBackboneStage(BackboneStage):
    """``BackboneStage`` on onnxruntime. ``graph_dir``: a ``posestream export onnx`` folder made from this
    very model (checked by the weights' fingerprint); None exports it once into the cache
    (``model.onnx_export.cached_backbone_export``)."""

    def __init__(
        self,
        model: MultiPoseNet,
        device: torch.device | str | None = None,
        test_time: TestTimeAugmentation | None = None,
        graph_dir: str | Path | None = None,
        threads: int | None = None,
        model_version: str = "unknown",
    ) -> None:
        require("onnxruntime")  # before any export: fail fast, naming the extra
        self.config = model.config
        self.test_time = test_time or TestTimeAugmentation()
        # Decoding runs in torch on the CPU whatever the provider: the session hands back host arrays.
        self.device = torch.device("cpu")
        self.runtime_device = resolve_device(device)
        folder = Path(graph_dir) if graph_dir is not None else cached_backbone_export(model, model_version)
        manifest = OnnxManifest.read(folder)
        if "backbone" not in manifest.graphs:
            raise ValueError(f"{folder}: the export holds no backbone graph")
        if manifest.weights_sha256 != detector_fingerprint(model):
            raise ValueError(
                f"{folder} was exported from other weights (model {manifest.model_version}): "
                "export this checkpoint again"
            )
        self.graph_path = folder / manifest.graphs["backbone"].file
        session = make_session(self.graph_path, self.runtime_device, threads)
        self.providers: list[str] = list(session.get_providers())
        self.module = OnnxPoseDetector(model, session).eval()
        self.quantization = manifest.quantization
        structlog.get_logger().info(
            "onnx_backbone_loaded",
            graph=str(self.graph_path),
            providers=self.providers,
            version=model_version,
            quantized=self.quantization.scheme if self.quantization else None,
        )
