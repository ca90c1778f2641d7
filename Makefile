# pysvscan developer targets. On a fresh Debian 12 machine use `sh bootstrap.sh TARGET`,
# which installs make and python3-venv first.
PYTHON ?= /usr/bin/python3
VENV   ?= .venv
BIN    := $(VENV)/bin
APT    := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
# Packages the tests need: the C daemontools as the reference (the test oracle only),
# util-linux's setpriv for running supervise as an unprivileged user, and man-db
# with groff for checking that every man page renders without warnings; time (GNU)
# for the benchmarks' peak-memory figures; python3-systemd and systemd (for
# systemd-notify) as real clients of supervise's notify socket.
TEST_DEBS := daemontools util-linux procps man-db groff-base time python3-systemd systemd

.PHONY: run test bench venv test-deps clean

$(BIN)/svscan: pyproject.toml scripts/*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check \
	    --config-settings editable_mode=compat -e '.[test]'
	touch $@

venv: $(BIN)/svscan
	@# Compiled once, so that start-up never pays for compiling (even where
	@# PYTHONDONTWRITEBYTECODE is set).
	@$(BIN)/python -m compileall -q pysvscan

run: venv
	$(BIN)/pysvscan demo demo/service

test-deps:
	@missing=""; for p in $(TEST_DEBS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing test dependencies:$$missing" >&2; \
	    apt-get update -qq && $(APT) $$missing >/dev/null; \
	fi

test: venv test-deps
	$(BIN)/python -m pytest -q tests

bench: venv test-deps
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info demo bench/results
