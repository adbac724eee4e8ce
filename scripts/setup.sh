#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh Debian machine (run as root, or with sudo rights):
# system packages the demo and tests need, then a virtualenv with the pinned Python deps.
# Called by `make demo` and `make test`; safe to run again (does only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
# the 3-node broker clusters (docs/cluster.md): RabbitMQ (the chosen one) and NATS
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # broker TLS certificates (tests, broker init)
# headless Chromium renders `muckwatch report` in the tests (screenshot + DOM)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -d /usr/share/fonts/truetype/wqy ] || need+=(fonts-wqy-zenhei)  # Chinese names in reports
# the console's browser tests: Selenium drives Debian's Chromium through chromedriver
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# node + npm run the private TimescaleDB (PGlite) that the TimescaleDB tests use, and
# install the console's pinned map and chart libraries
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || need+=(python3)
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

# `make bench` also compiles bench/cpub.c, a C MQTT publisher (gcc, libmosquitto headers),
# and profiles with py-spy
if [ "${1:-}" = "--bench" ]; then
  command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  [ -f /usr/include/mosquitto.h ] || need+=(libmosquitto-dev)
fi

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need[*]}"
  $SUDO apt-get update -qq
  # no system-wide services started by the packages (RabbitMQ's would fail without an init
  # system and fail the install); muckwatch starts private ones of its own
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$policy" ] || $SUDO rm -f "$policy"
fi
# (PostgreSQL still creates its default cluster on install; muckwatch never uses it.)

stamp=.venv/.muckwatch-installed
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi

# the console's map and chart libraries (console/package.json, exact versions in its lock
# file), served by `muckwatch serve` from console/node_modules: nothing from a CDN at run time
if [ ! -f console/node_modules/.package-lock.json ] \
   || [ console/package-lock.json -nt console/node_modules/.package-lock.json ]; then
  echo "setup: installing the console's pinned npm packages"
  (cd console && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
