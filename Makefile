# Everything a fresh Debian bookworm machine needs is set up by the targets themselves; make is the
# one precondition (make fresh-debian-check proves it on a plain bookworm root).
# Debian's own Python, so that the venv does not depend on whichever python3 comes first on PATH.
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
# Without python3-venv Debian's python3 lacks ensurepip, and `python3 -m venv` fails. git: a test
# reads an old release's sql/install.sql from the checkout's history.
DEBIAN_PACKAGES := python3 python3-venv git postgresql-plpython3-15 postgresql-15-slony1-2 slony1-2-bin pgbouncer
PYTEST_ARGS ?=
# pytest-xdist workers: the scenarios mostly wait on slon and on containers, so more workers than
# cores; --maxschedchunk 1 hands each its first tests one pair at a time (see tests/conftest.py).
TEST_WORKERS ?= 4
ARGS ?=

.PHONY: test demo soak bench sql install system-packages venv clean fresh-debian-check

system-packages:
	@tests/bin/ensure-debian-packages $(DEBIAN_PACKAGES)

# The venv needs python3-venv first, also under make -j. Order-only: a phony prerequisite would
# otherwise rebuild the venv on every run.
$(VENV)/.installed: pyproject.toml | system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The container tests need an engine: with-container-engine uses the one that answers, else
# installs podman and starts its service for the run, and checks that nothing outlives it.
# debootstrap makes the node images' base, docker-compose runs docker-compose.yml; without them
# (no root, no network for apt) those tests skip, saying so. run-suite runs the tests that force
# a PID apart, after the parallel phase.
test: system-packages venv
	@tests/bin/ensure-debian-packages debootstrap docker-compose || echo "container tests that need them will skip" >&2
	@tests/bin/run-suite $(PY) $(TEST_WORKERS) $(PYTEST_ARGS)

# make demo ARGS=--keep leaves the cluster running and prints how to reach and stop it.
demo: system-packages venv
	$(PY) tests/demo.py $(ARGS)

# The reboot soak against stock and against the kit, with a table: SOAK_CYCLES (50), SOAK_SEED.
soak: system-packages venv
	$(PY) tests/soak.py

# Latency of stock and our cleanupnodelock() on one real server; prints a table, asserts nothing else.
bench: system-packages venv
	$(PY) tests/bench_cleanup.py

# Regenerate sql/install.sql and sql/uninstall.sql from sql/src, migrations/ and plpython/.
sql:
	$(PYTHON) sql/generate.py

# Put the scripts where the kit's messages say they are (SHARE_DIR in plpython/slony_nodelock/plpy_glue.py,
# read with sed: a database host need not have Python); DESTDIR for packaging.
SHARE_DIR = $(shell sed -n 's/^SHARE_DIR = "\(.*\)"$$/\1/p' plpython/slony_nodelock/plpy_glue.py)
install:
	@test -n "$(SHARE_DIR)" || { echo "make install: no SHARE_DIR in plpython/slony_nodelock/plpy_glue.py" >&2; exit 1; }
	install -d $(DESTDIR)$(SHARE_DIR)
	install -m 0644 sql/install.sql sql/uninstall.sql $(DESTDIR)$(SHARE_DIR)/

# A plain debootstrapped bookworm runs make system-packages and make venv; minutes, so not in test.
fresh-debian-check:
	tests/bin/check-fresh-debian

clean:
	rm -rf $(VENV) build *.egg-info plpython/*.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
