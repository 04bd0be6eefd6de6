# Every target creates .venv when it is missing, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ./data
SHARDS ?= 4
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The fast Serve ingress (see docs); harmless until the HTTP app is deployed.
export RAY_SERVE_ENABLE_HA_PROXY ?= 1
export RAY_SERVE_THROUGHPUT_OPTIMIZED ?= 1

.PHONY: run stop test lint tools wrk bench bench-smoke bench-engine bench-http bench-carts bench-restock chaos clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/inventory up --data-dir $(DATA_DIR) --shards $(SHARDS)

stop: $(BIN)/.installed
	$(BIN)/inventory down

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite's smoke run first, so pytest's summary closes the output.
test: $(BIN)/.installed lint bench-smoke
	$(BIN)/python -m pytest

# The benchmark suite: S1-S7 against the PostgreSQL, SQLite and Redis baselines and a no-op
# endpoint, in one run (about 15 minutes); report in bench/results/<date>.md/.json/.png.
# bench/setup.sh installs and starts PostgreSQL and Redis (apt-get) and the suite stops them.
bench: $(BIN)/.installed wrk
	$(BIN)/python -m bench.suite $(BENCH_ARGS)

# Every scenario of the suite for a few seconds (part of `make test`, so the suite cannot rot);
# its report goes to bench/results/smoke/.
bench-smoke: $(BIN)/.installed wrk
	$(BIN)/python -m bench.suite --smoke

wrk:
	command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }

# The engine alone: throughput through the shard actors, recovery time, memory per level.
bench-engine: $(BIN)/.installed
	$(BIN)/python -m bench.shard_throughput
	$(BIN)/python -m bench.recovery
	$(BIN)/python -m bench.memory

# A 1,000,000-row Parquet restock end to end on a private Ray instance, reading alone, exports.
bench-restock: $(BIN)/.installed
	$(BIN)/python -m bench.restock
	$(BIN)/python -m bench.restock_read
	$(BIN)/python -m bench.exports

# HTTP load through Serve with wrk; installs wrk with apt-get when it is missing.
# BENCH_ARGS=--quick for a smoke run, --profile to py-spy the replica.
bench-http: $(BIN)/.installed wrk
	$(BIN)/python -m bench.http_throughput $(BENCH_ARGS)

# Five-line carts across five shards over HTTP, reserved then committed (wrk as above).
bench-carts: $(BIN)/.installed wrk
	$(BIN)/python -m bench.http_carts $(BENCH_ARGS)

# The long fault-injection run (30 minutes of load, hundreds of faults of every kind) on a private
# multi-node cluster; report in artifacts/chaos/report.md. `make test` runs a two-minute one.
CHAOS_SECONDS ?= 1800
chaos: $(BIN)/.installed
	$(BIN)/python -m chaos.run --seconds $(CHAOS_SECONDS) --clients 48 --out artifacts/chaos $(CHAOS_ARGS)

# System tools some tests use: headless Chromium and its driver (the console's browser test),
# promtool (checks the alert rules) and etcd (the replicated mode's tests start a local one). CI
# runs this before `make test`; elsewhere the browser and promtool tests are skipped without them,
# and the etcd fixture installs etcd itself.
tools:
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && \
	  command -v promtool >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update && \
	    $(SUDO) apt-get install -y chromium chromium-driver prometheus; }
	command -v etcd >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y etcd-server; }

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
