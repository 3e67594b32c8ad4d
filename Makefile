# Attune — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# LSL stays on loopback: this config is in force before pylsl is first imported.
export LSLAPICFG := $(CURDIR)/acquisition/lsl_api.cfg

.PHONY: demo test lint bench recordings install lock clean

# Installs the exact versions in constraints.txt (pip included), so a dependency's new release cannot break a
# fresh clone's `make test`; pyproject.toml keeps the ranges for library users. To move the pins forward:
# `make lock` (fresh venv, unpinned install, pip freeze > constraints.txt), then `make test`, then commit.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attune demo

test: $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# Style (ruff, config in pyproject.toml) and types of dsp/ and acquisition/ (mypy). mypy cannot follow setuptools'
# package-dir mapping, so it reads a tree of symlinks in build/mypy (attune_monitor/dsp -> ../../../dsp ...).
# A prerequisite of `test` (issue 19): style or type errors fail `make test` before the suite runs.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	rm -rf build/mypy && mkdir -p build/mypy/attune_monitor
	ln -s $(addprefix ../../../,$(wildcard attune_monitor/*.py)) build/mypy/attune_monitor/
	for d in acquisition dsp ui; do ln -s ../../../$$d build/mypy/attune_monitor/$$d; done
	$(VENV)/bin/mypy -p attune_monitor.dsp -p attune_monitor.acquisition

# bench_sync: synchrony kernels and engine ticks. bench_soak: a live 4-person monitor recording 2 simulated
# hours at 32x (~4 min; `$(PY) bench/bench_soak.py` alone runs the full 8 h, ~15 min): RSS slope, CPU and tick p99
# first vs last hour, the recording checked complete. Each prints its figures as one JSON line at the end.
# bench_scale: the headless tick at 8/16/32/64 people and `attune analyze` throughput over 100 one-hour dyads
# (written once into /tmp/attune-dyads, ~90 MB; ~15 min).
bench: $(STAMP)
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_soak.py --hours 2
	$(PY) bench/bench_scale.py all --cache /tmp/attune-dyads

recordings: $(STAMP)
	$(PY) -m attune_monitor.acquisition.samples recordings

# Newest releases within pyproject's ranges, resolved in a throwaway venv (not .venv), written to constraints.txt
# (its # header kept). Pins hold for the Python and platform that ran this (README: 3.11, Linux x86_64).
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q '.[dev]'; \
	{ grep '^#' constraints.txt || true; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
	    --exclude attune-monitor --exclude setuptools --exclude wheel; } > "$$tmp/constraints.txt"; \
	mv "$$tmp/constraints.txt" constraints.txt; \
	echo "constraints.txt regenerated ($$(grep -vc '^#' constraints.txt) pins); now: make test, then commit it"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
