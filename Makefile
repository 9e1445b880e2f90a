# The two commands of README.md: `make demo` and `make test`.
# Both install what is missing first (apt packages, CRIU >= 4.2, a venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all deps venv install demo lint test unit integration e2e bench bench-smoke soak man install-man clean

all: test

deps:
	bash contrib/install-deps.sh

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)
	$(PY) -m pip install -q --disable-pip-version-check '.[test]'

# Reinstall our own package (not its dependencies) so tests run the code as installed.
install: venv
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --force-reinstall .

demo: deps install
	bash contrib/demo.sh $(VENV)/bin/runc-ckpt

# The layers (import-linter's contracts in setup.cfg), the types (mypy, config in
# setup.cfg) and ruff, on the source tree; any finding fails the build.
lint: venv
	PYTHONPATH=plugin $(VENV)/bin/lint-imports --config setup.cfg
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check plugin bench

# The lint first, then pytest (its failure fails `make test` with pytest's exit status),
# then every benchmark in smoke mode: tiny sizes, no goal checks, the real runc/CRIU/podman paths.
test: deps install lint
	$(PY) -m pytest $(PYTEST_ARGS) tests
	$(BENCH_SMOKE)

unit: install
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit

integration: deps install
	$(PY) -m pytest $(PYTEST_ARGS) tests/integration

e2e: deps install
	$(PY) -m pytest $(PYTEST_ARGS) tests/e2e

# Every benchmark at its default sizes (BENCH_ARGS="--scale 0.25" for a quicker run,
# "--only checkpoint,migrate" for some): exit 1 if one failed or missed a goal.
BENCH_ARGS ?=
BENCH_SMOKE = $(PY) bench/run.py --smoke --runc-ckpt $(VENV)/bin/runc-ckpt

bench: deps install
	$(PY) bench/run.py --runc-ckpt $(VENV)/bin/runc-ckpt $(BENCH_ARGS)

# Every benchmark in smoke mode (about 30 s); exit 1 if any fails. `make test` runs it too.
bench-smoke: deps install
	$(BENCH_SMOKE)

# The full checkpoint/restore soak with random kill -9 (make test runs 20 cycles).
soak: deps install
	RUNC_CKPT_SOAK_CYCLES=$${RUNC_CKPT_SOAK_CYCLES:-200} $(PY) -m pytest $(PYTEST_ARGS) \
		tests/integration/test_reliability_real.py -k soak

# Man pages (go-md2man, from contrib/install-deps.sh) and bash completion.
man:
	sh docs/render-man.sh build/man

install-man: man
	install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man1 build/man/man1/*.1
	install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man5 build/man/man5/*.5
	install -D -m 0644 contrib/completion/runc-ckpt.bash $(DESTDIR)/usr/share/bash-completion/completions/runc-ckpt

clean:
	rm -rf $(VENV) build plugin/*.egg-info
