# Set-up and the two commands of the README. `make demo` and `make test` each create the
# virtual environment and install the pinned versions first (once; redone when pyproject.toml
# or constraints.txt change).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The interop tests run torchgeo's own dataset classes, which need a newer torch/torchvision
# than constraints.txt pins: a second environment, built once like .venv (the stamp file).
TG_VENV ?= .venv-torchgeo
TG_BIN := $(TG_VENV)/bin
TG_STAMP := $(TG_VENV)/.installed
# sareval's dependencies that torchgeo does not pull in; every version pinned in
# constraints-torchgeo.txt (a freeze of the tested environment)
TG_DEPS := h5py tqdm onnx onnxscript onnxruntime-gpu jsonschema safetensors hdf5plugin \
	pytest scikit-learn

.PHONY: install demo test lint test-interop

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(TG_STAMP): pyproject.toml constraints.txt constraints-torchgeo.txt
	$(PY) -m venv $(TG_VENV)
	$(TG_BIN)/pip install --quiet --upgrade pip
	$(TG_BIN)/pip install --quiet -c constraints-torchgeo.txt torch torchvision torchgeo pyarrow \
		requests $(TG_DEPS)
	$(TG_BIN)/pip install --quiet --no-deps -e .
	touch $(TG_STAMP)

# torchgeo's SEN12MS / BigEarthNet / BigEarthNetV2 through sareval.TorchData vs the store route
test-interop: $(TG_STAMP)
	$(TG_BIN)/pytest -p no:cacheprovider tests/interop

demo: $(STAMP)
	$(BIN)/sareval demo --out sareval-demo --overwrite

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 -m "slow or not slow"
	$(MAKE) test-interop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
