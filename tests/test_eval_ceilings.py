"""Stage ceilings: each oracle puts exactly its stage right, scored by COCOeval against a built truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.evaluation.ceilings import ceilings_of, pipeline_ceilings
from model.evaluation.coco_eval import load_ground_truth
from model.predictions import FLIP_PAIRS, Detections, PosedPerson

BOXES = [(20.0, 20.0, 120.0, 220.0), (200.0, 30.0, 300.0, 230.0)]


def _truth_points(box: tuple[float, float, float, float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1, y1, x2, y2 = box
    points = np.stack([rng.uniform(x1, x2, 17), rng.uniform(y1, y2, 17), np.full(17, 2.0)], axis=1)
    return points


def _document(truths: list[np.ndarray]) -> dict:
    annotations = []
    for index, (points, box) in enumerate(zip(truths, BOXES, strict=True)):
        x1, y1, x2, y2 = box
        annotations.append(
            {
                "id": index + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "num_keypoints": 17,
                "keypoints": [float(v) for v in points.reshape(-1)],
            }
        )
    return {
        "images": [{"id": 1, "width": 320, "height": 240, "file_name": "a.jpg"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def _swapped(points: np.ndarray) -> np.ndarray:
    turned = points.copy()
    for left, right in FLIP_PAIRS:
        turned[[left, right]] = turned[[right, left]]
    return turned


def _persons(points: list[np.ndarray]) -> list[PosedPerson]:
    return [
        PosedPerson(bbox=box, score=0.9, keypoints=np.c_[p[:, :2], np.ones(17)].astype(np.float32))
        for p, box in zip(points, BOXES, strict=True)
    ]


@pytest.fixture(scope="module")
def truth():
    truths = [_truth_points(box, seed) for seed, box in enumerate(BOXES)]
    return truths, load_ground_truth(_document(truths))


def _detections(peaks: np.ndarray) -> Detections:
    return Detections(np.array(BOXES, np.float32), np.full(2, 0.9, np.float32), peaks, 320, 240)


def _peaks_of(points: list[np.ndarray]) -> np.ndarray:
    """(17, P, 3): every person's points as peaks of score 1."""
    return np.stack([np.c_[p[:, :2], np.ones(17)] for p in points], axis=1).astype(np.float32)


def test_swapped_sides_are_fixed_by_the_left_right_oracle_alone(truth):
    truths, gt = truth
    swapped = [_swapped(p) for p in truths]
    ceilings = ceilings_of(gt, [1], [_detections(_peaks_of(swapped))], [_persons(swapped)])
    assert ceilings.pipeline < 0.5
    assert ceilings.left_right_oracle == pytest.approx(1.0)
    # the peaks hold every true point (the swapped channels hold the other side's): no peak is on the
    # right joint's own channel where it was swapped, so the assignment oracle cannot fully fix it
    assert ceilings.detector_oracle == pytest.approx(1.0)


def test_a_wrong_assignment_among_right_peaks_is_fixed_by_the_peak_oracle(truth):
    truths, gt = truth
    crossed = [truths[1], truths[0]]  # each box given the other person's joints
    peaks = _peaks_of(truths)
    ceilings = ceilings_of(gt, [1], [_detections(peaks)], [_persons(crossed)])
    assert ceilings.peak_oracle == pytest.approx(1.0)
    assert ceilings.pipeline == pytest.approx(1.0)  # COCO matches each pose to the nearest truth anyway
    moved = [p + [40.0, 0.0, 0.0] for p in truths]  # every joint 40 px off, the right peaks available
    ceilings = ceilings_of(gt, [1], [_detections(peaks)], [_persons(moved)])
    assert ceilings.pipeline < 0.2 and ceilings.peak_oracle == pytest.approx(1.0)
    far_peaks = _peaks_of(moved)  # only wrong peaks: the assignment oracle has nothing right to pick
    ceilings = ceilings_of(gt, [1], [_detections(far_peaks)], [_persons(moved)])
    assert ceilings.peak_oracle < 0.2 and ceilings.detector_oracle == pytest.approx(1.0)


def test_the_part_whose_peaks_are_off_is_the_one_that_lifts_the_ceiling(truth):
    truths, gt = truth
    off_wrists = [p.copy() for p in truths]
    for points in off_wrists:
        points[[9, 10], 0] += 40.0  # both wrists 40 px off, and no peak nearer the truth
    ceilings = ceilings_of(gt, [1], [_detections(_peaks_of(off_wrists))], [_persons(off_wrists)])
    assert ceilings.peak_oracle < 0.9
    assert ceilings.part_exact["wrists"] == pytest.approx(1.0)
    assert ceilings.part_exact["head"] == pytest.approx(ceilings.peak_oracle)
    assert ceilings.part_exact["elbows"] == pytest.approx(ceilings.peak_oracle)


def test_mismatched_inputs_are_refused(truth):
    _, gt = truth
    with pytest.raises(ValueError, match="one Detections"):
        ceilings_of(gt, [1], [], [[]])


def test_eval_pipeline_reports_ceilings(tmp_path):
    import torch
    from typer.testing import CliRunner

    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.data.synth import generate_dataset
    from model.pipeline import PosePipeline
    from workers.cli import app

    torch.set_num_threads(2)
    data = tmp_path / "data"
    generate_dataset(data, 6, seed=77, val_fraction=0.5, size=(480, 480), max_people=3, progress=False)
    out = tmp_path / "out"
    arguments = ["eval", "pipeline", "--data", str(data), "--out", str(out), "--ceilings", "--device", "cpu"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    ceilings = json.loads((out / "eval_pipeline.json").read_text())["ceilings"]
    assert ceilings["images"] == 3 and ceilings["persons"] > 0
    assert ceilings["pipeline"] == pytest.approx(
        json.loads((out / "eval_pipeline.json").read_text())["pipeline"]["keypoints"]["AP"]
    )
    # the demo checkpoint's boxes are good, its keypoints are not: the detector's ceiling is far above
    assert ceilings["detector_oracle"] > ceilings["peak_oracle"] >= ceilings["pipeline"]
    assert "stage ceilings" in (out / "eval_pipeline.md").read_text()
    assert set(ceilings["part_exact"]) == {"head", "shoulders", "elbows", "wrists", "hips", "knees", "ankles"}
    assert "| head | shoulders |" in (out / "eval_pipeline.md").read_text()
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    again = pipeline_ceilings(PosePipeline(model, str(meta["version"]), "cpu"), data, "val")
    assert again.as_dict() == ceilings
