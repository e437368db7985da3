# glaviz developer commands. `make test` and `make demo` work on a fresh machine with only
# Python 3.11, pip and gcc: they create the virtual environment themselves.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.glaviz-installed

.PHONY: test test-all lint venv clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77"

# Reinstall when the package metadata changes; the editable install picks up code changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

# The main job on a built-in sample: generate a scene, compile features, deploy the built-in demo
# model (a reduced GlaViTU trained by glaviz train on generated data), score it against the truth.
DEMO := demo-out
demo: $(STAMP)
	@$(BIN)/python -m glaviz.samples scene $(DEMO)/scene --size 1024 1024 --seed 2024 --region ALP
	@$(BIN)/glaviz features -o $(DEMO)/stack.tif --optical $(DEMO)/scene/optical.tif \
		--elevation $(DEMO)/scene/elevation.tif --overwrite
	@$(BIN)/glaviz deploy $(DEMO)/stack.tif --weights demo -o $(DEMO)/deploy --overwrite
	@$(BIN)/glaviz evaluate --prediction $(DEMO)/deploy/outlines.tif \
		--truth $(DEMO)/scene/truth.tif --scores $(DEMO)/evaluation.json --overwrite
	@$(BIN)/python -c "import json; t = json.load(open('$(DEMO)/evaluation.json'))['total']; \
		print(f\"demo IoU {t['iou']:.3f}; outputs in $(DEMO)/deploy/ (outlines.tif, confidence.tif, outlines.gpkg)\")"

lint: $(STAMP)
	$(BIN)/ruff check glaviz tests benchmarks
	$(BIN)/ruff format --check glaviz tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
