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
# Packages for `make deb`, `make rpm` and tests/test_packaging.py (so `make test`
# installs them too): Debian's own Python packaging toolchain (debhelper, dh-python,
# pybuild-plugin-pyproject with python3-build and python3-installer), the rest of
# debian/control's Build-Depends (python3-all, python3-setuptools, python3-pytest,
# procps), lintian, and rpm (rpmbuild, rpm2cpio) with rpmlint for the RPM.
PACKAGING_DEBS := debhelper dh-python pybuild-plugin-pyproject python3-build \
    python3-installer python3-all python3-setuptools python3-pytest procps lintian \
    rpm rpmlint
TEST_DEBS += $(PACKAGING_DEBS)
# Where `make deb` and `make rpm` put the packages (gitignored).
DIST ?= dist

.PHONY: run test bench venv test-deps clean deb rpm packaging-deps

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

# bench/soak.py: 100 services under random svc commands, kills and added or retired
# directories, its invariants checked every 10 s; CI runs 60 s of it (tests/test_soak.py).
SOAK_SECONDS ?= 600
.PHONY: soak
soak: venv
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

packaging-deps:
	@$(MAKE) --no-print-directory test-deps TEST_DEBS="$(PACKAGING_DEBS)"

# Both build from a copy of the tree in a temporary directory (packaging/build.sh),
# then lint the result: no lintian error or warning, no rpmlint finding beyond the
# ones packaging/rpmlint.toml documents.
deb: packaging-deps
	sh packaging/build.sh --lint deb $(DIST)

rpm: packaging-deps
	sh packaging/build.sh --lint rpm $(DIST)

# The .deb end to end (also part of `make test`): tests/test_e2e_deb.py builds it as
# `make deb` does, installs it with `apt-get install ./pysvscan_*.deb` inside Debian 12
# booted with systemd-nspawn (tests/container.sh, cached rootfs), and checks install,
# start, a new service, the journal, reload, stop, upgrade and purge there.
.PHONY: e2e
e2e: venv packaging-deps
	$(BIN)/python -m pytest -q tests/test_e2e_deb.py

# click's completion scripts for `pysvscan`, committed so that the packages need not
# run the program at build time; tests/test_cli_completion.py checks they are current.
.PHONY: completion
completion: venv
	$(BIN)/pysvscan completion bash > completion/pysvscan.bash
	$(BIN)/pysvscan completion zsh > completion/_pysvscan

clean:
	rm -rf $(VENV) build *.egg-info demo bench/results
