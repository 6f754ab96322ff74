"""The demo recipe's stages: what each one changes reaches the trainer's settings and the card."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from model.evaluation.demo_card import provenance
from model.evaluation.demo_recipe import Recipe
from model.evaluation.demo_weights import part_config


def _checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "stage3.pt"
    path.write_bytes(b"stage three's weights")
    return path


def test_stage_four_gives_the_prn_trainer_its_noise_and_keeps_the_other_parts(tmp_path):
    recipe = Recipe().prn_noised(_checkpoint(tmp_path), prn_epochs=2)
    assert (recipe.keypoint_epochs, recipe.detection_epochs, recipe.prn_epochs) == (0, 0, 2)
    config = part_config(recipe, "prn", tmp_path / "data", tmp_path / "model.pt", tmp_path / "runs", None)
    prn = config.prn
    assert (prn.box_jitter, prn.point_jitter, prn.mirror_prob, prn.drop_prob) == (0.1, 0.04, 0.5, 0.1)
    assert prn.epochs == 2 and prn.real_pose_fraction == recipe.prn_real_pose_fraction
    clean = part_config(Recipe(), "prn", tmp_path / "data", tmp_path / "model.pt", tmp_path / "runs", None)
    assert (clean.prn.box_jitter, clean.prn.mirror_prob) == (0.0, 0.0)  # stage 1: the seed's clean truth


def test_each_stage_names_itself_on_the_card(tmp_path):
    checkpoint = _checkpoint(tmp_path)
    texts = {
        1: provenance(Recipe()),
        2: provenance(Recipe().continued(checkpoint)),
        3: provenance(Recipe().refined(checkpoint)),
        4: provenance(Recipe().prn_noised(checkpoint)),
        5: provenance(Recipe().refined(checkpoint, keypoint_epochs=3, stage=5)),
    }
    assert texts[1].startswith("Trained from scratch")
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    for stage in (2, 3, 4, 5):
        assert texts[stage].startswith(f"Stage {stage}, from `") and digest in texts[stage]
        assert f"stage {stage - 1}; its card: `" in texts[stage]  # the input's card, beside it
    assert "mirror 0.5" in texts[4]
    assert "3 more epochs" in texts[5] and "PRN are stage 4's" in texts[5]  # stage 5 keeps stage 4's PRN
    unchanged = dataclasses.replace(Recipe().prn_noised(checkpoint), prn_mirror_prob=0.0)
    assert "mirror 0" in provenance(unchanged)  # the card prints the amounts the run used
