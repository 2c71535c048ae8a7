# Two entry points, both safe on a fresh machine with only Python >= 3.11 and make:
#   make run    set up .venv, run the daemon on a simulated node for 20 s (ends by itself)
#   make test   set up .venv, run ruff, mypy (strict) and every test (the examples/ plugin's too)
#   make install (root) the package in a venv at $(PREFIX), the systemd unit, tmpfiles, example config
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sol-installed
RUN_FOR ?= 20s
# what `mypy --strict` checks: the SDK, the runtime and everything they import
TYPED  := sol

PREFIX ?= /opt/sol

# examples/sol-agent-hello: a plugin made by `sol new-agent`, installed as a user would (a wheel
# with its entry point) but into a folder of its own, so that the main suite sees only the
# built-in agents; its own tests then run with that folder on the path.
EXAMPLE       := examples/sol-agent-hello
EXAMPLE_SITE  := $(VENV)/example-site
EXAMPLE_STAMP := $(EXAMPLE_SITE)/.sol-installed

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

$(EXAMPLE_STAMP): $(STAMP) $(wildcard $(EXAMPLE)/pyproject.toml $(EXAMPLE)/*/*.py)
	rm -rf $(EXAMPLE_SITE) $(EXAMPLE)/build
	$(BIN)/python -m pip install --quiet --no-deps --target $(EXAMPLE_SITE) ./$(EXAMPLE)
	touch $@

# pytest exits 5 when it collected nothing: that is a broken suite, say so. Then the example
# plugin's tests, from its own folder (its pyproject.toml is their config), against the install.
pytest: $(STAMP) $(EXAMPLE_STAMP)
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken" >&2; exit 1; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	cd $(EXAMPLE) && PYTHONPATH=$(abspath $(EXAMPLE_SITE)) $(abspath $(BIN))/pytest -q -p no:cacheprovider

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
