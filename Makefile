# edgetwin developer and operator entry points. Everything a target needs, it installs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INTEROP_VENV := .venv-interop
INTEROP_STAMP := $(INTEROP_VENV)/.installed

.PHONY: demo test bench hil soak lint proto system-deps venv interop-venv clean

## Python environment: the gateway, firmware-sim, the dev tools and `edgetwin train`, editable.
$(STAMP): pyproject.toml firmware-sim/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "edgetwin needs Python 3.11+"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,train]' -e ./firmware-sim
	touch $(STAMP)

venv: $(STAMP)

## A second environment with an independent Sparkplug B implementation (pysparkplug, which
## pins paho-mqtt<2) for tests/interop; it runs hil/interop/decode_sparkplug.py only.
$(INTEROP_STAMP): hil/interop/requirements.txt
	test -x $(INTEROP_VENV)/bin/python || $(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INTEROP_VENV)/bin/python -m pip install --quiet -r hil/interop/requirements.txt
	touch $(INTEROP_STAMP)

interop-venv: $(INTEROP_STAMP)

## Debian packages the tests and the demo use: a real Mosquitto broker, systemd-analyze.
system-deps:
	@bash hil/scripts/system-deps.sh

## Run the gateway against firmware-sim and a local broker; Ctrl-C stops everything.
demo: system-deps $(STAMP)
	@bash hil/scripts/demo.sh

## The whole test suite (real broker, real simulators, real files).
test: system-deps $(STAMP) $(INTEROP_STAMP)
	$(PY) -m pytest

## Benchmarks: each prints its figures and one JSON line.
bench: system-deps $(STAMP)
	@for bench in hil/bench/bench_*.py; do echo "== $$bench"; $(PY) $$bench || exit 1; done

## Hardware-in-the-loop: the quick scenario set (every fault kind once, a few minutes)
## against firmware-sim and Mosquitto; the report goes to hil/reports/<timestamp>/.
hil: system-deps $(STAMP) $(INTEROP_STAMP)
	$(PY) -m hil.harness run

## The soak: HOURS of randomized faults on an accelerated plant clock, same report.
HOURS ?= 1
soak: system-deps $(STAMP) $(INTEROP_STAMP)
	$(PY) -m hil.harness soak --hours $(HOURS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests firmware-sim/src hil
	$(VENV)/bin/mypy
	MYPYPATH=firmware-sim/src $(VENV)/bin/mypy --strict firmware-sim/src/plcsim
	MYPYPATH=firmware-sim/src:. $(VENV)/bin/mypy --strict -p hil.harness

## Regenerate the Sparkplug B protobuf module (committed) from its .proto.
SPB := src/edgetwin/sync/sparkplug
proto: $(STAMP)
	cd $(SPB) && ../../../../$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sparkplug_b.proto

clean:
	rm -rf $(VENV) $(INTEROP_VENV) demo-state .pytest_cache .mypy_cache .ruff_cache
