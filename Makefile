# The two commands: `make serve` and `make test`. Everything else is a step they share.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
EXAMPLES := $(patsubst %/,%,$(wildcard examples/*/))

.PHONY: setup system-deps runtime runtime-wheel serve test lint bench fuzz soak clean

setup: system-deps $(VENV)/.installed runtime

system-deps:
	@bash runtimes/python/install-system-deps.sh

$(VENV)/.installed: pyproject.toml setup.py $(wildcard wasmlambda/_fastpath/*.pyx)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

runtime: $(VENV)/.installed
	@$(BIN)/wasmlambda runtime build

# The runtime as a py3-none-any wheel in dist/, for machines that cannot build it (README, "On macOS and Windows").
runtime-wheel: runtime
	$(BIN)/wasmlambda runtime pack -o dist

serve: setup
	$(BIN)/wasmlambda serve --host $(HOST) --port $(PORT) --deploy $(EXAMPLES)

lint: $(VENV)/.installed
	$(BIN)/ruff check wasmlambda guest_sdk tests bench runtimes/python/build.py
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest
	@echo "== the benchmarks, each run once as a smoke test (make bench measures them)"
	$(BIN)/pytest -q bench --benchmark-disable
	@echo "== the whole suite again on the portable paths: pure-Python twins, no Linux-only calls (WASMLAMBDA_PORTABLE=1)"
	WASMLAMBDA_PORTABLE=1 $(BIN)/pytest -q

bench: setup
	@mkdir -p .benchmarks
	$(BIN)/pytest bench --benchmark-only --benchmark-columns=min,median,mean,max,rounds \
		--benchmark-json=.benchmarks/micro.json
	$(BIN)/python bench/report.py .benchmarks/micro.json | tee .benchmarks/micro.md
	$(BIN)/python bench/load.py | tee .benchmarks/load.md
	$(BIN)/python bench/deadline.py | tee .benchmarks/deadline.md
	$(BIN)/python bench/metering.py | tee .benchmarks/metering.md
	$(BIN)/python bench/composition.py | tee .benchmarks/composition.md
	$(BIN)/python bench/invoke_in_process.py | tee .benchmarks/invoke.md
	$(BIN)/python bench/scale_out.py --out .benchmarks && cp .benchmarks/scale_out.png bench/scale_out.png
	$(BIN)/python bench/locality.py --out .benchmarks
	$(BIN)/python bench/streaming.py | tee .benchmarks/streaming.md
	$(BIN)/python bench/deploy_flask.py | tee .benchmarks/deploy_flask.md
	$(BIN)/python bench/cold_start.py | tee .benchmarks/cold_start.md
	$(BIN)/python bench/report.py --write bench/RESULTS.md .benchmarks/micro.md .benchmarks/load.md \
		.benchmarks/deadline.md .benchmarks/metering.md .benchmarks/composition.md .benchmarks/invoke.md \
		.benchmarks/scale_out.md .benchmarks/locality.md .benchmarks/streaming.md .benchmarks/deploy_flask.md \
		.benchmarks/cold_start.md

fuzz: setup
	$(BIN)/python bench/fuzz_parsers.py parser -runs=$${FUZZ_PARSER_RUNS:-500000}
	$(BIN)/python bench/fuzz_parsers.py package -runs=$${FUZZ_PACKAGE_RUNS:-50000}
	$(BIN)/python bench/fuzz.py --inputs $${FUZZ_INPUTS:-1000000}

soak: setup
	$(BIN)/python bench/soak.py --minutes $${SOAK_MINUTES:-10}

clean:
	rm -rf build wasmlambda/_fastpath/*.c wasmlambda/_fastpath/*.so
