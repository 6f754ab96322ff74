"""The demo checkpoint's recipe: the sizes and settings of each ``make demo-weights`` stage.

``Recipe()`` is stage 1 (all four parts from random weights); ``continued`` (stage 2), ``refined``
(stage 3, and stage 5 on stage 4's output) and ``prn_noised`` (stage 4) each start from a finished
checkpoint, named by its digest, and change one thing. The recipe is written beside a run
(``WORK_DIR/recipe.json``): a run resumes only with the same recipe. ``model.evaluation.demo_weights``
runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Sizes of the run. The defaults are the full recipe: ≈ 1.5–2 h on 2 CPU cores with AVX-512 BF16 (see
    demo.md); an AVX2-only CPU trains in fp32 at ≈ 4.1 s a keypoint step, ≈ 5 h in all."""

    stage: int = 1  # which `make demo-weights` stage this is (the card names it and the stage it comes from)
    seed: int = 0
    images: int = 3000  # synthetic images, train + val (44 images/s to draw: data is cheap, steps are not)
    val_fraction: float = 0.05
    size: int = 480  # synthetic image side = the network's canvas
    max_people: int = 8  # as `posestream data synth` draws by default
    batch_size: int = 8  # keypoints and detection
    # keypoints: person-centred 256 px windows of the 480 canvas (people keep their inference size),
    # bf16 autocast + channels-last where native (2.7× the fp32 samples/s with AVX-512 BF16), Adam with
    # warm-up + cosine
    keypoint_epochs: int = 10  # ≈ 3560 steps of 8 crops
    keypoint_crop: int = 256
    keypoint_lr: float = 5e-4  # 2e-3 (with intermediate weight 0.1) left flat maps: model/train/config.py
    keypoint_warmup_steps: int = 150
    intermediate_weight: float = 1.0
    keypoint_freeze_backbone: bool = False  # stage 3: the keypoint FPN + subnet learn on the kept trunk
    flip_prob: float = 0.5
    centre_jitter: float = 0.15
    detection_epochs: int = 4  # ≈ 1420 steps, frozen backbone, 352 px windows roaming over the canvas
    detection_crop: int = 352
    prn_epochs: int = 12
    prn_real_pose_fraction: float = 0.5
    # stage 4: PRN inputs drawn as the backbone's peaks look (model/train/prn_noise.py; 0: clean truth)
    prn_box_jitter: float = 0.0
    prn_point_jitter: float = 0.0
    prn_mirror_prob: float = 0.0
    prn_drop_prob: float = 0.0
    activity_epochs: int = 40
    pose_extraction_images: int | None = 900  # train images whose predicted poses join activity training
    precision: str = "auto"  # bf16 where the CPU has it natively, else fp32 (model/train/precision.py)
    steps_per_epoch: int | None = None  # cap on batches per epoch (None: the whole train split)
    cv_epochs: int = 60  # activity MLP epochs per cross-validation fold
    eval_images: int | None = None  # val images for the pipeline AP (None: all)
    real_pose_scenes: int = 200
    empty_frames: int = 40
    unseen_scenes: int = 40  # scenes of a seed the recipe never draws, at the display threshold
    workers: int = 1  # DataLoader processes (results do not depend on it)
    empty_fraction: float = 0.0  # train images with nobody in them (detector negatives)
    init_checkpoint: str | None = None  # continue from this finished checkpoint (repo-relative path)
    init_sha256: str | None = None  # ... whose bytes are these
    fresh_parts: tuple[str, ...] = ()  # parts of the input checkpoint trained again from fresh weights

    def epochs_of(self, part: str) -> int:
        """Epochs this recipe gives the trainer ``part`` (keypoints, detection, prn, activity)."""
        return {
            "keypoints": self.keypoint_epochs,
            "detection": self.detection_epochs,
            "prn": self.prn_epochs,
            "activity": self.activity_epochs,
        }[part]

    def continued(self, checkpoint: Path) -> Recipe:
        """Stage 2: from ``checkpoint`` (stage 1), the detector trained again from fresh weights for the
        same epochs on the same images, a tenth of the train images replaced by empty frames (drawn
        backgrounds, noise) — its negatives; keypoints, PRN and activity are kept (0 epochs). Stage 1's
        detector is the control: the one change is the empty frames."""
        return dataclasses.replace(
            self,
            stage=2,
            keypoint_epochs=0,
            prn_epochs=0,
            activity_epochs=0,
            empty_fraction=0.1,
            fresh_parts=("detection",),
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    def refined(self, checkpoint: Path, keypoint_epochs: int = 4, stage: int = 3) -> Recipe:
        """Stage 3: from ``checkpoint`` (stage 2), the keypoint FPN + subnet trained further on its
        frozen ResNet trunk — the features its detector was trained on do not move, so detection and PRN
        are kept (0 epochs) — at half stage 1's peak lr with a short warm-up; activity trained again on the
        poses the refined model finds. Same synthetic set as stage 1 (seed, no empty frames). The control
        is the input checkpoint: the one change is more keypoint steps on the head. Stage 5 is the same
        on stage 4's output (``stage=5``): the head trained further, stage 4's PRN kept."""
        return dataclasses.replace(
            self,
            stage=stage,
            keypoint_epochs=keypoint_epochs,
            keypoint_lr=self.keypoint_lr / 2,
            keypoint_warmup_steps=50,
            keypoint_freeze_backbone=True,
            detection_epochs=0,
            prn_epochs=0,
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    def prn_noised(self, checkpoint: Path, prn_epochs: int = 2) -> Recipe:
        """Stage 4: from ``checkpoint`` (stage 3), the PRN trained further on inputs perturbed as the
        backbone's peaks are — loose boxes (0.1 of a side), joints 0.04·√area off, for half of the
        left/right pairs both sides' joints in both channels, a tenth of the peaks missing — at the seed's
        lr; activity trained again on the poses it then assigns. The amounts are those of the one-epoch A/B
        in README.md ("What holds keypoint AP down"): pipeline keypoint AP 0.099 (clean control) → 0.114
        on held-out scenes; 2 epochs, as the epochs A/B there chose (1 / 2 / 4: 0.128 / 0.132 / 0.133 from
        stage 3). Keypoints and detection are kept (0 epochs); the control is the input checkpoint."""
        return dataclasses.replace(
            self,
            stage=4,
            keypoint_epochs=0,
            detection_epochs=0,
            prn_epochs=prn_epochs,
            prn_box_jitter=0.1,
            prn_point_jitter=0.04,
            prn_mirror_prob=0.5,
            prn_drop_prob=0.1,
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    @property
    def prn_noise_active(self) -> bool:
        return any((self.prn_box_jitter, self.prn_point_jitter, self.prn_mirror_prob, self.prn_drop_prob))

    @classmethod
    def smoke(cls, seed: int = 0) -> Recipe:
        """The same steps at toy sizes: proves the recipe end to end in a few minutes."""
        return cls(
            seed=seed,
            images=24,
            val_fraction=0.25,
            size=128,
            max_people=3,
            batch_size=4,
            keypoint_epochs=2,
            keypoint_crop=96,
            keypoint_warmup_steps=2,
            detection_epochs=1,
            detection_crop=128,
            prn_epochs=1,
            activity_epochs=2,
            steps_per_epoch=3,
            cv_epochs=3,
            eval_images=4,
            real_pose_scenes=20,
            empty_frames=4,
            unseen_scenes=3,
            pose_extraction_images=8,
            workers=0,
        )


def _repo_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)
