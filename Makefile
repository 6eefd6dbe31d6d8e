# The two commands of the README:
#   make demo   set up and run the service on the embedded demo camera with the shipped weights
#   make test   set up and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup test lint demo bench clean

setup: $(VENV)/.installed

# torch first, pinned (FFP_TORCH_VERSION to change it). Without an NVIDIA GPU: the CPU build from PyTorch's CPU
# index, since PyPI's default on Linux is the multi-GB CUDA build; where that index cannot be reached (a mirror, no
# internet), the default index. With a GPU (nvidia-smi found): the default index, a CUDA build on Linux.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CUDA_HINT := for CUDA: $(VENV)/bin/pip install --force-reinstall torch==VERSION --index-url https://download.pytorch.org/whl/cuXXX (cuXXX: the build for your driver, pytorch.org)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	@v="$${FFP_TORCH_VERSION:-2.13.0}"; \
	if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "make setup: NVIDIA GPU found: torch==$$v from the default index (a CUDA build on Linux)"; \
		$(PY) -m pip install "torch==$$v"; \
	elif $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null; then \
		echo "make setup: no NVIDIA GPU: torch==$$v, the CPU build from $(TORCH_CPU_INDEX)"; \
		$(PY) -m pip install "torch==$$v" --index-url "$(TORCH_CPU_INDEX)" || $(PY) -m pip install "torch==$$v"; \
	else \
		echo "make setup: no NVIDIA GPU, $(TORCH_CPU_INDEX) unreachable: torch==$$v from the default index"; \
		$(PY) -m pip install "torch==$$v"; \
	fi; \
	echo "make setup: torch $$($(PY) -c 'import torch; print(torch.__version__, "CUDA" if torch.version.cuda else "CPU")')"; \
	echo "make setup: $(TORCH_CUDA_HINT)"
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
