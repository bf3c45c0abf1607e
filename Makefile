# attnet: `make reproduce` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PRESET ?= synthetic
# pytest-xdist workers of the unit tests
JOBS   ?= 2

.PHONY: reproduce test test-unit test-slow test-notebooks lab lab-screenshot tensorboard bench system-deps clean

# Into reproduction/$(PRESET), compared at the end with the committed results/; run again, it keeps
# the finished runs and continues the others.
reproduce: $(STAMP) system-deps
	$(PY) -m attnet reproduce --preset $(PRESET)

# `make test`: the unit tests of tests/ and studies/ without the slow ones, then nbval on the
# notebooks. `make test-slow`: the slow end-to-end variants (paper presets, the studies' notebooks,
# the sru package's compiled kernel, kills at each point of an epoch, ...); CI runs both. A worker
# idle at the end steals tests from the other (--dist worksteal).
TESTS := $(PY) -m pytest -q -n $(JOBS) --dist worksteal -p no:cacheprovider --durations=10
test: test-unit test-notebooks

test-unit: $(STAMP) system-deps
	$(TESTS) -m "not slow"

test-slow: $(STAMP) system-deps
	$(TESTS) -m slow

test-notebooks: $(STAMP) system-deps
	$(PY) -m pytest -q --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider notebooks/

# JupyterLab on the venv's kernel ("attnet (venv)"), notebooks/ open; as root it needs --allow-root.
lab: $(STAMP) system-deps
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --MappingKernelManager.default_kernel_name=python3 \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# results/figures/jupyterlab_00_quickstart.png: 00_quickstart run in JupyterLab by headless chromium.
lab-screenshot: $(STAMP) system-deps
	$(PY) -m pytest -q tests/notebooks/test_lab.py --lab-screenshot results/figures/jupyterlab_00_quickstart.png

# TensorBoard over every run's <run>/tensorboard/ events (loss every run.log_every steps, epoch
# metrics, SA / LA maps of validation videos).
tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir results/runs

bench: $(STAMP)
	$(PY) -m attnet.bench model --backbone resnet34 --segments 12 --size 224 --batch 2

# The virtual environment: torch/torchvision pinned (they install from local disk here), the
# package in editable mode with its dev extra, and a "python3" Jupyter kernel inside the venv
# so papermill and nbval run the notebooks with this interpreter. No pip cache: the CUDA build of
# torch fills several GB, which a small disk does not have twice.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "attnet (venv)" >/dev/null
	touch $(STAMP)

# torchcodec decodes through the system's FFmpeg libraries (Debian: the ffmpeg package); the
# JupyterLab test drives Debian's chromium through chromium-driver. Installed only when missing.
SYSTEM_PACKAGES := ffmpeg:ffmpeg chromium:chromium chromedriver:chromium-driver
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's$$missing (ffmpeg for torchcodec, chromium for the JupyterLab test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "error: missing system packages:$$missing; install them (sudo apt-get install$$missing; conda: ffmpeg from conda-forge) and rerun" >&2; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
