# Two commands: `make demo` and `make test`. Each creates .venv from requirements.txt if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip check
	OMP_NUM_THREADS=1 $(PY) -c "import src.counting.tree_walk as f; f.warm_up()"   # compile the region walk once
	@touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) demo.py

test: $(STAMP)
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -q -n 2 --dist loadfile --durations=10

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

clean-venv:
	rm -rf $(VENV)
