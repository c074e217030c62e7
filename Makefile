# One-line aliases over the project's own commands. The virtual environment lives in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TENSORRT_ROOT ?=
CUDA_ARCHS ?=

.PHONY: install demo test lint plugins bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-ci.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) -m semshare demo --output out/demo

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check semshare tests benchmarks

plugins:
	cmake -S plugins -B build/plugins $(if $(TENSORRT_ROOT),-DTENSORRT_ROOT=$(TENSORRT_ROOT)) $(if $(CUDA_ARCHS),-DCMAKE_CUDA_ARCHITECTURES="$(CUDA_ARCHS)") && cmake --build build/plugins -j2

bench: install
	$(PY) benchmarks/models.py

clean:
	rm -rf $(VENV) build out .pytest_cache .ruff_cache .cache *.egg-info
