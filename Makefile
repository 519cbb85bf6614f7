# make reproduce: every section on the embedded CPU backends under out/, then the report out/report/index.html
# make test:      the test suite (unit tests, reproductions with golden checks, benchmarks once), on WORKERS=2 processes
# Both create .venv if it is missing and install the project with the pins in constraints.txt.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`; each takes its share of the cores (harness.runner.thread_count).
# On a 2-core machine -n 2 ran the suite in 357 s against 463 s serial (README "Scaling out").
WORKERS ?= 2

.PHONY: install data test reproduce bench golden gpu-wheels grade-tools clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

data: install
	$(BIN)/python -m harness data mnist

test: data
	$(BIN)/python -m pytest -n $(WORKERS) $(PYTEST_ARGS)

reproduce: data
	$(BIN)/python -m harness run all --out out
	$(BIN)/python -m harness report --outputs out --out out/report

# Timed benchmarks (the test run executes each once, untimed); saved under .benchmarks/<gpu or cpu>/, so
# --benchmark-compare only ever compares runs from the same kind of machine.
BENCH_MACHINE ?= $(or $(shell nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '-'),cpu)
bench: data
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-autosave \
		--benchmark-storage=.benchmarks/$(BENCH_MACHINE) $(PYTEST_ARGS)

golden: data
	$(BIN)/python -m harness golden update

# What the GPU image lacks (diffusers at our version and its need importlib_metadata, as cp312 wheels) and
# the cached MNIST (that machine cannot fetch it), into .whl/; carry .whl to the device and run
# `bash scripts/gpu_check.sh` there (README "GPU runners").
GPU_WHEELS = diffusers==$(shell $(BIN)/python -c "import diffusers; print(diffusers.__version__)" 2>/dev/null) importlib_metadata
gpu-wheels: data
	rm -rf .whl && mkdir -p .whl
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)
	$(BIN)/python -c "from harness.partb.mnist import export_idx; export_idx('.whl/mnist')"

# bubblewrap, the sandbox of `check-impl FOLDER` (README "Grade a class"), from Debian's packages where
# apt-get can run; elsewhere one line says what the sandbox falls back to.
grade-tools:
	@command -v bwrap >/dev/null || (command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) || \
		echo "bubblewrap not installed: check-impl FOLDER falls back to unshare (submissions can read what you can read)"

clean:
	rm -rf out .pytest_cache .benchmarks
