"""int8 backbone (``model.onnx_quantize``): a static QDQ quantisation of an exported graph, calibrated on
generated scenes, loads through ``OnnxBackboneStage``, runs, and decodes persons; the max |Δ| to PyTorch is
reported (printed with ``-s``, a user property), not held to fp32's 1e-3: int8 moves raw outputs.

A small seeded model (demo preset, 64 px canvas, thresholds 0 so every frame yields persons) keeps the
export and the calibration within seconds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import make_model, small_config

from model.onnx_export import OnnxManifest, export_onnx
from model.pipeline import PosePipeline

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(n) for n in ("onnx", "onnxscript", "onnxruntime")),
    reason="onnx / onnxscript / onnxruntime not installed: pip install 'posestream[onnx]'",
)
PERSONS = 2


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    from model.onnx_quantize import quantize_backbone

    config = small_config(person_score_threshold=0.0, candidate_score_threshold=0.0, max_persons=PERSONS)
    model = make_model(config)
    folder = tmp_path_factory.mktemp("int8")
    export_onnx(model, folder, "int8-test", graphs=("backbone",))
    quantize_backbone(folder, model, calibration_images=3)
    return model, folder


def test_manifest_points_at_the_int8_graph_and_keeps_the_float_one(quantized: tuple[object, Path]) -> None:
    import onnx

    _, folder = quantized
    manifest = OnnxManifest.read(folder)
    assert manifest.graphs["backbone"].file == "backbone.int8.onnx"
    assert manifest.quantization is not None
    assert manifest.quantization.calibration_images == 3
    assert (folder / manifest.quantization.float_file).is_file()
    ops = {node.op_type for node in onnx.load(str(folder / "backbone.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    float_ops = {node.op_type for node in onnx.load(str(folder / "backbone.onnx")).graph.node}
    assert "QuantizeLinear" not in float_ops


def test_quantizing_twice_is_refused(quantized: tuple[object, Path]) -> None:
    from model.onnx_quantize import quantize_backbone

    model, folder = quantized
    with pytest.raises(ValueError, match="already quantised"):
        quantize_backbone(folder, model, calibration_images=1)


def test_int8_backbone_loads_runs_and_decodes_persons(
    quantized: tuple[object, Path], record_property: pytest.RecordProperty
) -> None:
    from model.data.sequence import iter_sequence_frames
    from model.onnx_backend import graph_differences

    model, folder = quantized
    torch_side = PosePipeline(model, "int8-test", "cpu")
    int8_side = PosePipeline(model, "int8-test", "cpu", backend="onnx", onnx_dir=folder)
    assert int8_side.backbone.quantization is not None
    frames = [frame for frame, _ in iter_sequence_frames(2, 2, seed=3, size=(64, 64))]
    with torch.inference_mode():
        expected = torch_side.predict(frames)
        got = int8_side.predict(frames)
    assert [len(persons) for persons in got] == [PERSONS, PERSONS]
    for persons in got:
        for person in persons:
            keypoints = np.asarray(person.keypoints)
            assert keypoints.shape[0] == 17 and np.isfinite(keypoints).all()
    assert [len(p) for p in expected] == [len(p) for p in got]

    difference = graph_differences(model, folder)["backbone"]
    record_property("int8_backbone_max_abs_difference", difference)
    print(f"int8 backbone: max |onnxruntime int8 - torch| = {difference:.3e}")
    assert np.isfinite(difference) and difference > 0.0  # it really is another graph than fp32's


def test_export_command_int8(tmp_path: Path) -> None:
    """`posestream export onnx --int8 --calibration-images N`: the int8 manifest, and the check line says
    int8 (its |Δ| is reported, not bounded)."""
    import typer
    from typer.testing import CliRunner

    from model.checkpoint import save_checkpoint
    from workers.commands.export import register

    config = small_config(person_score_threshold=0.0, candidate_score_threshold=0.0, max_persons=PERSONS)
    checkpoint = save_checkpoint(tmp_path / "small.pt", make_model(config, seed=1), version="int8-cli")
    app = typer.Typer()
    register(app)
    out = tmp_path / "onnx"
    words = ["export", "onnx", "--checkpoint", str(checkpoint), "--out", str(out), "--int8"]
    result = CliRunner().invoke(app, [*words, "--calibration-images", "2"])
    assert result.exit_code == 0, result.output
    manifest = OnnxManifest.read(out)
    assert manifest.graphs["backbone"].file == "backbone.int8.onnx"
    assert manifest.quantization is not None and manifest.quantization.calibration_images == 2
    assert set(manifest.graphs) == {"backbone", "prn", "activity"}
    assert "check backbone (int8): max |onnxruntime - torch|" in result.output
