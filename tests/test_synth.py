"""Synthetic people dataset: COCO format, honest keypoints, activities, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from model.data.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON, DEFAULT_ACTIVITIES
from model.data.synth import generate_dataset, val_indices

SIZE = (160, 128)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, images=40, seed=3, val_fraction=0.25, size=SIZE, progress=False)
    return out, summary


def _load(out: Path, split: str) -> dict:
    return json.loads((out / "annotations" / f"person_keypoints_{split}.json").read_text())


def test_pycocotools_loads_both_splits(dataset):
    out, summary = dataset
    for split in ("train", "val"):
        coco = COCO(str(out / "annotations" / f"person_keypoints_{split}.json"))
        assert len(coco.getImgIds()) == summary["images"][split] > 0
        assert coco.getCatIds(catNms=["person"]) == [1]
        cat = coco.loadCats(1)[0]
        assert cat["keypoints"] == list(COCO_KEYPOINT_NAMES)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_SKELETON]  # 1-based, as COCO
        for img in coco.loadImgs(coco.getImgIds()):
            path = out / "images" / split / img["file_name"]
            assert path.exists()
            assert (img["width"], img["height"]) == SIZE
    assert summary["images"]["train"] + summary["images"]["val"] == 40


def test_keypoints_inside_image_or_unlabelled_and_boxes_contain_visible(dataset):
    out, _ = dataset
    checked_hidden = 0
    for split in ("train", "val"):
        data = _load(out, split)
        sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
        for ann in data["annotations"]:
            w, h = sizes[ann["image_id"]]
            kps = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
            assert kps.shape == (17, 3)
            assert set(np.unique(kps[:, 2])) <= {0, 1, 2}
            labelled = kps[:, 2] > 0
            assert ann["num_keypoints"] == int(labelled.sum())
            inside = (kps[:, 0] >= 0) & (kps[:, 0] < w) & (kps[:, 1] >= 0) & (kps[:, 1] < h)
            assert np.all(inside[labelled]), "a labelled keypoint lies outside its image"
            assert np.all(kps[~labelled, :2] == 0), "COCO writes (0, 0, 0) for unlabelled joints"
            x, y, bw, bh = ann["bbox"]
            assert bw > 0 and bh > 0 and ann["area"] > 0 and ann["iscrowd"] == 0
            assert x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
            seen = kps[kps[:, 2] == 2]
            assert np.all(seen[:, 0] >= x - 1e-6) and np.all(seen[:, 0] <= x + bw + 1e-6)
            assert np.all(seen[:, 1] >= y - 1e-6) and np.all(seen[:, 1] <= y + bh + 1e-6)
            assert ann["activity"] in DEFAULT_ACTIVITIES
            assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])
            checked_hidden += int((kps[:, 2] == 1).sum())
    assert checked_hidden > 0, "overlapping people should hide some joints (v=1)"


def test_all_activities_and_crowds_appear(dataset):
    out, summary = dataset
    assert all(summary["activities"][name] > 0 for name in DEFAULT_ACTIVITIES), summary["activities"]
    per_image: dict[int, int] = {}
    for split in ("train", "val"):
        for ann in _load(out, split)["annotations"]:
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
    assert max(per_image.values()) >= 3
    assert all(1 <= n <= 8 for n in per_image.values())


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    runs = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        out = tmp_path / name
        generate_dataset(out, images=6, seed=seed, val_fraction=0.34, size=(96, 96), progress=False)
        runs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert runs[0].keys() == runs[1].keys()
    assert all(runs[0][k] == runs[1][k] for k in runs[0]), "same seed must give byte-identical files"
    ann = Path("annotations/person_keypoints_train.json")
    assert runs[0][ann] != runs[2][ann]


def test_val_indices_spread_and_validate():
    assert val_indices(10, 0.2) == {2, 7}
    assert val_indices(1, 0.5) == set()
    assert len(val_indices(100, 0.1)) == 10
    with pytest.raises(ValueError):
        val_indices(10, 1.0)


def test_bad_arguments_raise_value_error(tmp_path):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, images=0, seed=0, progress=False)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, images=2, seed=0, size=(16, 16), progress=False)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, images=2, seed=0, image_format="gif", progress=False)


def test_cli_synth_and_show(tmp_path):
    from workers.cli import app

    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--images",
            "5",
            "--seed",
            "1",
            "--size",
            "96x80",
            "--val-fraction",
            "0.4",
            "--format",
            "png",
        ],
    )
    assert result.exit_code == 0, result.output
    coco = COCO(str(out / "annotations" / "person_keypoints_val.json"))
    assert len(coco.getImgIds()) == 2
    assert (out / "images" / "val" / coco.loadImgs(coco.getImgIds()[0])[0]["file_name"]).suffix == ".png"
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["data", "show", "--data", str(out), "--out", str(sheet), "--count", "4"])
    assert result.exit_code == 0, result.output
    import cv2

    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] > 64
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--images", "2", "--size", "banana"])
    assert result.exit_code != 0


def test_empty_images_are_train_only_unannotated_and_hold_nobody(tmp_path):
    from model.data.synth import empty_indices
    from model.evaluation.empty_frames import empty_frames

    summary = generate_dataset(
        tmp_path / "d", 40, seed=5, val_fraction=0.1, size=(96, 96), max_people=2, empty_fraction=0.25
    )
    assert summary["empty_images"] == 9  # a quarter of the 36 train images
    val = val_indices(40, 0.1)
    empty = empty_indices(40, 0.25, val)
    assert len(empty) == 9 and not empty & val
    train = json.loads((tmp_path / "d/annotations/person_keypoints_train.json").read_text())
    annotated = {a["image_id"] for a in train["annotations"]}
    assert not {index + 1 for index in empty} & annotated
    val_doc = json.loads((tmp_path / "d/annotations/person_keypoints_val.json").read_text())
    assert {i["id"] for i in val_doc["images"]} <= {a["image_id"] for a in val_doc["annotations"]}
    # the empty images are not a person-free copy of the evaluation's empty frames (their own seeds)
    import cv2

    drawn = cv2.imread(str(tmp_path / "d/images/train" / f"{min(empty) + 1:012d}.jpg"))
    assert drawn is not None and drawn.std() > 5
    frames = empty_frames(4, seed=5, size=(96, 96))
    assert all(np.abs(drawn.astype(int) - frame.astype(int)).mean() > 5 for frame in frames)
    with pytest.raises(ValueError, match="empty_fraction"):
        empty_indices(40, 1.0, val)


def test_detector_sees_empty_images_and_keypoint_training_does_not(tmp_path):
    from model.train.coco import CocoKeypoints

    generate_dataset(
        tmp_path / "d", 20, seed=2, val_fraction=0.1, size=(96, 96), max_people=2, empty_fraction=0.3
    )
    with_people = CocoKeypoints.from_root(tmp_path / "d", "train", require_labelled=False)
    everything = CocoKeypoints.from_root(tmp_path / "d", "train", require_labelled=False, include_empty=True)
    assert len(everything) == 18 and len(with_people) <= 18 - 5
    nobody = [index for index in range(len(everything)) if not everything.people(index)]
    assert len(nobody) >= 5
