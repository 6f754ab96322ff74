"""Multi-scale (and flip) test-time augmentation for the backbone stage.

The seed evaluates keypoints "using multiple scales in the input image". Each view is the frame
letterboxed on a canvas of ``scale × input_size`` (snapped to a multiple of 32), optionally also flipped
left-right. Views are merged before anything is decoded:

* heatmaps: every view's maps are resampled onto the reference grid (the ``input_size`` canvas at stride
  4) through the exact letterbox geometry of both canvases, a flipped view's maps flipped back with each
  left/right channel pair swapped, and the maps averaged; peaks are then extracted once;
* boxes: every view's boxes (after its own NMS) are mapped to original-image pixels, pooled and merged
  with one more NMS.

With one scale of 1.0 and no flip the backbone runs its plain single-view path, unchanged. The setting
is torch-free (Serve's consumer validates it at start-up); the tensor work is in ``model.view_merge``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

CANVAS_MULTIPLE = 32  # the trunk's total stride: canvas sides must be multiples of it


class TestTimeAugmentation(BaseModel):
    """Which views the backbone runs per frame. Default: one view, the plain model."""

    __test__ = False  # not a pytest test class, whatever its name says
    model_config = ConfigDict(extra="forbid", frozen=True)

    scales: tuple[float, ...] = Field((1.0,), min_length=1, max_length=8)
    flip: bool = False

    @field_validator("scales")
    @classmethod
    def _positive_distinct(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.25 <= scale <= 4.0 for scale in value):
            raise ValueError(f"scales must lie in [0.25, 4], got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"scales must be distinct, got {value}")
        return value

    @classmethod
    def parse(cls, scales: str | None, flip: bool = False) -> TestTimeAugmentation:
        """``"0.75,1.0,1.25"`` (a CLI option) → the setting; None or "" → one scale of 1.0."""
        if not scales:
            return cls(flip=flip)
        try:
            values = tuple(float(part) for part in scales.split(",") if part.strip())
        except ValueError as exc:
            raise ValueError(f"--scales takes comma-separated numbers, got {scales!r}") from exc
        return cls(scales=values, flip=flip)

    @property
    def single_view(self) -> bool:
        return self.scales == (1.0,) and not self.flip

    def canvases(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """The canvas (height, width) of each scale, each side snapped to a multiple of 32."""
        return [
            tuple(
                max(CANVAS_MULTIPLE, round(side * scale / CANVAS_MULTIPLE) * CANVAS_MULTIPLE)
                for side in input_size
            )
            for scale in self.scales
        ]

    def describe(self) -> str:
        scales = ",".join(f"{scale:g}" for scale in self.scales)
        return f"scales {scales}" + (" + flip" if self.flip else "")
