# oaprobe: `make book` builds the whole book on the synthetic cohort; `make test` runs the tests.
# Both create .venv on first use. PRESET=smoke|course|default|gpu|paper, JOBS=worker processes,
# MANIFEST=path/to/manifest.csv builds the book on your own cohort (e.g. an imported OAI-ZIB copy).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PRESET ?= default
JOBS   ?= 2
# torch is installed first and pinned: a bare `torch` requirement can pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# Every other package comes at the exact version of constraints.txt (what the tests passed with),
# installed by uv: the same packages as pip, in half the time (cold caches, this 2-core machine:
# 62 s against 122 s). pip installs torch, since uv does not read pip's configuration.
LOCK   := constraints.txt
UV     ?= uv==0.13.9

.PHONY: book test lint test-fast test-browser test-ray clean-book lock

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH) $(UV)
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -c $(LOCK) -e ".[test]"
	touch $@

# Refresh the lock: newest versions in a scratch venv, frozen into constraints.txt (torch excluded:
# it is pinned above). Run `make test` afterwards and commit constraints.txt only if it passes.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q $(TORCH)
	.venv-lock/bin/pip install -q -e ".[test]"
	{ head -n 2 $(LOCK); .venv-lock/bin/pip freeze --exclude-editable | grep -v -e '^torch==' -e '^-e '; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK) && rm -rf .venv-lock

book: $(VENV)/.installed
	$(BIN)/oaprobe book --preset $(PRESET) --jobs $(JOBS) $(if $(MANIFEST),--manifest $(MANIFEST))

# Lint (ruff, configured in pyproject.toml), unit + known-answer tests, then a smoke book checked in headless Chromium.
test: lint test-fast test-browser

# ruff's lint rules and import order over the package, tests, benchmarks and notebooks (`ruff check --fix` sorts imports).
lint: $(VENV)/.installed
	$(BIN)/ruff check .

# Tests run in a random order (pytest-randomly; the seed is printed: rerun an order with `pytest -p randomly --randomly-seed=N`).
test-fast: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/pytest

# The smoke book is built in its own folder: it never replaces the chapters of a built default book.
SMOKE_SITE := _build/smoke-site
test-browser: $(VENV)/.installed
	bash .ci/install-chromium.sh
	$(BIN)/oaprobe book --preset smoke --jobs $(JOBS) --runs runs-smoke --site $(SMOKE_SITE)
	OAPROBE_BOOK_HTML=$(SMOKE_SITE)/_build/html OAPROBE_SCREENSHOTS=$(SMOKE_SITE)/screenshots \
	  $(BIN)/pytest -q -m browser tests/test_book_browser.py tests/test_book_consistency.py tests/test_glossary.py

# The Ray executor's tests (not in `make test`: they install the optional extra and take about 2 min).
test-ray: $(VENV)/.installed
	$(BIN)/uv pip install -q --python $(BIN)/python -c $(LOCK) -e ".[test,ray]"
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -m ray tests/test_ray_tasks.py

clean-book:
	rm -rf _build book/_generated
