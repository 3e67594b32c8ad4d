# Attune — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# LSL stays on loopback: this config is in force before pylsl is first imported.
export LSLAPICFG := $(CURDIR)/acquisition/lsl_api.cfg

.PHONY: demo test bench recordings install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/attune demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_sync.py

recordings: $(STAMP)
	$(PY) -m acquisition.samples recordings

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
