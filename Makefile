# Two entry points: `make demo` and `make test`; both build .venv from scratch when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Extras to install with the package (CI adds raytrace for the Sionna RT tests).
EXTRAS ?= dev

.PHONY: demo test lint typecheck bench twins corpus pretrain clean

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

# LWLM's pretraining corpus (random streets plus the twins when ./twins exists) and the reference checkpoint.
# Both resume where an interrupted run stopped; the corpus and the checkpoints stay out of git (docs/lwlm.md).
CORPUS_CHANNELS ?= 200000
PRETRAIN_EPOCHS ?= 2
corpus: $(STAMP)
	$(BIN)/xloc corpus --out corpus --channels $(CORPUS_CHANNELS) $(if $(wildcard twins/manifest.json),--twins twins)

pretrain: corpus
	$(BIN)/xloc pretrain --corpus corpus --epochs $(PRETRAIN_EPOCHS) --param patch=[4,4] --param depth=4 \
		--checkpoint lwlm-reference.ckpt --checkpoint-every 200 --resume -o lwlm-reference

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
