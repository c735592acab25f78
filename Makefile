# The two commands of a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup models run playground test clean

setup: $(STAMP)

# torch is pinned and installed first: a bare `torch` requirement would pull gigabytes of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The tiny random models of each family the catalog's `tiny*` entries point at (seconds; deterministic),
# then the tiny IP-Adapters made for the tiny sd and sdxl UNets (so after those).
models: setup
	HF_HUB_OFFLINE=1 $(BIN)/dreamgrid models create-tiny
	for family in sdxl flux sd3 zimage sd-inpaint ip-adapter-sd ip-adapter-sdxl; do HF_HUB_OFFLINE=1 $(BIN)/dreamgrid models create-tiny --family $$family || exit 1; done

run: models
	$(BIN)/dreamgrid run

# The bot against a local Discord, in a browser page (--terminal: in this terminal): no token, no account needed.
playground: models
	HF_HUB_OFFLINE=1 $(BIN)/dreamgrid playground

# Two workers (pytest-xdist): most tests wait on timers and sockets, so two share two cores well; the Ray tests
# keep to one worker (one cluster). TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
test: models
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

clean:
	rm -rf $(VENV) .pytest_cache
