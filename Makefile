# The two commands of README.md: `make demo` and `make test`.
# Both install what is missing first (apt packages, CRIU >= 4.2, a venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all deps venv install demo test unit integration e2e bench soak man install-man clean

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

test: deps install
	$(PY) -m pytest $(PYTEST_ARGS) tests

unit: install
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit

integration: deps install
	$(PY) -m pytest $(PYTEST_ARGS) tests/integration

e2e: deps install
	$(PY) -m pytest $(PYTEST_ARGS) tests/e2e

bench: deps install
	$(PY) bench/run.py

# The full soaks (make test runs short ones): 200 checkpoint/restore cycles with random kill -9 of
# runc-ckpt; 200 export/import cycles and 30 migrations with kills of the whole process tree
# (runc and CRIU included) at random moments.
soak: deps install
	RUNC_CKPT_SOAK_CYCLES=$${RUNC_CKPT_SOAK_CYCLES:-200} \
	RUNC_CKPT_TREE_SOAK_CYCLES=$${RUNC_CKPT_TREE_SOAK_CYCLES:-200} \
	RUNC_CKPT_TREE_SOAK_MIGRATIONS=$${RUNC_CKPT_TREE_SOAK_MIGRATIONS:-30} RUNC_CKPT_TREE_SOAK_STRICT=1 \
	$(PY) -m pytest -s $(PYTEST_ARGS) \
		tests/integration/test_reliability_real.py tests/integration/test_tree_kill_real.py -k soak

# Man pages (go-md2man, from contrib/install-deps.sh) and bash completion.
man:
	sh docs/render-man.sh build/man

install-man: man
	install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man1 build/man/man1/*.1
	install -D -m 0644 -t $(DESTDIR)/usr/local/share/man/man5 build/man/man5/*.5
	install -D -m 0644 contrib/completion/runc-ckpt.bash $(DESTDIR)/usr/share/bash-completion/completions/runc-ckpt

clean:
	rm -rf $(VENV) build plugin/*.egg-info
