"""Static int8 quantisation of the exported backbone graph (ONNX Runtime, QDQ, per-channel weights).

``quantize_backbone(folder, model, calibration_images)`` turns a ``posestream export onnx`` folder's
``backbone.onnx`` into ``backbone.int8.onnx`` and points the manifest's backbone graph at it (the fp32 file
stays, named in ``manifest.quantization.float_file``), so ``OnnxBackboneStage``, ``infer --backend onnx
--onnx-dir`` and the Serve backbone run the int8 graph unchanged. PRN and activity stay fp32 (tiny MLPs
and convs on 17 channels: nothing to win).

Calibration: ``calibration_images`` scenes of the synthetic generator (``model.data.synth.render_example``,
seed ``CALIBRATION_SEED``, not the demo's training seed 0 nor the benchmarks' held-out seed 20),
letterboxed and mean-centred exactly as the stage does (``model.preprocess.preprocess``), one at a time
through ORT's MinMax calibrator. QDQ format: activations uint8 (asymmetric), weights int8 symmetric per
output channel — what ORT's x86 kernels (VNNI where the CPU has it) run fastest. Accuracy moves: the keypoint
AP change is measured by ``bench/onnx_backend.py --int8 --ap-images N``, never assumed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from model.multiposenet import MultiPoseNet
from model.onnx_export import MANIFEST, OnnxGraph, OnnxManifest, OnnxQuantization, require

CALIBRATION_SEED = 21
INT8_FILE = "backbone.int8.onnx"
MAX_CALIBRATION_PEOPLE = 8


def calibration_inputs(model: MultiPoseNet, count: int, seed: int = CALIBRATION_SEED) -> Iterator[np.ndarray]:
    """``count`` preprocessed images (1, 3, H, W) float32 of generated scenes on the model's canvas."""
    from model.data.synth import render_example
    from model.preprocess import preprocess

    if count < 1:
        raise ValueError(f"calibration needs at least one image, got {count}")
    height, width = model.config.input_size
    for index in range(count):
        image, _ = render_example(seed, index, width, height, max_people=MAX_CALIBRATION_PEOPLE)
        tensor, _ = preprocess([image], model.config.input_size, model.config.pixel_mean_bgr)
        yield np.ascontiguousarray(tensor.numpy(), dtype=np.float32)


def _reader(inputs: Iterator[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """One calibration image per call, generated lazily (a set of 480 px tensors need not sit in RAM)."""

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(inputs, None)
            return None if batch is None else {"images": batch}

    return Reader()


def quantize_backbone(
    folder: str | Path, model: MultiPoseNet, calibration_images: int, seed: int = CALIBRATION_SEED
) -> OnnxManifest:
    """Quantise ``folder``'s fp32 backbone graph (an export of ``model``) to static int8; returns the new
    manifest (written to ``folder``)."""
    require("onnx", "onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = Path(folder)
    manifest = OnnxManifest.read(folder)
    graph = manifest.graphs.get("backbone")
    if graph is None:
        raise ValueError(f"{folder}: the export holds no backbone graph to quantise")
    if manifest.quantization is not None:
        raise ValueError(f"{folder}: the backbone graph is already quantised ({graph.file})")
    source = folder / graph.file
    with tempfile.TemporaryDirectory(prefix="posestream-int8-") as scratch:
        prepared = Path(scratch) / "backbone.prepared.onnx"
        # Shape inference + fusions (Conv+BN already folded by the exporter) before the quantiser, as ORT
        # recommends; symbolic shape inference is skipped: the graph's H and W are dynamic.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(folder / INT8_FILE),
            _reader(calibration_inputs(model, calibration_images, seed)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
        shutil.rmtree(scratch, ignore_errors=True)
    quantization = OnnxQuantization(
        scheme="static int8, QDQ, activations uint8 per tensor, weights int8 per channel (MinMax)",
        float_file=graph.file,
        calibration_images=calibration_images,
        calibration_seed=seed,
        calibration_source="model.data.synth.render_example",
    )
    graphs = {
        **manifest.graphs,
        "backbone": OnnxGraph(file=INT8_FILE, inputs=graph.inputs, outputs=graph.outputs),
    }
    updated = manifest.model_copy(update={"graphs": graphs, "quantization": quantization})
    (folder / MANIFEST).write_text(updated.model_dump_json(indent=2) + "\n")
    structlog.get_logger().info(
        "onnx_quantized", graph=str(folder / INT8_FILE), calibration_images=calibration_images, seed=seed
    )
    return updated
