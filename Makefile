# The two commands: `make demo` and `make test`. Both do all set-up they need.
.PHONY: setup demo test accuracy bench bench-long bench-compression bench-handover bench-cluster bench-console lint services-up services-down cluster-up cluster-down clean

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/muckwatch demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	cd console && npm test --silent
	.venv/bin/python -m pytest

# the rules against a simulated week of the sample city (≈ 10–15 minutes): docs/accuracy.md
accuracy: setup
	.venv/bin/python -m simulator.accuracy_run

bench: setup
	@bash scripts/setup.sh --bench
	.venv/bin/python bench/run.py

# optional: 20,000 trucks at 1 Hz for 10 minutes through the whole pipeline (≈ 17 minutes)
bench-long: setup
	@bash scripts/setup.sh --bench
	.venv/bin/python bench/long_run.py

# optional: TimescaleDB compression of telemetry on simulated data, 400 trucks at 1 Hz for
# 2 hours (≈ 2 minutes; private TimescaleDB as WASM and a private PostgreSQL for comparison)
bench-compression: setup
	.venv/bin/python bench/timescale_compression.py

# optional: the console's live map with 20,000 trucks at 1 Hz in headless Chromium (≈ 5 min)
bench-console: setup
	.venv/bin/python bench/console_load.py

# optional: a node of the 3-node RabbitMQ cluster killed while C publishers send 10,000 msg/s
# through the whole pipeline, 3 runs (≈ 5 minutes; docs/cluster.md)
bench-cluster: setup
	@bash scripts/setup.sh --bench
	.venv/bin/python bench/cluster_kill.py

bench-handover: setup
	.venv/bin/python bench/handover.py

lint: setup
	.venv/bin/ruff check .

services-up: setup
	.venv/bin/muckwatch services up

services-down: setup
	.venv/bin/muckwatch services down

# a private 3-node RabbitMQ cluster (MQTT plugin, quorum queues) on loopback: docs/cluster.md
# (scripts/cluster.py up --broker nats for the NATS alternative)
cluster-up: setup
	.venv/bin/python scripts/cluster.py up

cluster-down: setup
	.venv/bin/python scripts/cluster.py down

clean:
	-.venv/bin/muckwatch services down 2>/dev/null
	-.venv/bin/python scripts/cluster.py down 2>/dev/null
	rm -rf .run build *.egg-info
