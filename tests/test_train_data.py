"""Training data side: COCO loading, augmentation geometry, heatmap/mask targets, PRN/activity samples."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.config import ModelConfig
from model.decode import canvas_to_heatmap
from model.train.augment import AugmentConfig, PersonCropAugment
from model.train.coco import CocoKeypoints, ImageRecord, Person
from model.train.samples import ActivityPoseSet, PrnTrainingSet, prn_sample
from model.train.schedule import step_decay_lr
from model.train.show_targets import render_target_sheet
from model.train.targets import PoseTrainingSet, collate_pose_batch, keypoint_targets


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from model.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, images=8, seed=1, val_fraction=0.25, size=(128, 128), max_people=3, progress=False)
    return out


MEAN = (103.939, 116.779, 123.68)
RED, BLUE, GREEN = (0, 0, 255), (255, 0, 0), (0, 255, 0)  # BGR


def _record_with_markers() -> ImageRecord:
    """A grey 200×240 image; left shoulder a red blob, right shoulder a blue one, left hip a green one."""
    image = np.full((200, 240, 3), 90, np.uint8)
    keypoints = np.zeros((17, 3), np.float32)
    for joint, (x, y), colour in ((5, (100, 70), RED), (6, (140, 70), BLUE), (11, (105, 130), GREEN)):
        cv2.circle(image, (x, y), 6, colour, -1)
        keypoints[joint] = (x, y, 2)
    person = Person(keypoints=keypoints, box=np.array([85, 50, 155, 160], np.float32), iscrowd=False)
    return ImageRecord(image=image, people=[person], ignore_mask=np.zeros((200, 240), np.uint8))


def _colour_at(sample, joint: int) -> np.ndarray:
    x, y, v = sample.keypoints[0, joint].tolist()
    assert v > 0
    pixel = sample.image[:, round(y), round(x)] + torch.tensor(MEAN)
    return pixel.numpy()


def _closest(colour: np.ndarray) -> tuple[int, int, int]:
    return min((RED, BLUE, GREEN, (90, 90, 90)), key=lambda c: float(np.abs(colour - np.array(c)).sum()))


def test_horizontal_flip_swaps_left_and_right_joints():
    augment = PersonCropAugment(AugmentConfig(input_size=(160, 160), pixel_mean_bgr=MEAN))
    record = _record_with_markers()
    plain = augment(record, angle=0.0, scale=1.0, flip=False, main_person=0)
    flipped = augment(record, angle=0.0, scale=1.0, flip=True, main_person=0)
    assert _closest(_colour_at(plain, 5)) == RED and _closest(_colour_at(plain, 6)) == BLUE
    # mirrored: the joint now called "left shoulder" sits on what was the right shoulder
    assert _closest(_colour_at(flipped, 5)) == BLUE
    assert _closest(_colour_at(flipped, 6)) == RED
    assert _closest(_colour_at(flipped, 12)) == GREEN  # left hip became the right hip
    assert flipped.keypoints[0, 11, 2] == 0
    # the mirrored left shoulder is the new right shoulder: x ↦ W − 1 − x, y unchanged
    assert float(plain.keypoints[0, 5, 0] + flipped.keypoints[0, 6, 0]) == pytest.approx(159, abs=1e-3)
    assert float(plain.keypoints[0, 5, 1]) == pytest.approx(float(flipped.keypoints[0, 6, 1]), abs=1e-3)


@pytest.mark.parametrize("angle,scale", [(35.0, 0.8), (-40.0, 1.2), (12.0, 1.0)])
def test_rotation_and_scale_move_keypoints_with_their_pixels(angle, scale):
    augment = PersonCropAugment(AugmentConfig(input_size=(160, 160), pixel_mean_bgr=MEAN))
    sample = augment(_record_with_markers(), angle=angle, scale=scale, flip=False, main_person=0)
    for joint, colour in ((5, RED), (6, BLUE), (11, GREEN)):
        assert _closest(_colour_at(sample, joint)) == colour
    # the crop is centred on the person: their keypoints straddle the crop centre
    assert abs(float(sample.keypoints[0, [5, 6, 11], 0].mean()) - 80) < 40


def test_random_augmentation_stays_consistent_and_zero_centred():
    augment = PersonCropAugment(
        AugmentConfig(input_size=(128, 128), pixel_mean_bgr=MEAN), np.random.default_rng(3)
    )
    record = _record_with_markers()
    flips = 0
    for _ in range(12):
        sample = augment(record)
        assert -40 <= sample.angle <= 40 and 0.7 <= sample.scale <= 1.2
        flips += sample.flipped
        assert sample.image.shape == (3, 128, 128)
        for joint in (5, 6):  # whichever side they are called, shoulders are on red/blue pixels
            if sample.keypoints[0, joint, 2] > 0:
                assert _closest(_colour_at(sample, joint)) in (RED, BLUE)
    assert 0 < flips < 12
    # padding is the mean colour, i.e. exactly zero after centring
    corner = augment(record, angle=40.0, scale=0.7, flip=False, main_person=0).image[:, 0, 0]
    assert float(corner.abs().max()) < 1.0


def _person(ann_id: int, bbox: list[int], keypoints: list[float], crowd: bool = False) -> dict:
    """A COCO person annotation: a crowd is marked by its box alone, anyone else by a box-shaped polygon."""
    x, y, w, h = bbox
    return {
        "id": ann_id,
        "image_id": 1,
        "category_id": 1,
        "bbox": bbox,
        "area": w * h,
        "iscrowd": int(crowd),
        "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
        "keypoints": keypoints,
        "segmentation": [] if crowd else [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def _write_coco(root: Path) -> None:
    """Real-COCO layout: one image, a labelled person, an unlabelled one (polygon) and a crowd (box)."""
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    cv2.imwrite(str(root / "train2017" / "000000000001.jpg"), np.full((160, 200, 3), 120, np.uint8))
    labelled = [0.0] * 51
    labelled[5 * 3 : 5 * 3 + 3] = [60, 50, 2]
    labelled[16 * 3 : 16 * 3 + 3] = [70, 140, 1]
    document = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 200, "height": 160}],
        "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}],
        "annotations": [
            _person(1, [40, 30, 50, 120], labelled),
            _person(2, [130, 40, 40, 100], [0] * 51),
            _person(3, [0, 0, 30, 30], [0] * 51, crowd=True),
        ],
    }
    (root / "annotations" / "person_keypoints_train2017.json").write_text(json.dumps(document))


def test_whole_image_views_for_detection_do_not_centre_on_the_person():
    """Detection trains on views centred on the image: a person off-centre stays off-centre."""
    record = _record_with_markers()  # the person's box centre is (120, 105); the image centre (119.5, 99.5)
    shifted = ImageRecord(
        image=np.roll(record.image, -60, axis=1),
        people=[
            Person(
                record.people[0].keypoints - np.array([60, 0, 0], np.float32),
                record.people[0].box - np.array([60, 0, 60, 0], np.float32),
                False,
            )
        ],
        ignore_mask=record.ignore_mask,
    )
    common = {"input_size": (160, 160), "pixel_mean_bgr": MEAN, "flip_prob": 0.0, "scale_range": (1.0, 1.0)}
    person_view = PersonCropAugment(AugmentConfig(**common, max_rotation_deg=0.0), np.random.default_rng(0))
    whole_view = PersonCropAugment(
        AugmentConfig(**common, max_rotation_deg=0.0, centre_on_person=False), np.random.default_rng(0)
    )
    person_box = person_view(shifted).boxes[0]
    whole_box = whole_view(shifted).boxes[0]
    assert abs(float(person_box[0::2].mean()) - 79.5) < 3  # re-centred on the person
    assert float(whole_box[0::2].mean()) < 60  # left of centre, as in the picture
    # the whole-image view is the letterboxed picture: the box scales by 160/240 around the image centre
    expected_x1 = (float(shifted.people[0].box[0]) - 119.5) * 160 / 240 + 79.5
    assert abs(float(whole_box[0]) - expected_x1) < 2


def test_coco_layout_heatmap_peaks_and_mask(tmp_path):
    _write_coco(tmp_path)
    source = CocoKeypoints.from_root(tmp_path, "train")
    record = source[0]
    assert [p.labelled for p in record.people] == [True, False, False]
    assert record.ignore_mask[90, 150] == 1 and record.ignore_mask[10, 10] == 1  # unlabelled + crowd
    assert record.ignore_mask[90, 60] == 0 and record.ignore_mask[150, 110] == 0

    # no random change: the 200×160 image letterboxed into 224×224 (scale 1.12, centred)
    augment = PersonCropAugment(AugmentConfig(input_size=(224, 224), pixel_mean_bgr=MEAN, enabled=False))
    sample = augment(record)
    targets = keypoint_targets(sample, sigma=2.0)
    heatmaps, mask = targets["heatmaps"], targets["mask"][0]
    assert heatmaps.shape == (18, 56, 56) and mask.shape == (56, 56)
    for joint in (5, 16):
        x, y, _ = sample.keypoints[0, joint].tolist()
        hx, hy = canvas_to_heatmap(torch.tensor([x, y])).tolist()
        peak = int(heatmaps[joint].argmax())
        assert abs(peak % 56 - hx) <= 0.5 and abs(peak // 56 - hy) <= 0.5
        assert float(heatmaps[joint].max()) > 0.85
        assert float(heatmaps[17, peak // 56, peak % 56]) < 0.15  # background is low on a joint
    assert float(heatmaps[0].max()) == 0.0  # the nose is labelled by nobody
    # W: zero over the unlabelled person (canvas x 130..170 → ~×1.12 + pad), one over the labelled one
    unlabelled = sample.boxes[1]
    cx, cy = ((unlabelled[:2] + unlabelled[2:]) / 2 / 4).long().tolist()
    assert float(mask[cy, cx]) == 0.0
    lx, ly = (sample.keypoints[0, 5, :2] / 4).long().tolist()
    assert float(mask[ly, lx]) == 1.0
    assert 0.02 < float(1 - mask.mean()) < 0.3


def test_synthetic_set_batches_and_target_sheet(synth_dir, tmp_path):
    source = CocoKeypoints.from_root(synth_dir, "train")
    torch.manual_seed(0)
    dataset = PoseTrainingSet(source, AugmentConfig(input_size=(96, 96), pixel_mean_bgr=MEAN), sigma=2.0)
    batch = collate_pose_batch([dataset[0], dataset[1]])
    assert batch["images"].shape == (2, 3, 96, 96)
    assert batch["heatmaps"].shape == (2, 18, 24, 24) and batch["mask"].shape == (2, 1, 24, 24)
    assert batch["joint_weights"].shape == (2, 17)
    assert all(b.shape[-1] == 4 for b in batch["boxes"])
    out = render_target_sheet(dataset, tmp_path / "sheet.png", count=3)
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] >= 3 * 96
    from model.train.show_targets import target_sheet_from_folder

    sheet_path = target_sheet_from_folder(synth_dir, tmp_path / "cli.png", count=2, input_size=100)
    other = cv2.imread(str(sheet_path))
    assert other.shape[:2] == (96 + 4, 2 * (96 + 4))  # 100 rounds down to 96; tiles have a 4 px gutter


def test_prn_samples_hold_everyone_in_the_box_but_target_only_the_person():
    config = ModelConfig.preset("demo")
    a = np.zeros((17, 3), np.float32)
    b = np.zeros((17, 3), np.float32)
    a[0] = (50, 20, 2)  # nose of A
    a[15] = (50, 120, 2)
    b[0] = (70, 40, 2)  # nose of B, inside A's box
    b[15] = (300, 300, 2)  # far outside
    people = [
        Person(a, np.array([30, 10, 80, 130], np.float32), False),
        Person(b, np.array([60, 30, 110, 150], np.float32), False),
    ]
    grid_in, grid_target = prn_sample(people, 0, config)
    assert grid_in.shape == grid_target.shape == (17, *config.prn_grid)
    flat_in = grid_in[0].flatten()
    strong = (flat_in > 0.9).sum().item()
    assert strong >= 2  # both noses are in A's input
    # Targets are per-joint distributions (they sum to 1, like the PRN's softmax output).
    assert abs(float(grid_target[0].sum()) - 1.0) < 1e-4
    assert abs(float(grid_target[15].sum()) - 1.0) < 1e-4 and float(grid_in[15].max()) > 0.9
    # the target keeps only A's nose: its peak is where A's nose is, not B's
    peak = int(grid_target[0].argmax())
    assert float(grid_in[0].flatten()[peak]) > 0.9
    b_only = (grid_in[0] > 0.9) & (grid_target[0] < 1e-3 * float(grid_target[0].max()))
    assert int(b_only.sum()) >= 1  # B's nose is input-only
    assert float(grid_target[1:15].abs().sum()) == 0.0


def test_activity_and_prn_sets_from_the_synthetic_labels(synth_dir):
    source = CocoKeypoints.from_root(synth_dir, "train")
    activities = ModelConfig.preset("demo").activities
    poses = ActivityPoseSet.from_coco(source, activities)
    features, label = poses[0]
    assert features.shape == (51,) and 0 <= int(label) < len(activities)
    assert float(features[:34].min()) >= 0 and float(features[:34].max()) <= 1
    train, val = poses.split(0.25, seed=0)
    assert len(train) + len(val) == len(poses) and len(val) >= 1
    prn = PrnTrainingSet(source, ModelConfig.preset("demo"))
    x, y = prn[0]
    assert x.shape == y.shape and float(y.sum()) <= float(x.sum()) + 1e-4


def test_step_decay_is_the_reconstructed_schedule():
    assert step_decay_lr(1) == pytest.approx(4e-5)
    assert step_decay_lr(10, step_epochs=10) == pytest.approx(4e-5)
    assert step_decay_lr(11, step_epochs=10) == pytest.approx(4e-5 * 0.333)
    assert step_decay_lr(25, base_lr=1e-3, gamma=0.5, step_epochs=12) == pytest.approx(1e-3 * 0.25)
    with pytest.raises(ValueError):
        step_decay_lr(0)


def test_people_keep_their_canvas_size_whatever_the_crop():
    """Crops are windows of the network's canvas: a 96 px crop shows the person as large as a 192 px one
    (scale from the canvas, not from the crop, which used to shrink people with the crop)."""
    record = _record_with_markers()  # shoulders 40 px apart in a 200×240 image
    common = {
        "pixel_mean_bgr": MEAN,
        "flip_prob": 0.0,
        "scale_range": (1.0, 1.0),
        "max_rotation_deg": 0.0,
        "canvas_size": (192, 192),
    }
    widths = []
    for side in (192, 96):
        augment = PersonCropAugment(
            AugmentConfig(input_size=(side, side), **common), np.random.default_rng(0)
        )
        points = augment(record, main_person=0).keypoints[0]
        widths.append(float(points[6, 0] - points[5, 0]))
    assert widths[0] == pytest.approx(40 * 192 / 240, abs=0.5)  # the letterbox scale onto the canvas
    assert widths[1] == pytest.approx(widths[0], abs=0.5)


def test_centre_jitter_moves_the_crop_within_its_bound():
    record = _record_with_markers()
    common = {
        "input_size": (96, 96),
        "pixel_mean_bgr": MEAN,
        "flip_prob": 0.0,
        "scale_range": (1.0, 1.0),
        "max_rotation_deg": 0.0,
    }
    still = PersonCropAugment(AugmentConfig(**common), np.random.default_rng(0))
    jittered = PersonCropAugment(AugmentConfig(**common, centre_jitter=0.2), np.random.default_rng(0))
    base = still(record, main_person=0).keypoints[0, 5, :2]
    shifts = np.array(
        [(jittered(record, main_person=0).keypoints[0, 5, :2] - base).numpy() for _ in range(40)]
    )
    assert np.abs(shifts).max() <= 0.2 * 96 + 0.5  # at most the jitter, in crop pixels
    assert shifts.std(axis=0).min() > 3  # and it does move, both ways


def test_cosine_schedule_warms_up_then_decays_to_its_floor():
    from model.train.config import train_config
    from model.train.trainers import keypoint_lr

    config = train_config("demo")
    hyper = config.keypoints
    assert hyper.lr_schedule == "cosine" and hyper.warmup_steps > 0
    total = 1000
    lrs = [keypoint_lr(config, 1, step, total) for step in range(total)]
    warm = hyper.warmup_steps
    assert lrs[0] == pytest.approx(hyper.lr / warm)
    assert lrs[warm - 1] == pytest.approx(hyper.lr)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :], strict=False))  # monotone decay
    assert lrs[-1] == pytest.approx(hyper.lr * hyper.min_lr_factor, rel=0.05)
    # the seed preset keeps the reconstructed step decay, per epoch
    seed = train_config("default")
    assert keypoint_lr(seed, 31, 0, total) == pytest.approx(step_decay_lr(31, 4e-5, 0.333, 30))
