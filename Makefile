# The two commands of the README: `make run` and `make test`. Each installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint deps system-deps exporter demo stack clean kubernetes dashboards

# One progress line per step; pip's output goes to $(VENV)/install.log, shown (its tail) when a step fails.
$(STAMP): pyproject.toml
	@bash scripts/venv.sh $(VENV) -e '.[dev]'
	@touch $(STAMP)

deps: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

run: $(STAMP)
	@$(VENV)/bin/telltale serve --log-format console

exporter: $(STAMP)
	$(VENV)/bin/telltale exporter

# A throwaway Postgres (demo rows from deploy/sql) and Redis, the service and the exporter reading them.
demo: system-deps $(STAMP)
	$(VENV)/bin/python scripts/demo.py

# The whole monitoring stack from Debian's packages on loopback ports, no Docker (docs/stack.md); Ctrl-C stops it.
# Options: make stack STACK_ARGS="--free-ports --ha --fast"
stack: system-deps $(STAMP)
	$(PY) -m scripts.stack $(STACK_ARGS)

test: system-deps $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

# Grafana dashboards from code (grafana/dashgen) into grafana/dashboards/<Folder>/<uid>.json (committed).
dashboards: $(STAMP)
	$(PY) -m grafana.dashgen

bench: system-deps $(STAMP)
	$(VENV)/bin/python -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile
	rm -rf build/typecheck/telltale && mkdir -p build/typecheck/telltale
	for p in app checks config alerting exporter; do ln -sfn "$(CURDIR)/$$p" build/typecheck/telltale/$$p; done
	cd build/typecheck && $(abspath $(VENV))/bin/mypy --config-file $(CURDIR)/pyproject.toml -p telltale
	$(VENV)/bin/mypy --config-file pyproject.toml grafana/dashgen

# deploy/kubernetes/prometheusrule.yaml from prometheus/rules/*.yml (tests/test_kubernetes.py fails on drift).
kubernetes: $(STAMP)
	$(PY) deploy/kubernetes/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
