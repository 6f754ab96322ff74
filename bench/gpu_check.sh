#!/usr/bin/env bash
# A GPU figure in under 8 minutes on one GPU: train the `default` preset (ResNet-50 FPN, 480 px) on a
# generated synthetic set for a few minutes in bf16 and report training images/s, then inference frames/s
# at 480 px at batch 1 and 8 (the MultiPoseNet paper: 23 frames/s on a GTX 1080 Ti).
#
#   bench/gpu_check.sh                       # on the GPU (about 1 min data + MINUTES training + 1 min infer)
#   bench/gpu_check.sh --device cpu --smoke  # tiny sizes on the CPU: proves the script (tests run it)
#
# Options: --device cuda|cpu  --smoke  --minutes M (training time, default 4)  --out DIR
#          --backbone-weights none|imagenet|PATH (default none: GPU machines may be offline; the figure
#          is a speed, not a quality, so the trunk's start does not matter)
# Writes DIR/gpu_check.json (default bench/results/gpu_check/) and prints it.
set -euo pipefail

DEVICE=cuda
SMOKE=0
MINUTES=4
OUT=bench/results/gpu_check
BACKBONE=none
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --minutes) MINUTES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --backbone-weights) BACKBONE="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
POSESTREAM=("$PYTHON" -m workers.cli)  # the `posestream` command of this checkout
WORK="$(mktemp -d -t gpu-check-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

if [[ "$SMOKE" == 1 ]]; then
  # tiny: 8 images of 128 px, two 2-step epochs, inference at 128 px; a CPU has no native bf16 everywhere
  IMAGES=8; SIZE=128; BATCH=2; STEPS=2; EPOCHS=2; INFER_SIZE=128; ITERATIONS=1; PRECISION=auto
  TRAIN_LIMIT=600
else
  IMAGES=512; SIZE=480; BATCH=8; STEPS=25; EPOCHS=1000; INFER_SIZE=480; ITERATIONS=20; PRECISION=bf16
  TRAIN_LIMIT=$((MINUTES * 60))
fi
CORES="$(nproc)"

echo "== synthetic data: $IMAGES images of ${SIZE} px" >&2
"${POSESTREAM[@]}" data synth --out "$WORK/data" --images "$IMAGES" --size "${SIZE}x${SIZE}" \
  --val-fraction 0 --workers "$((CORES > 1 ? CORES - 1 : 1))" >&2

echo "== train keypoints, default preset, $PRECISION, ${TRAIN_LIMIT} s at most" >&2
STARTED=$(date +%s)
set +e
# stopped by the clock: every finished epoch is on disk (run checkpoint + epochs.jsonl), which is all we read
timeout --signal=INT "$TRAIN_LIMIT" "${POSESTREAM[@]}" train keypoints --data "$WORK/data" \
  --preset default --input-size "$SIZE" --backbone-weights "$BACKBONE" --precision "$PRECISION" \
  --channels-last --batch-size "$BATCH" --epochs "$EPOCHS" --max-steps "$STEPS" \
  --loader-workers "$((CORES > 8 ? 8 : (CORES > 1 ? CORES - 1 : 0)))" --device "$DEVICE" \
  --checkpoint "$WORK/model.pt" --out "$WORK/runs" >&2
TRAIN_RC=$?
set -e
if [[ "$TRAIN_RC" != 0 && "$TRAIN_RC" != 124 && "$TRAIN_RC" != 130 ]]; then
  echo "training failed (exit $TRAIN_RC)" >&2
  exit "$TRAIN_RC"
fi
TRAIN_S=$(( $(date +%s) - STARTED ))

echo "== inference at ${INFER_SIZE} px, batch 1 and 8" >&2
"$PYTHON" - "$WORK" "$DEVICE" "$INFER_SIZE" "$ITERATIONS" "$TRAIN_S" "$PRECISION" "$OUT/gpu_check.json" <<'EOF'
import json
import os
import sys
import time
from pathlib import Path

import torch

from bench.common import build_model, forced_persons_config, synthetic_frames
from model.pipeline import PosePipeline

work, device, side, iterations, train_s, precision, out = sys.argv[1:]
side, iterations = int(side), int(iterations)
epochs = [json.loads(line) for line in (Path(work) / "runs" / "keypoints.epochs.jsonl").read_text().splitlines()]
if not epochs:
    raise SystemExit("no training epoch finished: raise --minutes")
# the first epoch carries the warm-up (cuDNN autotuning, first allocations): the rest is the figure
steady = epochs[1:] or epochs
# the trained weights in a network whose detector keeps its top 4 boxes: a few minutes of training leave
# the detector untrained (scores below threshold, nobody found), and PRN + activity must run as they do
# on a trained model seeing people (bench.common.forced_persons_config)
PERSONS = 4
model = build_model(forced_persons_config("default", side, PERSONS), Path(work) / "model.pt")
pipeline = PosePipeline(model, "gpu-check", device)
inference = {"persons_per_frame": PERSONS}
for batch in (1, 8):
    frames = synthetic_frames(batch, side)
    pipeline.predict(frames)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(iterations):
        pipeline.predict(frames)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    inference[f"batch_{batch}_frames_per_s"] = round(batch * iterations / (time.perf_counter() - started), 2)
report = {
    "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
    "torch": torch.__version__,
    "precision": precision,
    "training": {
        "preset": "default",
        "epochs_finished": len(epochs),
        "images_per_s_per_epoch": [round(e["images_per_s"], 2) for e in epochs],
        "images_per_s": round(sum(e["images_per_s"] for e in steady) / len(steady), 2),
        "wall_s": int(train_s),
        "last_loss": epochs[-1]["loss"],
    },
    "inference": {"side_px": side, "iterations": iterations, **inference},
    "paper_reference": "MultiPoseNet: 23 frames/s on a GTX 1080 Ti (480 px)",
    "load_average": [round(v, 2) for v in os.getloadavg()],
    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
}
Path(out).write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps(report, indent=1))
EOF
