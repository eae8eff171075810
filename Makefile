# Set-up and everyday jobs. Everything runs in a local virtual environment (.venv).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEFU_HOME ?= $(CURDIR)/var

.PHONY: install browser demo test test-fast bench lint screenshots clean

$(BIN)/kefu: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel on this machine.
	$(BIN)/pip install --quiet -e '.[dev,onnx,ray]'
	touch $(BIN)/kefu

install: $(BIN)/kefu

## browser: Debian's Chromium and a CJK font for the web console's browser tests (installed when missing)
browser:
	bash scripts/install_browser.sh

## demo: set everything up and run the main job on the bundled data
demo: install
	bash scripts/demo.sh

## test: the full test suite (what CI runs)
test: install browser
	KEFU_REQUIRE_BROWSER=1 $(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	bash scripts/bench.sh

## screenshots: refresh docs/console/*.png from the browser tests
screenshots: install browser
	KEFU_REQUIRE_BROWSER=1 KEFU_SCREENSHOTS=1 $(BIN)/python -m pytest -m browser tests/web

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .ruff_cache
