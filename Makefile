# node-comm developer commands. Everything installs into .venv/ from PyPI; nothing else is needed
# but Python >= 3.10 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PKGS   := kernel plugins/transport_memory plugins/serializers plugins/interceptors plugins/transport_grpc plugins/transport_nats
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(PKGS))

.PHONY: install test test-pythons demo example lint bench soak fuzz proto proto-check clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS) constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt $(addprefix -e ./,$(PKGS)) -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

# The suite on the oldest and newest supported Pythons too (each in its own .venv-pyX.Y), so the
# version-specific branches run; a version that is not installed is reported and skipped.
TEST_PYTHONS ?= 3.10 3.13
test-pythons:
	@for v in $(TEST_PYTHONS); do \
		py=$$(.ci/find-python $$v) || { echo "Python $$v not found: skipped"; continue; }; \
		echo "== Python $$v ($$py)"; \
		$(MAKE) --no-print-directory test VENV=.venv-py$$v PYTHON=$$py || exit 1; \
	done

demo: install
	$(PY) examples/quickstart_memory.py
	$(PY) examples/quickstart_grpc.py
	$(PY) examples/quickstart_nats.py

# Federated averaging end to end: a coordinator and 3 participants in separate processes over gRPC,
# one killed mid-round and restarted (examples/federated_averaging/; --model-mb 50 is the full size).
example: $(VENV)/.example-installed
	$(PY) examples/federated_averaging/run_demo.py --model-mb 8

$(VENV)/.example-installed: $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[example]'
	touch $@

LINTED := kernel plugins tests examples node_comm bench
TYPED  := kernel/src/node_comm $(foreach p,$(filter plugins/%,$(PKGS)),$(p)/src)

# Lint, formatting and strict typing of the kernel and every plugin (CI runs it before the tests).
lint: install
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m mypy $(TYPED)

bench: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench

# 100k calls with random timeouts and cancellations, 100 forced reconnects, peers in other processes.
soak: install
	$(PY) -m bench.soak

# The property-based fuzzing of frames and handshakes, with many more examples than `make test`.
fuzz: install
	FUZZ_EXAMPLES=2000 $(PY) -m pytest -q -p no:randomly tests/grpc/test_grpc_fuzz.py

proto: install
	$(PY) plugins/transport_grpc/tools/gen_proto.py

clean:
	rm -rf $(VENV) .venv-py* .pytest_cache .mypy_cache .ruff_cache
