# Everything a fresh Debian bookworm machine needs is set up by the targets themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := postgresql-plpython3-15 postgresql-15-slony1-2 slony1-2-bin
PYTEST_ARGS ?=
ARGS ?=

.PHONY: test demo bench sql system-packages venv clean

system-packages:
	@tests/bin/ensure-debian-packages $(DEBIAN_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# pytest exits 5 when it collected no tests; that is a broken suite, not a pass.
test: system-packages venv
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

# make demo ARGS=--keep leaves the cluster running and prints how to reach and stop it.
demo: system-packages venv
	$(PY) tests/demo.py $(ARGS)

# Latency of stock and our cleanupnodelock() on one real server; prints a table, asserts nothing else.
bench: system-packages venv
	$(PY) tests/bench_cleanup.py

# Regenerate sql/install.sql and sql/uninstall.sql from sql/src, migrations/ and plpython/.
sql:
	$(PYTHON) sql/generate.py

clean:
	rm -rf $(VENV) build *.egg-info plpython/*.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
