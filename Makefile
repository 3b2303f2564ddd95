# casn-lite: every target creates .venv on first use, so a fresh clone needs only `make test`
# or `make reproduce`. Running them again is safe: the install is redone only when
# pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYNTH  := data/synthpeople

.PHONY: install kernel test lint reproduce data notebooks lab clean

install: $(STAMP)

# torch is not pinned: torchvision's wheel pins the torch it was built for, and pip resolves
# the pair from the registry (a CUDA build; it runs on CPU too).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,dev]"
	$(BIN)/python -m ipykernel install --user --name casn-lite --display-name "Python (casn-lite)"
	touch $(STAMP)

# the notebooks name the kernel casn-lite; point it at this clone's .venv (another clone's
# install may have registered its own)
kernel: $(STAMP)
	$(BIN)/python -m ipykernel install --user --name casn-lite --display-name "Python (casn-lite)" > /dev/null

lint: $(STAMP)
	$(BIN)/ruff check casn_lite tests benchmarks notebooks examples

# unit tests (one pytest-xdist worker per core), then every committed notebook re-executed
# by nbval; cells marked NBVAL_CHECK_OUTPUT must print what the committed notebook shows
test: lint
	$(BIN)/python -m pytest -p no:nbval -n auto
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		notebooks/[0-9]*.ipynb

# re-execute the .py sources of truth into their paired, committed .ipynb (in the casn-lite
# kernel that install registers), then drop what only this run needs (timestamps, widgets);
# first refuse a pair whose .ipynb holds changes its .py lacks (they would be deleted)
notebooks: kernel
	$(BIN)/python -m casn_lite.pairs notebooks/[0-9]*.py
	cd notebooks && for nb in [0-9]*.py; do ../$(BIN)/jupytext --to ipynb --execute $$nb || exit 1; done
	$(BIN)/python -m casn_lite.tidy notebooks/[0-9]*.ipynb

# JupyterLab on the project's environment, opened at notebooks/. jupytext's contents manager
# reads the .py sources as notebooks; jupyter-config/ makes a double click open them so.
# Extra options: make lab LAB_ARGS="--port 8899 --no-browser"
lab: kernel
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config $(BIN)/jupyter lab \
		--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

data: $(SYNTH)/meta.json

$(SYNTH)/meta.json: | $(STAMP)
	$(BIN)/python -m casn_lite data synth --out $(SYNTH)

# every notebook, executed by papermill with the cpu profile; results in runs/cpu/
reproduce: data
	$(BIN)/python -m casn_lite reproduce --profile cpu

clean:
	rm -rf $(VENV) $(SYNTH) .pytest_cache .ruff_cache
