# Two entry points, both safe on a fresh machine with only Python >= 3.11 and make:
#   make run    set up .venv, run the daemon on a simulated node for 20 s (ends by itself)
#   make test   set up .venv, run ruff, mypy (strict) and every test
#   make install (root) the package in a venv at $(PREFIX), the systemd unit, tmpfiles, example config
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sol-installed
RUN_FOR ?= 20s
# what `mypy --strict` checks: the SDK, the runtime and everything they import
TYPED  := sol

PREFIX ?= /opt/sol

.PHONY: run test lint typecheck pytest bench bench-daemon install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sol run --duration $(RUN_FOR) --log-format console

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/python tools/typecheck.py $(TYPED)

# pytest exits 5 when it collected nothing: that is a broken suite, say so.
pytest: $(STAMP)
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(BIN)/python benchmarks/runtime.py

bench-daemon: $(STAMP)
	$(BIN)/python benchmarks/daemon.py

# docs/operating.md: a venv in $(PREFIX) (the unit cannot run one under /root or /home), then
# `sol install` writes the unit, the tmpfiles snippet and /etc/sol/sol.toml (if absent).
install:
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/python -m pip install --quiet --upgrade pip
	$(PREFIX)/bin/python -m pip install --quiet '.[linux]'
	$(PREFIX)/bin/sol install --units systemd --bin $(PREFIX)/bin/sol

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
