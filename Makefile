# tierd — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test-deps run test bench bench-smoke clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/tierd serve

# systemd-analyze for the unit-file test (tests/test_service.py skips it, saying why, without);
# pgJDBC, a JDK, Node.js with node-postgres and psql for the client tests (tests/clients).
test-deps:
	@sh tests/install-test-deps.sh

test: install test-deps
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run.py

bench-smoke: install
	$(BIN)/python bench/run.py --smoke

clean:
	rm -rf $(VENV) data
