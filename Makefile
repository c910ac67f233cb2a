# node-comm developer commands. Everything installs into .venv/ from PyPI; nothing else is needed
# but Python >= 3.10 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PKGS   := kernel plugins/transport_memory plugins/serializers plugins/interceptors plugins/transport_grpc plugins/transport_nats
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(PKGS))

.PHONY: install test demo lint bench soak fuzz proto proto-check clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS) constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt $(addprefix -e ./,$(PKGS)) -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) examples/quickstart_memory.py
	$(PY) examples/quickstart_grpc.py
	$(PY) examples/quickstart_nats.py

lint: install
	$(PY) -m ruff check kernel plugins tests examples node_comm bench
	$(PY) -m mypy kernel/src/node_comm

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
