# Two commands on a fresh machine:
#   make run    set up .venv and screen the demo set with the embedded default model
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mi-installed
PYTEST_ARGS ?=

.PHONY: install run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: 2.13.0 is the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/mi screen configs/demo.yaml

# pytest exits 5 when it collects no test: not a failure of the suite.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; else exit $$rc; fi; }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
