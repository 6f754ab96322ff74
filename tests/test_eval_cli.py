"""``posestream eval``, end to end on a tiny checkpoint and synthetic set; the demo card and size limit."""

from __future__ import annotations

import json

import pytest
import torch
from model_helpers import make_model, small_config
from typer.testing import CliRunner

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.data.synth import generate_dataset
from model.evaluation.demo_card import TARGETS, headline, write_card
from model.evaluation.demo_recipe import Recipe
from model.evaluation.demo_weights import MAX_CHECKPOINT_BYTES
from model.multiposenet import MultiPoseNet


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """`posestream eval all` on 4 val images of a tiny set with a tiny (untrained) checkpoint."""
    from workers.cli import app

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval-cli")
    data = root / "data"
    generate_dataset(data, 12, seed=11, val_fraction=0.34, size=(96, 96), max_people=3, progress=False)
    checkpoint = save_checkpoint(root / "tiny.pt", make_model(small_config()), version="tiny")
    out = root / "out"
    arguments = ["eval", "all", "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out)]
    arguments += ["--max-images", "4", "--epochs", "2", "--no-real-poses", "--device", "cpu"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_eval_all_writes_json_markdown_and_confusion_png(evaluated):
    out, output = evaluated
    results = json.loads((out / "eval.json").read_text())
    assert results["meta"]["model_version"] == "tiny"
    assert results["pipeline"]["images"] == 4
    assert 0.0 <= results["prn"]["split"]["baseline"]["AP"] <= 1.0
    assert "real_poses" not in results["prn"]
    assert results["activity"]["folds"] == 5
    assert (out / "activity_confusion.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (out / "eval.md").read_text()
    assert "keypoints (OKS)" in markdown and "nearest-peak baseline" in markdown and "**macro**" in markdown
    # the training diagnostics: in the JSON, the Markdown and on the terminal
    diagnostics = results["diagnostics"]
    assert diagnostics["images"] == 4 and diagnostics["joint_error"]["joints"] > 0
    assert set(diagnostics["left_right"]["correlation_by_pair"]) >= {"shoulder", "wrist", "ankle"}
    assert 0.0 <= diagnostics["gt_box_keypoints"]["AP"] <= 1.0
    assert results["pipeline"]["score_threshold"] == 0.05
    assert "Training diagnostics" in markdown and "GT boxes" in markdown and "Training diagnostics" in output
    assert "wrote" in output
    # the card of `make demo-weights` renders from the same results
    results["prn"]["real_poses"] = {"skipped": "offline"}
    figures = headline(results)
    assert figures["prn_gt_ap_real_poses"] is None and set(TARGETS) <= set(figures)


def test_demo_card_records_command_figures_and_recipe(evaluated, tmp_path):
    out, _ = evaluated
    results = json.loads((out / "eval.json").read_text())
    checkpoint = tmp_path / "demo.pt"
    checkpoint.write_bytes(b"weights")
    figures = headline({**results, "prn": {**results["prn"], "real_poses": {"skipped": "offline"}}})
    timings = {"train keypoints": {"wall_s": 60.0, "cpu_s": 110.0}}
    command = "make demo-weights"
    card = write_card(tmp_path / "demo.md", checkpoint, Recipe(), figures, results, timings, command)
    text = card.read_text()
    assert "`make demo-weights`" in text and "keypoint_ap" in text and "| keypoint_lr | 0.0005 |" in text
    assert "sha256" in text and "train keypoints" in text


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from workers.cli import app

    result = CliRunner().invoke(app, ["eval", "prn", "--checkpoint", str(tmp_path / "nope.pt")])
    assert result.exit_code != 0
    assert "checkpoint not found" in result.output


def test_demo_preset_half_precision_checkpoint_fits_50_mb(tmp_path):
    model = MultiPoseNet(ModelConfig.preset("demo"))
    path = save_checkpoint(tmp_path / "demo.pt", model, half=True)
    assert path.stat().st_size <= MAX_CHECKPOINT_BYTES
