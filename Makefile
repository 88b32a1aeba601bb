# Developer tasks.  `make check` is what to run before every commit: lint, types
# and the fast test lane (tests that start no process), in well under a minute.
# The full suite is `make test` (the README's test command).

PYTHON ?= python
MYPY_PACKAGES = -p pgbundle.shared -p pgbundle.pooler -p pgbundle.server

.PHONY: check lint typecheck test-fast test

check: lint typecheck test-fast

lint:
	ruff check .

# mypy sees the three directories under their installed names through a link.
.typecheck/pgbundle:
	mkdir -p .typecheck && ln -sfn .. .typecheck/pgbundle

typecheck: .typecheck/pgbundle
	mypy $(MYPY_PACKAGES)

test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

test:
	$(PYTHON) -m pytest -q
