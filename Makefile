# casn-lite: every target creates .venv on first use, so a fresh clone needs only `make test`
# or `make reproduce`. Running them again is safe: the install is redone only when
# pyproject.toml or requirements-lock.txt changes.

PYTHON ?= python3
LOCK   ?= 1
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYNTH  := data/synthpeople
LOCKED := requirements-lock.txt

.PHONY: install kernel test lint reproduce data notebooks lab book clean lock gpu-wheels

install: $(STAMP)

# By default the exact versions of requirements-lock.txt, the set `make test` last passed
# with (torch and torchvision as the matching pair pip resolved from the registry).
# LOCK=0 resolves the newest versions pyproject.toml allows instead: torch is not pinned
# there, since torchvision's wheel pins the torch it was built for (a CUDA build; it runs
# on CPU too).
$(STAMP): pyproject.toml $(LOCKED)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(LOCK),0)
	$(BIN)/python -m pip install --quiet -e ".[notebooks,course,dev]"
else
	$(BIN)/python -m pip install --quiet -r $(LOCKED)
	$(BIN)/python -m pip install --quiet --no-deps -e ".[notebooks,course,dev]"
endif
	$(BIN)/python -m ipykernel install --user --name casn-lite --display-name "Python (casn-lite)"
	touch $(STAMP)

# refresh the lock: the newest versions pyproject.toml allows, then the whole test suite,
# and only if it passes, those versions written to requirements-lock.txt
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[notebooks,course,dev]"
	touch $(STAMP)
	$(MAKE) test
	{ head -2 $(LOCKED); $(BIN)/python -m pip freeze --exclude-editable; } > $(LOCKED).new
	mv $(LOCKED).new $(LOCKED)
	touch $(STAMP)

# the notebooks name the kernel casn-lite; point it at this clone's .venv (another clone's
# install may have registered its own)
kernel: $(STAMP)
	$(BIN)/python -m ipykernel install --user --name casn-lite --display-name "Python (casn-lite)" > /dev/null

lint: $(STAMP)
	$(BIN)/ruff check casn_lite tests benchmarks notebooks examples

# unit tests (one pytest-xdist worker per core), then every committed notebook re-executed
# by nbval at its parameters cell's fast defaults (the cell of the cpu profile's parameters is
# skipped); cells marked NBVAL_CHECK_OUTPUT must print what the committed notebook shows, so
# they print only what does not depend on the settings
test: lint
	$(BIN)/python -m pytest -p no:nbval -n auto
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		notebooks/[0-9]*.ipynb

# the committed .ipynb: each .py source of truth run by papermill with the cpu profile, the
# reader's regime (what `make reproduce` runs, into runs/cpu/), copied beside its .py, then
# tidied (no timestamps, widgets or machine paths). It differs from its .py by one cell,
# papermill's injected parameters, tagged nbval-skip: `make test` re-executes the notebooks at
# their fast defaults. First refuse a pair whose .ipynb holds changes its .py lacks.
notebooks: data kernel
	$(BIN)/python -m casn_lite.tooling.pairs notebooks/[0-9]*.py
	$(BIN)/python -m casn_lite reproduce --profile cpu
	for nb in notebooks/[0-9]*.py; do cp runs/cpu/$$(basename $$nb .py).ipynb notebooks/ || exit 1; done
	$(BIN)/python -m casn_lite.tooling.tidy notebooks/[0-9]*.ipynb

# JupyterLab on the project's environment, opened at notebooks/. jupytext's contents manager
# reads the .py sources as notebooks; jupyter-config/ makes a double click open them so.
# Extra options: make lab LAB_ARGS="--port 8899 --no-browser"
lab: kernel
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config $(BIN)/jupyter lab \
		--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# the web book: the committed, executed notebooks (never run again) and the method notes as a
# static site in book/_build/html/, with MathJax served from the site (no network when read);
# publish that folder on any static host
book: $(STAMP)
	$(BIN)/python -m casn_lite.tooling.book

data: $(SYNTH)/meta.json

$(SYNTH)/meta.json: | $(STAMP)
	$(BIN)/python -m casn_lite data synth --out $(SYNTH)

# every notebook, executed by papermill with the cpu profile; results in runs/cpu/
reproduce: data
	$(BIN)/python -m casn_lite reproduce --profile cpu

# the packages a bare GPU machine (python3 3.12 with torch, torchvision, numpy, matplotlib, pytest,
# tqdm) lacks for benchmarks/gpu_run.sh, as wheels for it, downloaded here (needs a network)
gpu-wheels: | $(STAMP)
	$(BIN)/python -m pip download --quiet --only-binary=:all: --python-version 3.12 \
		--platform manylinux2014_x86_64 papermill jupytext nbval ipykernel ipywidgets pyyaml -d .whl

clean:
	rm -rf $(VENV) $(SYNTH) book/_build .pytest_cache .ruff_cache
