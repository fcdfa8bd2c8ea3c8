# The compendium's two commands: `make book` and `make test`. Both do their own set-up in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)
# One torch thread per process: studies, nbval workers and pytest-xdist run side by side.
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: venv book test unit nbval smoke-book lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## make book: execute every registered study (cpu scale, paper when CUDA is found), then render _build/html
book: venv
	$(BIN)/nnsens book run --scale auto --jobs $(JOBS)
	$(BIN)/nnsens book build --html .

## make test: lint, unit tests, nbval over every notebook, smoke build of the book
test: venv lint unit nbval smoke-book

lint: venv
	$(BIN)/ruff check src tests benchmarks

unit: venv
	$(BIN)/pytest tests -n $(JOBS) -q

nbval: venv
	$(BIN)/pytest --nbval-lax notebooks -n $(JOBS) --dist loadscope -q

smoke-book: venv
	rm -rf _build/smoke
	NNSENS_STORE=_build/smoke/nnsens.sqlite $(BIN)/nnsens book run --scale smoke --jobs $(JOBS) --out-root _build/smoke/runs --no-sweeps
	NNSENS_STORE=_build/smoke/nnsens.sqlite $(BIN)/nnsens book build --html _build/smoke

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf _build book/_generated results
