# attnet: `make reproduce` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PRESET ?= synthetic

.PHONY: reproduce test test-unit test-notebooks lab bench system-deps clean

reproduce: $(STAMP) system-deps
	$(PY) -m attnet reproduce --preset $(PRESET)

test: test-unit test-notebooks

test-unit: $(STAMP) system-deps
	$(PY) -m pytest -q tests

test-notebooks: $(STAMP) system-deps
	$(PY) -m pytest -q --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider notebooks/

lab: $(STAMP) system-deps
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) -m attnet.bench model --backbone resnet34 --segments 12 --size 224 --batch 2

# The virtual environment: torch/torchvision pinned (they install from local disk here), the
# package in editable mode with its dev extra, and a "python3" Jupyter kernel inside the venv
# so papermill and nbval run the notebooks with this interpreter.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "attnet (venv)" >/dev/null
	touch $(STAMP)

# torchcodec decodes through the system's FFmpeg libraries (Debian: the ffmpeg package).
system-deps:
	@if command -v ffmpeg >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's ffmpeg (needed by torchcodec)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	else \
		echo "error: FFmpeg libraries are missing; install them (sudo apt-get install ffmpeg, or conda install -c conda-forge ffmpeg) and rerun" >&2; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
