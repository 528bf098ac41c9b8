# `make test` and `make demo` build .venv from nothing when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo figures lint bench notebooks clean

venv: $(STAMP)

# torch is pinned first so pip takes the light CPU build from local disk
# instead of resolving an unpinned `torch` to a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -q

demo: $(STAMP)
	MPLBACKEND=Agg $(VENV)/bin/toysae demo --out figures/quick

# Every experiment's full run into figures/full (hours on two cores: each prints its time),
# then the docs' tables rendered from the new JSON (each committed full run is one such
# `toysae run NAME`, some with a kept work_dir, as its commit says).
figures: $(STAMP)
	for e in $$($(VENV)/bin/toysae list | awk '{print $$1}'); do \
		MPLBACKEND=Agg $(VENV)/bin/toysae run $$e --out figures/full || exit 1; done
	$(VENV)/bin/toysae report

lint: $(STAMP)
	$(VENV)/bin/ruff check toysae tests benchmarks

# the notebooks' cells from make_NN.py, then each run at its small size and stored executed
notebooks: $(STAMP)
	for m in notebooks/make_*.py; do $(PY) $$m || exit 1; done
	$(PY) notebooks/execute.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
