# Two commands on a fresh machine:  `make demo` (set up + train/eval/export a hover policy)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, so the project's `torch>=2.4` is already satisfied: 2.13.0 is a CPU build on the CI/dev
# machines; on a GPU machine the same pin from PyPI is the CUDA build. Override e.g. TORCH="torch==2.9.1".
TORCH  ?= torch==2.13.0
EXTRAS ?= dev
RUN    ?= runs/hover-demo

.PHONY: setup chromium ext-envs lerobot-venv demo test lint bench clean

setup: $(VENV)/.installed chromium

# The browser teleop page is tested in Debian's chromium driven by Playwright (no browser download): install it
# when missing and we may (root with apt-get); otherwise say that those tests will skip. Instant when present.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt) for the browser page tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: no chromium found; the browser page tests will skip (apt-get install chromium)"; fi; }

# External benchmarks pin their own simulator/OpenCV releases, so each gets a venv of its own (.venv-NAME) with the
# benchmark, the policy runtime's imports and robolearn without its dependencies (no torch): `robolearn eval
# ARTIFACT --external NAME` runs the artifact there; robosuite (MuJoCo <= 3.9) backs the `robosuite-*` tasks, which
# step it in a worker process. Build times (2-core machine, warm pip cache): gym-pusht 28 s, gym-aloha 65 s,
# robosuite 86 s. `make test` builds them (`make test EXT_ENVS=` skips them: their tests then skip, saying why);
# `make demo` does not need them.
# robosuite is opt-in (`make test EXT_ENVS="gym-pusht gym-aloha robosuite"`): its venv is the slowest to build and
# CI must stay well under 15 minutes; without it the two robosuite-lift tests skip, saying so.
EXT_ENVS ?= gym-pusht gym-aloha
EXT_PKGS_gym-pusht := gym-pusht
EXT_PKGS_gym-aloha := gym-aloha
EXT_PKGS_robosuite := "robosuite>=1.5,<1.6" "mujoco<=3.9"
EXT_RUNTIME := numpy pyyaml safetensors onnxruntime
ext-envs: $(foreach e,$(EXT_ENVS),.venv-$(e)/.installed)

.venv-%/.installed: pyproject.toml Makefile
	rm -rf .venv-$*
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet --upgrade pip
	.venv-$*/bin/pip install --quiet $(EXT_PKGS_$*) $(EXT_RUNTIME)
	.venv-$*/bin/pip install --quiet --no-deps -e .
	.venv-$*/bin/python -c "import robolearn.export.runtime, importlib.util as u; assert u.find_spec('torch') is None"
	touch $@

# LeRobot's own data loader, for `robolearn bench dataset-windows --lerobot-python .venv-lerobot/bin/python`.
# Opt-in and outside `make test`: lerobot pins its own torch (a multi-GB CUDA download; 5 min here), and its default
# video backend (torchcodec) needs FFmpeg's shared libraries (Debian: libavcodec-dev libavformat-dev libavutil-dev
# libswscale-dev libswresample-dev libavdevice-dev libavfilter-dev), else use `--lerobot-backend pyav`.
LEROBOT ?= lerobot==0.4.4
lerobot-venv: .venv-lerobot/.installed
.venv-lerobot/.installed:
	rm -rf .venv-lerobot
	$(PYTHON) -m venv .venv-lerobot
	.venv-lerobot/bin/pip install --quiet "$(LEROBOT)" torchcodec
	.venv-lerobot/bin/python -c "import lerobot.datasets.lerobot_dataset"
	touch $@

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	rm -rf $(RUN)
	$(BIN)/robolearn train --config configs/quadrotor-hover.yaml --run-dir $(RUN)
	$(BIN)/robolearn eval $(RUN) --episodes 1000
	$(BIN)/robolearn export $(RUN) --target onnx c
	$(BIN)/robolearn eval $(RUN)/artifact --episodes 1000 --no-video
	@echo
	@echo "run:       $(RUN)   (tensorboard --logdir $(RUN)/tb)"
	@echo "plot:      $(RUN)/eval/flight.png"
	@echo "video:     $(RUN)/eval/flight.mp4"
	@echo "artifact:  $(RUN)/artifact  (policy.onnx, weights.safetensors, manifest.json, c/)"

# Tests run in TEST_JOBS processes (pytest-xdist), each test file in one process (fixtures and module state stay
# together); ROS tests get a DDS domain per process and torchrun tests a port per process. On the 2-core CI
# machine 2 jobs take ~7 min instead of ~11. `make test TEST_JOBS=0` runs them in this process, in order.
TEST_JOBS ?= 2
test: setup ext-envs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/robolearn bench quadrotor-sim --json
	$(BIN)/robolearn bench quadrotor-hover-time --json

clean:
	rm -rf $(VENV) .venv-* runs .pytest_cache .ruff_cache
