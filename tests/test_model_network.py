"""MultiPoseNet: shapes for every backbone depth, losses that fall when one batch is over-fitted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import force_detections, make_model, pose_in_box, small_config

from model.config import ModelConfig
from model.decode import HEATMAP_STRIDE


@pytest.mark.parametrize(
    ("depth", "size", "c5_channels"),
    [(18, 64, 512), (34, 64, 512), (50, 64, 2048), (101, 32, 2048), (152, 32, 2048)],
)
def test_shapes_for_every_backbone_depth(depth, size, c5_channels):
    torch.set_num_threads(1)
    config = small_config(backbone_depth=depth, input_size=(size, size), peak_threshold=0.0)
    model = force_detections(make_model(config))
    images = torch.randn(2, 3, size, size) * 50

    with torch.no_grad():
        features = model.backbone(images)
        assert [f.shape[1] for f in features.values()][-1] == c5_channels
        assert [f.shape[-1] for f in features.values()] == [size // 4, size // 8, size // 16, size // 32]
        keypoint_pyramid = model.keypoint_fpn(features)
        assert [p.shape[1:] for p in keypoint_pyramid] == [(32, size // s, size // s) for s in (4, 8, 16, 32)]
        heatmaps, intermediates = model.keypoint_head(keypoint_pyramid)
        assert (
            heatmaps.shape == (2, 18, size // HEATMAP_STRIDE, size // HEATMAP_STRIDE) and intermediates == []
        )
        detection_pyramid = model.detection_fpn(features)
        assert [p.shape[-1] for p in detection_pyramid] == [
            max(1, -(-size // s)) for s in (8, 16, 32, 64, 128)
        ]
        outputs = model.detection_head(images, detection_pyramid)
        anchors_total = sum(p.shape[-1] * p.shape[-2] for p in detection_pyramid) * config.num_anchors
        assert outputs["cls_logits"].shape == (2, anchors_total, 1)
        assert outputs["bbox_regression"].shape == (2, anchors_total, 4)

    results = model(images)
    assert len(results) == 2
    for result in results:
        count = result["boxes"].shape[0]
        assert 1 <= count <= config.max_persons
        assert result["scores"].shape == (count,) and result["keypoints"].shape == (count, 17, 3)
        assert result["activity_scores"].shape == (count, 4)
        assert torch.allclose(result["activity_scores"].sum(1), torch.ones(count), atol=1e-5)
        assert result["activity"] == [config.activities[i] for i in result["activity_scores"].argmax(1)]
        boxes = result["boxes"]
        assert (
            torch.all(boxes[:, :2] >= 0)
            and torch.all(boxes[:, 2:] <= size)
            and torch.all(boxes[:, 2:] > boxes[:, :2])
        )


def test_each_pyramid_level_gets_its_own_anchor_sizes_on_its_own_stride():
    config = small_config(input_size=(256, 256))
    head = make_model(config).detection_head
    images = torch.zeros(1, 3, 256, 256)
    pyramid = [torch.zeros(1, 32, 256 // stride, 256 // stride) for stride in (8, 16, 32, 64, 128)]
    anchors = head.anchors(images, pyramid)[0]
    per_level = [p.shape[-2] * p.shape[-1] * config.num_anchors for p in pyramid]
    assert anchors.shape == (sum(per_level), 4)

    for level, (level_anchors, stride) in enumerate(
        zip(anchors.split(per_level), (8, 16, 32, 64, 128), strict=True)
    ):
        sides = (level_anchors[:, 2:] - level_anchors[:, :2]).prod(dim=1).sqrt()  # √area = size·scale
        expected = torch.tensor([config.anchor_sizes[level] * scale for scale in config.anchor_scales])
        distance = (sides[:, None] - expected[None, :]).abs()  # (anchors, scales)
        assert bool((distance.min(dim=1).values < 2).all()), (level, sides.unique())
        assert bool((distance.min(dim=0).values < 2).all()), (level, sides.unique())
        centres = (level_anchors[:, :2] + level_anchors[:, 2:]) / 2
        xs = torch.unique(centres[:, 0])
        assert torch.allclose(xs[1:] - xs[:-1], torch.full_like(xs[1:], float(stride))), level


def test_overfitting_one_batch_makes_every_loss_fall():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = small_config(input_size=(64, 64))
    model = make_model(config).train()
    images = torch.randn(2, 3, 64, 64) * 40
    boxes = [(8.0, 4.0, 40.0, 60.0), (20.0, 10.0, 56.0, 62.0)]
    targets = []
    for box in boxes:
        keypoints = np.concatenate([pose_in_box(box), np.full((17, 1), 2.0, np.float32)], axis=1)
        keypoints[3, 2] = 0  # one unlabelled joint
        targets.append(
            {
                "boxes": torch.tensor([box]),
                "keypoints": torch.from_numpy(keypoints)[None],
                "mask": torch.ones(16, 16),
                "joint_weights": torch.ones(17),
            }
        )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    history: dict[str, list[float]] = {}
    for _ in range(60):
        losses = model(images, targets)
        total = sum(losses.values())
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        for name, value in losses.items():
            history.setdefault(name, []).append(value.item())
    assert set(history) == {
        "keypoint_heatmap",
        "keypoint_intermediate",
        "detection_classification",
        "detection_box",
    }
    for name, values in history.items():
        assert np.isfinite(values).all(), name
        assert np.mean(values[-3:]) < 0.7 * np.mean(values[:3]), (name, values[:3], values[-3:])


def test_training_runs_only_the_parts_with_targets_and_rejects_bad_input():
    config = small_config()
    model = make_model(config).train()
    images = torch.randn(1, 3, 64, 64)
    only_boxes = model(images, [{"boxes": torch.zeros((0, 4))}])  # an image without persons
    assert set(only_boxes) == {"detection_classification", "detection_box"}
    assert all(torch.isfinite(v) for v in only_boxes.values())
    only_keypoints = model(images, [{"keypoints": torch.zeros((0, 17, 3))}])
    assert set(only_keypoints) == {"keypoint_heatmap", "keypoint_intermediate"}
    with pytest.raises(ValueError, match="targets"):
        model(images)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 50, 64), [{"boxes": torch.zeros((0, 4))}])
    with pytest.raises(ValueError, match="x2 > x1"):
        model(images, [{"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]])}])


def test_presets_and_config_validation():
    default, demo = ModelConfig.preset("default"), ModelConfig.preset("demo")
    assert default.backbone_depth == 50 and default.prn_grid == (56, 36) and default.prn_hidden == 1024
    assert default.activity_hidden == (3072, 128) and default.activity_dropout == 0.3
    assert demo.backbone_depth == 18 and demo.prn_grid[0] < 56
    assert demo.activities == ("walking", "running", "sitting", "standing")
    with pytest.raises(ValueError):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError):
        ModelConfig(input_size=(100, 100))
    with pytest.raises(ValueError):
        ModelConfig(backbone_depth=42)


def test_device_is_chosen_automatically_and_overridable():
    from model.config import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        resolve_device("warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
