# Everything a user or CI runs. `make test` sets up what it needs from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .venv-tools
ASL_TOOLS := tools/asl/node_modules
PIP_FLAGS := --quiet --disable-pip-version-check
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export SAM_CLI_TELEMETRY := 0

.PHONY: setup browser test coverage unit differential test-without-speedups lint demo bench bench-record bench-routing schemas lock graph clean build lock-requirements

setup: $(BIN)/.installed $(TOOLS)/sam/.installed $(TOOLS)/checkov/.installed $(TOOLS)/aws/.installed $(ASL_TOOLS)/.installed browser

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev,local,graph]"
	touch $@

# The linters pin dependencies that conflict with moto's: each gets its own venv.
$(TOOLS)/sam/.installed: tools-requirements/sam.txt
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install $(PIP_FLAGS) -r tools-requirements/sam.txt
	touch $@

$(TOOLS)/checkov/.installed: tools-requirements/checkov.txt
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install $(PIP_FLAGS) -r tools-requirements/checkov.txt
	touch $@

# The aws CLI, a client of `local up` in tests/local_up (it pins botocore: a venv of its own).
$(TOOLS)/aws/.installed: tools-requirements/awscli.txt
	$(PYTHON) -m venv $(TOOLS)/aws
	$(TOOLS)/aws/bin/pip install $(PIP_FLAGS) -r tools-requirements/awscli.txt
	touch $@

# LiteLLM, for the peer figure of `make bench` only (heavy: a venv of its own, not part of setup).
$(TOOLS)/litellm/.installed: tools-requirements/litellm.txt
	$(PYTHON) -m venv $(TOOLS)/litellm
	$(TOOLS)/litellm/bin/pip install $(PIP_FLAGS) -r tools-requirements/litellm.txt
	touch $@

# AWS's ASL language service and asl-validator (npm, pinned by the lock file). Without node the
# tests that use them skip and say so.
$(ASL_TOOLS)/.installed: tools/asl/package.json tools/asl/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools/asl --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the ASL validator tests will skip"; fi

# Headless Chromium for tests/browser, from Debian's packages: installed once (as root), else they skip saying why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else echo "chromium and chromium-driver not installed (needs root: apt-get install chromium chromium-driver): tests/browser will skip"; fi

test: setup
	$(BIN)/ruff check src functions tests bench
	$(BIN)/mypy
	$(BIN)/mypy --ignore-missing-imports functions/heartbeat/app.py
	$(BIN)/mypy --ignore-missing-imports functions/quality_model/app.py
	$(BIN)/pytest -n 2 --durations=10 --cov --cov-report=term --cov-report=xml -m "not local_stack" tests
	$(BIN)/pytest -n 2 --dist loadscope --durations=10 -p no:cov -m local_stack tests

# The whole suite under coverage: coverage's tracer costs the local-stack tests 40 % more time (Python
# 3.11 has no sys.monitoring), so `make test` measures it on the in-process tests only.
coverage: setup
	$(BIN)/pytest -n 2 --dist loadscope --cov --cov-report=term --cov-report=xml tests

# Seconds, not minutes: no local stack, no external linters (`make test` runs everything).
unit: $(BIN)/.installed
	$(BIN)/pytest -n 2 -m "not local_stack and not slow" tests

# Every workflow path on the local stack, run again on a second ASL interpreter (also in `make test`).
differential: setup
	$(BIN)/pytest tests/differential

# The workflow suites with the local stack's speed-ups off (the gap adapters only): slower, same results.
test-without-speedups: setup
	ROUTING_MANAGER_LOCAL_SPEEDUPS=0 $(BIN)/pytest tests/workflow tests/differential tests/unit/test_moto_adapters.py

# Lambda's packages (python3.12, arm64) without python3.12 or Docker: each function's Makefile
# (BuildMethod: makefile) installs wheels for Lambda's platform with this venv's pip.
BUILD_DIR ?= .aws-sam/build
build: $(BIN)/.installed $(TOOLS)/sam/.installed
	PIP="$(CURDIR)/$(BIN)/python -m pip" $(TOOLS)/sam/bin/sam build --template template.yaml --build-dir $(BUILD_DIR)

# Re-resolves functions/rules/requirements.lock (hash-pinned, for Lambda's platform).
lock-requirements: $(BIN)/.installed
	$(BIN)/python tools/lock_lambda_requirements.py

demo: $(BIN)/.installed
	$(BIN)/routing-manager local run events/

# Prints the figures and keeps them in .local/bench/; bench-record rewrites the tracked ones.
bench: $(BIN)/.installed $(TOOLS)/litellm/.installed
	$(BIN)/python bench/run.py

bench-record: $(BIN)/.installed $(TOOLS)/litellm/.installed
	$(BIN)/python bench/run.py --record

# The routing strategies against simulated providers (issue 25): .local/bench/routing.json, the plot and
# the table in docs/ROUTING_STRATEGIES.md. No AWS, about a minute.
bench-routing: $(BIN)/.installed
	$(BIN)/python bench/routing.py

schemas: $(BIN)/.installed
	$(BIN)/routing-manager schemas --write

lock: $(BIN)/.installed
	$(BIN)/routing-manager table lock

graph: $(BIN)/.installed
	$(BIN)/routing-manager graph --format svg -o docs/routing-graph.svg
	$(BIN)/routing-manager graph --format png -o docs/routing-graph.png
	$(BIN)/routing-manager graph --format mermaid -o docs/routing-graph.mmd

clean:
	rm -rf $(VENV) $(TOOLS) $(ASL_TOOLS) .coverage coverage.xml .hypothesis
