# The two commands of the README:
#   make demo   set up and run the service on the embedded demo camera with the shipped weights
#   make test   set up and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# torch first, pinned: 2.13.0 is a CPU build on these machines; anything else pulls a multi-GB CUDA build.
	$(PY) -m pip install "torch==$${FFP_TORCH_VERSION:-2.13.0}"
	$(PY) -m pip install -e ".[service,test]"
	touch $@

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check model service tests benchmarks docs/research/scripts
	$(VENV)/bin/mypy

demo: setup
	$(VENV)/bin/ffp serve --config docker/demo.yaml

bench: setup
	$(PY) benchmarks/generator_fps.py

clean:
	rm -rf $(VENV) build *.egg-info
