# tierd — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test-deps run test bench bench-smoke bench-statements clean

install: $(STAMP)

# SQLAlchemy 2.1 (what pip installs today) next to the test extra's 2.0: alone in its own
# directory, put first on PYTHONPATH by tests/test_client_sqlalchemy_reflection.py's subprocess.
SQLALCHEMY_21 := 2.1.9

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -rf $(VENV)/sqlalchemy-2.1
	$(BIN)/pip install -q --no-deps --target $(VENV)/sqlalchemy-2.1 sqlalchemy==$(SQLALCHEMY_21)
	touch $(STAMP)

# make run [PORT=5433] [HOST=127.0.0.1] [DATA_DIR=./data] [CONFIG=tierd.toml]; stop with Ctrl-C.
run: install
	$(BIN)/tierd serve $(if $(CONFIG),--config $(CONFIG)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
		$(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# systemd-analyze for the unit-file test (tests/test_service.py skips it, saying why, without);
# pgJDBC, a JDK, Node.js with node-postgres and psql for the client tests (tests/clients).
test-deps:
	@sh tests/install-test-deps.sh

# Test files run on TEST_WORKERS pytest-xdist workers (a file stays on one worker, so its
# module-scoped daemons are shared as written); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: install test-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: install
	$(BIN)/python bench/run.py

bench-smoke: install
	$(BIN)/python bench/run.py --smoke

bench-statements: install
	$(BIN)/python bench/per_statement.py

clean:
	rm -rf $(VENV) data
