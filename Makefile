# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= build/demo

.PHONY: install system-deps demo demo-offline test lint typecheck unit bench gpu-check clean

# torch first: 2.13.0 is a CPU build on local disk; a bare `torch` would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "mediapipe==0.10.21"
	touch $@

# The browser client: Face Mesh (npm, wasm + models in the tarball) and the page into web_client/dist.
WEB_CLIENT_DIST := web_client/dist/index.html
$(WEB_CLIENT_DIST): web_client/package-lock.json web_client/build.mjs $(wildcard web_client/src/*)
	cd web_client && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

install: $(VENV)/.installed $(WEB_CLIENT_DIST)

# Debian packages the tests use: coturn (the TURN relay integration test), janus (the SFU
# tests and bench --janus auto) and chromium (the browser tests drive /usr/bin/chromium
# through Playwright).
system-deps:
	@command -v turnserver >/dev/null 2>&1 && command -v janus >/dev/null 2>&1 && \
		test -x /usr/bin/chromium || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq coturn janus chromium >/dev/null; }

# The live demo: server + built-in avatar + built-in sender (room "demo"); Ctrl-C to stop.
demo: install
	$(BIN)/telepresence serve --demo-sender --port 8080

# Offline: synthesise codes for the bundled demo avatar and render a video on the CPU.
DEMO_AVATAR := npga/assets/demo
demo-offline: install
	mkdir -p $(DEMO_DIR)
	$(BIN)/npga make-codes $(DEMO_DIR)/codes.npz --avatar $(DEMO_AVATAR) --seconds 4
	$(BIN)/npga render $(DEMO_AVATAR) --codes $(DEMO_DIR)/codes.npz \
		--out $(DEMO_DIR)/demo.mp4 --resolution 256 --camera orbit
	$(BIN)/npga info $(DEMO_AVATAR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install system-deps
	$(BIN)/pytest

test: lint typecheck unit

bench: install
	$(BIN)/npga bench render --device cpu --gaussians 20000 --resolution 256 --json --compare-naive
	$(BIN)/npga bench track --json
	$(BIN)/telepresence bench --sessions 1 --seconds 10 --resolution 256 --json

# On a machine with CUDA and gsplat (pip install -e '.[cuda]'): parity tests, GPU benchmarks and the
# training recipe timed on the GPU (docs/benchmarks.md#gpu has one H100's figures).
gpu-check:
	$(BIN)/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA here'"
	$(BIN)/pytest -m gpu -v
	$(BIN)/npga bench render --device cuda --gaussians 100000 --resolution 802 --width 550 --json
	$(BIN)/npga bench render --device cuda --gaussians 100000 --resolution 802 --width 550 --batch 8 --json
	$(BIN)/telepresence bench --device cuda --sessions 8 --client-processes 8 --resolution 512 --seconds 10 --json
	rm -rf build/gpu-check && $(BIN)/npga synth build/gpu-check/cap --frames 120 --cameras 8 --resolution 256 --seed 0
	$(BIN)/npga train build/gpu-check/cap --out build/gpu-check/npga --iters 4000 --max-gaussians 40000 --device cuda
	$(BIN)/npga eval build/gpu-check/npga build/gpu-check/cap --device cuda --json build/gpu-check/npga.json
	$(BIN)/npga eval build/gpu-check/npga build/gpu-check/cap --device cuda --fit-poses 100 --json build/gpu-check/npga_fit.json
	$(BIN)/npga eval build/gpu-check/npga build/gpu-check/cap --device cuda --fit-poses 100 --codes monocular --json build/gpu-check/npga_live.json
	# the bundled demo on a performance it never saw (docs/evaluation.md; issue targets: >= 28 dB, <= 50 %, mouth +2 dB)
	$(BIN)/npga synth build/gpu-check/cap1 --frames 120 --cameras 8 --resolution 256 --seed 1
	$(BIN)/npga eval npga/assets/demo build/gpu-check/cap1 --device cuda --fit-poses 100 --json build/gpu-check/demo_unseen.json
	# npga create on a 60 s wide-motion clip at 512 px (needs mediapipe: Face Mesh and segmentation)
	$(BIN)/npga synth build/gpu-check/wide --frames 1800 --cameras 8 --resolution 512 --seed 0 --head-motion wide
	$(BIN)/npga data video build/gpu-check/wide --out build/gpu-check/wide_front.mp4
	$(BIN)/npga create build/gpu-check/wide_front.mp4 --out build/gpu-check/created --device cuda
	$(BIN)/npga eval-views build/gpu-check/created build/gpu-check/wide --cameras cam_01 cam_05 --device cuda --json build/gpu-check/created_views.json

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
