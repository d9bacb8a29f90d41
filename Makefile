# Two entry points: `make demo` and `make test`; both build .venv from scratch when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extras to install with the package (CI adds raytrace for the Sionna RT tests).
EXTRAS ?= dev

.PHONY: demo test lint typecheck bench twins clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first and pinned: the pinned release is a local CPU build; a loose spec pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xloc demo

lint: $(STAMP)
	$(BIN)/ruff check xloc tests
	$(BIN)/mypy xloc

# two workers on the two cores, tests handed out one by one (each test stands alone: no test relies on another
# having run before it); the tests that time latency or throughput (marked serial) run alone afterwards
test: lint
	$(BIN)/python -m pytest -n 2 -m "not serial"
	$(BIN)/python -m pytest -m serial

bench: $(STAMP)
	$(BIN)/xloc bench

# The Sionna RT twin collection (needs the raytrace extra and LLVM 19); manifest.json records sizes and wall time.
twins: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,raytrace]'
	$(BIN)/xloc twins --out twins --plots docs/img/twins

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
