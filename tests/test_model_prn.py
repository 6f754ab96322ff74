"""Pose Residual Network: assignment of peaks to crossing persons, its baseline, its loss; activity MLP."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from model_helpers import pose_in_box

from model.activity import ActivityClassifier, encode_poses
from model.config import ModelConfig
from model.predictions import Detections
from model.prn import PoseResidualNetwork, enlarge_boxes, render_prn_input

BOX_A = (100.0, 100.0, 200.0, 300.0)
BOX_B = (150.0, 120.0, 250.0, 320.0)  # overlaps A by half: the two persons cross


def fit_one_batch(module: torch.nn.Module, loss_of: Callable[[], torch.Tensor], steps: int) -> list[float]:
    """``steps`` Adam steps (lr 1e-3) on the loss ``loss_of`` computes on a fixed batch → each step's loss."""
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = loss_of()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def crossing_scene() -> tuple[Detections, np.ndarray, np.ndarray]:
    """Two standing persons whose boxes overlap; every joint has one peak per person, B's peaks stronger."""
    pose_a, pose_b = pose_in_box(BOX_A), pose_in_box(BOX_B)
    peaks = np.zeros((17, 4, 3), dtype=np.float32)  # K = 4: two real peaks, two empty slots
    peaks[:, 0, :2], peaks[:, 0, 2] = pose_b, 0.9
    peaks[:, 1, :2], peaks[:, 1, 2] = pose_a, 0.6
    detections = Detections(
        boxes=np.array([BOX_A, BOX_B], dtype=np.float32),
        scores=np.array([0.95, 0.9], dtype=np.float32),
        peaks=peaks,
        width=400,
        height=400,
    )
    return detections, pose_a, pose_b


def pose_prior_prn(config: ModelConfig) -> PoseResidualNetwork:
    """A PRN whose weights encode where each joint of an upright person lies in its box: zero weights and an
    output bias of the template pose rendered on the grid, so the residual favours the right peaks."""
    torch.manual_seed(0)
    prn = PoseResidualNetwork(config).eval()
    box = torch.tensor([[0.0, 0.0, 100.0, 200.0]])
    template = torch.from_numpy(
        np.concatenate([pose_in_box((0.0, 0.0, 100.0, 200.0)), np.ones((17, 1), np.float32)], 1)
    )
    prior = render_prn_input(
        template[:, None, :], enlarge_boxes(box, config.prn_box_enlarge), config
    )  # (1, 17, H, W)
    with torch.no_grad():
        prn.output.weight.zero_()
        prn.output.bias.copy_(20.0 * prior.flatten())
    return prn


def accuracy(persons, truths) -> float:
    """Fraction of (person, joint) pairs given that person's own peak."""
    assert len(persons) == len(truths)
    per_joint = [
        np.all(np.isclose(person.keypoints[:, :2], truth, atol=1e-3), axis=1)
        for person, truth in zip(persons, truths, strict=True)
    ]
    return float(np.mean(per_joint))


def test_prn_assigns_every_joint_of_crossing_persons_and_beats_the_baseline():
    torch.set_num_threads(1)
    config = ModelConfig.preset("default", prn_hidden=8)  # the seed's 56×36 grid
    prn = pose_prior_prn(config)
    detections, pose_a, pose_b = crossing_scene()
    # Both persons' peaks lie inside each enlarged box for most joints: a real ambiguity.
    grid_boxes = enlarge_boxes(torch.tensor(detections.boxes), config.prn_box_enlarge).numpy()
    inside_a = [
        (grid_boxes[0, 0] <= x <= grid_boxes[0, 2]) and (grid_boxes[0, 1] <= y <= grid_boxes[0, 3])
        for x, y in pose_b
    ]
    assert sum(inside_a) >= 10

    network = prn.assign([detections], use_network=True)[0]
    assert accuracy(network, [pose_a, pose_b]) == 1.0
    assert all(np.all(person.keypoints[:, 2] > 0) for person in network)
    np.testing.assert_allclose(network[0].keypoints[:, 2], 0.6)  # the chosen peak's own score
    assert network[0].bbox == BOX_A and network[1].score == np.float32(0.9)

    baseline = prn.assign([detections], use_network=False)[0]
    baseline_accuracy = accuracy(baseline, [pose_a, pose_b])
    assert baseline_accuracy < 1.0  # the stronger peaks of B near A's centre fool it
    assert baseline_accuracy > 0.0  # but it is a real assignment (joints outside the other box are right)


def test_prn_skips_joints_without_peaks_and_handles_no_persons():
    config = ModelConfig.preset("demo")
    prn = pose_prior_prn(config)
    detections, pose_a, _ = crossing_scene()
    peaks = detections.peaks.copy()
    peaks[3:5] = 0  # ears not found anywhere
    one = Detections(detections.boxes[:1], detections.scores[:1], peaks, 400, 400)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), peaks, 400, 400)
    [[person], none] = prn.assign([one, empty])
    assert none == []
    assert np.all(person.keypoints[3:5] == 0)
    found = np.r_[0:3, 5:17]
    np.testing.assert_allclose(person.keypoints[found, :2], pose_a[found], atol=1e-3)


