# Attune — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# LSL stays on loopback: this config is in force before pylsl is first imported.
export LSLAPICFG := $(CURDIR)/acquisition/lsl_api.cfg

.PHONY: demo test lint bench recordings install lock clean upgrade test-latest test-install

# Installs the exact versions in constraints.txt (pip included), so a dependency's new release cannot break a
# fresh clone's `make test`; pyproject.toml keeps the ranges for library users. To move the pins forward:
# `make upgrade` (fresh venv, unpinned install, pip freeze > constraints.txt), then `make test`, then commit.
# The build backend is pinned by the same file: pip builds Attune in an isolated environment that `-c` does not
# reach, so `--build-constraint` (pip >= 25.3; the pip pinned here is installed first) holds setuptools to its pin.
# Chosen over PIP_CONSTRAINT (which newer pips stop applying to build environments) and over
# --no-build-isolation (which would build with whatever setuptools the venv happens to hold).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt --upgrade pip
	$(PY) -m pip install -q -c constraints.txt --build-constraint constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attune demo

# The suite waits on live LSL more than it computes: it runs in $(TEST_WORKERS) pytest-xdist workers (whole test files
# per worker, so module fixtures are built once), each in its own LSL session (tests/conftest.py). `make test
# TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
TEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(TEST_PARALLEL)

# Style (ruff, config in pyproject.toml) and types of dsp/ and acquisition/ (mypy). mypy cannot follow setuptools'
# package-dir mapping, so it reads a tree of symlinks in build/mypy (attune_monitor/dsp -> ../../../dsp ...).
# A prerequisite of `test` (issue 19): style or type errors fail `make test` before the suite runs.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	rm -rf build/mypy && mkdir -p build/mypy/attune_monitor
	ln -s $(addprefix ../../../,$(wildcard attune_monitor/*.py)) build/mypy/attune_monitor/
	for d in acquisition dsp ui; do ln -s ../../../$$d build/mypy/attune_monitor/$$d; done
	$(VENV)/bin/mypy -p attune_monitor.dsp -p attune_monitor.acquisition

# bench_sync: synchrony kernels and engine ticks. bench_startup: `attune --help`, and `attune analyze` of a 60-min
# dyad against `pyxdf.load_xdf` of the same file, both whole processes (JSON keys help_s, analyze_60min_s,
# pyxdf_load_60min_s, analyze_over_pyxdf). bench_soak: a live 4-person monitor recording an 8-hour
# session at 32x (~15 min; issue 21's 8-hour RSS slope): RSS slope, CPU and tick p99
# first vs last hour, the recording checked complete. Each prints its figures as one JSON line at the end.
# bench_scale: the headless tick at 8/16/32/64 people and `attune analyze` throughput over 100 one-hour dyads
# (written once into /tmp/attune-dyads, ~90 MB; ~15 min).
bench: $(STAMP)
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_soak.py --hours 8
	$(PY) bench/bench_scale.py all --cache /tmp/attune-dyads
	$(PY) bench/bench_startup.py

recordings: $(STAMP)
	$(PY) -m attune_monitor.acquisition.samples recordings

# `make upgrade` (alias `make lock`): the newest releases within pyproject's ranges (and its build backend's),
# resolved in a throwaway venv (not .venv), written to constraints.txt (its # header kept). Pins hold for the
# Python and platform that ran this (README: 3.11, Linux x86_64). Needs the package index.
upgrade:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q '.[dev]' $(BUILD_REQUIRES); \
	{ grep '^#' constraints.txt || true; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
	    --exclude attune-monitor --exclude wheel; } > "$$tmp/constraints.txt"; \
	mv "$$tmp/constraints.txt" constraints.txt; \
	echo "constraints.txt regenerated ($$(grep -vc '^#' constraints.txt) pins); now: make test, then commit it"

lock: upgrade

# [build-system] requires of pyproject.toml, quoted for the shell (e.g. 'setuptools>=77').
BUILD_REQUIRES = $(shell $(PYTHON) -c "import tomllib; print(' '.join(repr(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")

# Would the newest releases within pyproject's ranges break us? A throwaway venv with them (no constraints.txt),
# then the test suite there, so a breaking release (e.g. pandas 3.1 in a fresh clone) is seen here before it
# reaches users; .venv and constraints.txt stay as they are. Needs the package index; ~15 min.
test-latest:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q -e '.[dev]'; \
	grep -v '^#' constraints.txt | sort > "$$tmp/pins"; \
	echo "newest releases vs constraints.txt (< pinned, > newest):"; \
	"$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | sort | diff "$$tmp/pins" - | grep '^[<>]' || true; \
	QT_QPA_PLATFORM=offscreen NUMBA_CACHE_DIR="$$tmp/numba" "$$tmp/venv/bin/python" -m pytest -q $(TEST_PARALLEL)

# `pip install .` (not editable) into a fresh venv from constraints.txt: `attune --help`, `attune analyze`,
# `import attune_monitor` work, and site-packages holds no top-level dsp/ui/acquisition (tests/test_install.py;
# skipped when the package index cannot be reached). Slow (a full install, ~2-4 min), so not in `make test`.
test-install: $(STAMP)
	ATTUNE_TEST_INSTALL=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:xdist tests/test_install.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
