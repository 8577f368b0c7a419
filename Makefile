# Everything a fresh Debian bookworm machine needs is set up by the targets themselves; make is the
# one precondition (make fresh-debian-check proves it on a plain bookworm root).
# Debian's own Python, so that the venv does not depend on whichever python3 comes first on PATH.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
# Without python3-venv Debian's python3 lacks ensurepip, and `python3 -m venv` fails. git: a test
# reads an old release's sql/install.sql from the checkout's history.
DEBIAN_PACKAGES := python3 python3-venv git postgresql-plpython3-15 postgresql-15-slony1-2 slony1-2-bin
PYTEST_ARGS ?=
ARGS ?=

.PHONY: test test-containers demo bench sql system-packages venv clean fresh-debian-check

system-packages:
	@tests/bin/ensure-debian-packages $(DEBIAN_PACKAGES)

# The venv needs python3-venv first, also under make -j. Order-only: a phony prerequisite would
# otherwise rebuild the venv on every run.
$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# pytest exits 5 when it collected no tests; that is a broken suite, not a pass.
test: system-packages venv
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

# Slony nodes as containers of PostgreSQL 13, 15 and 17 (issue 7, in progress): the engine that
# answers, else podman's, started for the run; node images built without a registry and cached.
test-containers: system-packages venv
	@tests/bin/ensure-debian-packages podman runc debootstrap docker-compose
	@$(PY) -m pytest -m containers tests/containers $(PYTEST_ARGS)

# make demo ARGS=--keep leaves the cluster running and prints how to reach and stop it.
demo: system-packages venv
	$(PY) tests/demo.py $(ARGS)

# Latency of stock and our cleanupnodelock() on one real server; prints a table, asserts nothing else.
bench: system-packages venv
	$(PY) tests/bench_cleanup.py

# Regenerate sql/install.sql and sql/uninstall.sql from sql/src, migrations/ and plpython/.
sql:
	$(PYTHON) sql/generate.py

# A plain debootstrapped bookworm runs make system-packages and make venv; minutes, so not in test.
fresh-debian-check:
	tests/bin/check-fresh-debian

clean:
	rm -rf $(VENV) build *.egg-info plpython/*.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
