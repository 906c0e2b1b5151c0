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
# sareval's dependencies that torchgeo does not pull in, at the versions of constraints.txt
TG_DEPS := h5py tqdm onnx onnxscript onnxruntime-gpu jsonschema safetensors hdf5plugin \
	pytest scikit-learn
empty :=
space := $(empty) $(empty)

.PHONY: install demo test lint test-interop

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(TG_STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(TG_VENV)
	$(TG_BIN)/pip install --quiet --upgrade pip
	$(TG_BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1 torchgeo pyarrow requests
	grep -i -E '^($(subst $(space),|,$(strip $(TG_DEPS))))==' constraints.txt \
		> $(TG_VENV)/sareval-constraints.txt
	$(TG_BIN)/pip install --quiet -c $(TG_VENV)/sareval-constraints.txt $(TG_DEPS)
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
	$(BIN)/pytest -n 2 -m "slow or not slow"
	$(MAKE) test-interop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