def test_prn_output_is_a_distribution_per_joint_and_its_loss_falls():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = ModelConfig.preset("demo", prn_hidden=64)
    prn = PoseResidualNetwork(config).train()
    boxes = torch.tensor([[0.0, 0.0, 100.0, 200.0]] * 4)
    own = torch.from_numpy(np.concatenate([pose_in_box((0, 0, 100, 200)), np.ones((17, 1), np.float32)], 1))
    other = torch.from_numpy(
        np.concatenate([pose_in_box((40, 20, 140, 220)), np.ones((17, 1), np.float32)], 1)
    )
    inputs = render_prn_input(
        torch.stack([own, other], 1), enlarge_boxes(boxes, 0.2), config
    )  # (4, 17, H, W)
    target = render_prn_input(own[:, None, :], enlarge_boxes(boxes, 0.2), config)
    output = prn(inputs)
    assert torch.allclose(output.flatten(2).sum(-1), torch.ones(4, 17), atol=1e-5)
    losses = fit_one_batch(prn, lambda: prn.loss(prn(inputs), target)["prn"], steps=25)
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0]


def test_activity_encoding_marks_missing_joints_and_classifier_learns():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    keypoints = torch.zeros(2, 17, 3)
    keypoints[0, :, :2] = torch.from_numpy(pose_in_box((10, 20, 110, 220)))
    keypoints[0, :, 2] = 1.0
    keypoints[0, 4, 2] = 0.0  # right ear missing
    boxes = torch.tensor([[10.0, 20.0, 110.0, 220.0], [0.0, 0.0, 50.0, 50.0]])
    features = encode_poses(keypoints, boxes)
    assert features.shape == (2, 51)
    assert torch.all(features[0, 34:] == torch.tensor([1.0] * 4 + [0.0] + [1.0] * 12))
    assert features[0, 8] == 0 and features[0, 9] == 0  # the missing joint's x, y
    assert torch.allclose(features[0, 0:2], torch.tensor([0.5, 0.08]))
    assert torch.all(features[1] == 0)  # nothing found: all zeros, visibility says so

    config = ModelConfig.preset("demo", activity_hidden=(128, 32))
    classifier = ActivityClassifier(config).train()
    inputs = torch.rand(32, 51)
    labels = torch.randint(0, len(config.activities), (32,))
    losses = fit_one_batch(
        classifier, lambda: classifier.loss(classifier(inputs), labels)["activity"], steps=30
    )
    assert losses[-1] < 0.8 * losses[0]


def test_prn_trained_on_synthetic_people_assigns_held_out_joints_better_than_untrained(tmp_path):
    """Real learning: a few epochs on a small synthetic set lift the share of held-out joints given to their
    own person (ground-truth peaks and boxes), most where another person's joint shares the box."""
    from model.data.synth import generate_dataset
    from model.train.coco import CocoKeypoints
    from model.train.samples import PrnTrainingSet, assignment_accuracy

    torch.manual_seed(0)
    torch.set_num_threads(1)
    generate_dataset(tmp_path, images=70, seed=5, val_fraction=0.3, size=(160, 160), progress=False)
    config = ModelConfig.preset("demo")
    train_set = PrnTrainingSet(CocoKeypoints.from_root(tmp_path, "train"), config)
    val = CocoKeypoints.from_root(tmp_path, "val")
    held_out = [val.people(i) for i in range(len(val))]
    inputs, targets = (
        torch.stack(t) for t in zip(*[train_set[i] for i in range(len(train_set))], strict=True)
    )
    assert torch.allclose(targets.flatten(2).sum(-1)[targets.flatten(2).sum(-1) > 0], torch.tensor(1.0))

    prn = PoseResidualNetwork(config)
    untrained = assignment_accuracy(prn, held_out)
    baseline = assignment_accuracy(prn, held_out, use_network=False)
    assert untrained["ambiguous_joints"] >= 50  # crowded boxes are there to be resolved
    optimiser = torch.optim.Adam(prn.parameters(), lr=1e-3)
    prn.train()
    for _ in range(15):
        for batch in torch.randperm(len(inputs)).split(32):
            loss = prn.loss(prn(inputs[batch]), targets[batch])["prn"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    trained = assignment_accuracy(prn, held_out)
    print(f"untrained {untrained}, baseline {baseline}, trained {trained}")
    assert trained["all"] > untrained["all"] + 0.05
    assert trained["ambiguous"] > untrained["ambiguous"] + 0.1
    assert trained["ambiguous"] > baseline["ambiguous"]
