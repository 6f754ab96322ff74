"""ONNX Runtime backend: `posestream export onnx` on the demo checkpoint, then onnxruntime against PyTorch on
generated scenes (256 px frames, batches of 1 and 3): raw head outputs within 1e-3, the same persons decoded.

One export for the module (≈ 25 s of the budget: torch.export of the backbone). The figures are printed
(`pytest -s`) and attached as user properties (`--junitxml`)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from model_helpers import make_model, small_config
from typer.testing import CliRunner

from model.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint
from model.data.sequence import iter_sequence_frames
from model.onnx_export import BACKBONE_OUTPUTS, DetectorGraph, OnnxExtraMissing, OnnxManifest, cache_folder
from model.pipeline import PosePipeline
from model.preprocess import preprocess

HAVE_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX,
    reason="onnx / onnxscript / onnxruntime not installed: pip install 'posestream[onnx]' "
    "(the test extra has them)",
)
RAW_TOLERANCE = 1e-3
BOX_TOLERANCE_PX = 1e-2


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`posestream export onnx --out DIR` with the default checkpoint (the command module on its own app)."""
    from workers.commands.export import register

    app = typer.Typer()
    register(app)
    folder = tmp_path_factory.mktemp("onnx")
    result = CliRunner().invoke(app, ["export", "onnx", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder, result.output


@pytest.fixture(scope="module")
def pipelines(exported: tuple[Path, str]) -> tuple[PosePipeline, PosePipeline]:
    torch_side = PosePipeline.load(None, device="cpu")
    onnx_side = PosePipeline.load(None, device="cpu", backend="onnx", onnx_dir=exported[0])
    return torch_side, onnx_side


def scenes(count: int) -> list[np.ndarray]:
    """Generated multi-person scenes at 256 px, a different scene (seed, people) each."""
    return [
        next(iter_sequence_frames(1, 2 + index, seed=index, size=(256, 256)))[0] for index in range(count)
    ]


@needs_onnx
def test_export_writes_three_graphs_and_a_manifest(exported: tuple[Path, str]) -> None:
    import onnxruntime as ort

    folder, output = exported
    manifest = OnnxManifest.read(folder)
    assert manifest.model_version == read_checkpoint(DEFAULT_CHECKPOINT)["version"]
    assert set(manifest.graphs) == {"backbone", "prn", "activity"}
    assert manifest.graphs["backbone"].outputs == BACKBONE_OUTPUTS
    assert manifest.input_size == (480, 480)
    assert json.loads((folder / "manifest.json").read_text())["exporter"].startswith("torch.onnx")
    for graph in manifest.graphs.values():
        session = ort.InferenceSession(str(folder / graph.file), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == list(graph.outputs)
        assert isinstance(session.get_inputs()[0].shape[0], str)  # the batch / persons axis is dynamic
    for name in manifest.graphs:  # the command's own check ran every graph in onnxruntime
        assert f"check {name}: max |onnxruntime - torch| =" in output


@needs_onnx
@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch(
    pipelines: tuple[PosePipeline, PosePipeline], batch: int, record_property: pytest.RecordProperty
) -> None:
    from model.onnx_backend import OnnxBackboneStage

    torch_side, onnx_side = pipelines
    assert isinstance(onnx_side.backbone, OnnxBackboneStage)
    assert type(torch_side.backbone) is not OnnxBackboneStage
    frames = scenes(batch)
    images, _ = preprocess(frames, torch_side.model.config.input_size, torch_side.model.config.pixel_mean_bgr)
    with torch.inference_mode():
        expected = DetectorGraph(torch_side.model.detector()).eval()(images)
    got = onnx_side.backbone.module.raw_outputs(images)
    differences = {
        name: float(np.abs(out - ref.numpy()).max())
        for name, out, ref in zip(BACKBONE_OUTPUTS, got, expected, strict=True)
    }
    print(f"batch {batch}: max |onnxruntime - torch| of the raw head outputs: {differences}")
    record_property(f"raw_max_abs_diff_batch{batch}", max(differences.values()))
    assert max(differences.values()) < RAW_TOLERANCE, differences

    want, have = torch_side.predict(frames), onnx_side.predict(frames)
    assert sum(len(persons) for persons in want) >= batch  # the demo model finds people: a real comparison
    box_gap = 0.0
    for want_persons, have_persons in zip(want, have, strict=True):
        assert len(have_persons) == len(want_persons)
        for a, b in zip(want_persons, have_persons, strict=True):
            box_gap = max(box_gap, float(np.abs(np.subtract(a.bbox, b.bbox)).max()))
            assert np.allclose(a.bbox, b.bbox, atol=BOX_TOLERANCE_PX)
            assert np.allclose(a.keypoints[:, :2], b.keypoints[:, :2], atol=BOX_TOLERANCE_PX)
            assert a.activity == b.activity
    print(f"batch {batch}: {sum(map(len, want))} persons, boxes within {box_gap:.2e} px")


@needs_onnx
def test_prn_and_activity_graphs_match_pytorch(exported: tuple[Path, str]) -> None:
    import onnxruntime as ort

    from model.checkpoint import load_checkpoint

    folder, _ = exported
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    generator = torch.Generator().manual_seed(1)
    cases = {
        "prn": (model.prn, torch.rand(5, 17, *model.config.prn_grid, generator=generator)),
        "activity": (
            model.activity,
            torch.rand(7, 51, generator=generator),
        ),  # other counts than the export's
    }
    for name, (module, example) in cases.items():
        session = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            expected = module(example).numpy()
        [got] = session.run(None, {session.get_inputs()[0].name: example.numpy()})
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) < 1e-4, name


@needs_onnx
def test_an_export_of_other_weights_is_refused(exported: tuple[Path, str]) -> None:
    from model.onnx_backend import OnnxBackboneStage

    with pytest.raises(ValueError, match="other weights"):
        OnnxBackboneStage(make_model(small_config()), "cpu", graph_dir=exported[0])


@needs_onnx
def test_serve_backbone_replica_runs_onnx_and_the_others_stay_torch(
    exported: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user_config `backend: onnx`: the backbone replica loads the cached export (seeded here from the
    module's, as a first replica on the node would have written it); a PRN replica ignores the setting."""
    from model.onnx_backend import OnnxBackboneStage
    from workers.serve.stage import ModelStageReplica

    monkeypatch.setenv("POSESTREAM_CACHE_DIR", str(tmp_path))
    pipeline = PosePipeline.load(None, device="cpu")
    shutil.copytree(exported[0], cache_folder(pipeline.model))

    class Batched:
        def set_max_batch_size(self, size: int) -> None: ...
        def set_batch_wait_timeout_s(self, seconds: float) -> None: ...

    def replica(name: str, uses_backend: bool, make_stage) -> ModelStageReplica:
        cls = type(name, (ModelStageReplica,), {"stage_name": name, "uses_backend": uses_backend})
        cls.make_stage = staticmethod(make_stage)
        cls._batched_method = lambda self: Batched()
        return cls()

    config = {"max_batch_size": 2, "batch_wait_timeout_s": 0, "drain_grace_s": 0, "device": "cpu"}
    backbone = replica("backbone", True, lambda p: p.backbone)
    asyncio.run(backbone.reconfigure({**config, "backend": "onnx"}))
    with backbone._versions.acquire(None) as (_, stage):
        assert isinstance(stage, OnnxBackboneStage)
        assert stage.providers == ["CPUExecutionProvider"]
        assert len(stage(scenes(1))) == 1
    residual = replica("residual", False, lambda p: p.backbone)
    asyncio.run(residual.reconfigure({**config, "backend": "onnx"}))
    with residual._versions.acquire(None) as (_, stage):
        assert not isinstance(stage, OnnxBackboneStage)


def test_bad_backend_and_missing_extra_fail_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(small_config())
    with pytest.raises(ValueError, match="backend must be one of"):
        PosePipeline(model, "v", "cpu", backend="tensorrt")  # type: ignore[arg-type]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name)
    )
    with pytest.raises(OnnxExtraMissing, match=r"posestream\[onnx\]"):
        PosePipeline(model, "v", "cpu", backend="onnx")
