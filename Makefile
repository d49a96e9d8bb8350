# The README's commands. Everything runs inside .venv at the repo root.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test test-fast lint bench clean

install: $(STAMP)

# Re-running is a no-op unless setup.cfg or the constraints changed.
$(STAMP): setup.cfg pyproject.toml constraints.txt scripts/system-deps.sh
	bash scripts/system-deps.sh --browser
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

quickstart: install
	bash scripts/quickstart.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/pytest -ra --durations=15

test-fast: install
	$(VENV)/bin/pytest -ra -m "not slow"

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf build *.egg-info .pytest_cache outputs
