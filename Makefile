# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qdrl-installed
# CPU build of torch first: the pinned release lies on disk on our machines, an unpinned
# resolve would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint perf clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

demo: install
	$(PY) -m qdrl_bench.demo

test: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check qdrl_envs qdrl_agents qdrl_bench tests

perf: install
	$(PY) -m qdrl_bench.perf.env_throughput

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
