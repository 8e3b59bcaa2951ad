# The two commands: `make run` (the demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	scripts/run-demo.sh

test: install
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

# The Helm chart: install the pinned helm (scripts/install-helm.sh), lint it
# strictly with the default and the production values, then render it and
# check every manifest (tests/test_helm_*.py).
CHART := helm/ai-gateway
HELM := .tools/bin/helm
.PHONY: helm-lint
helm-lint: install
	scripts/install-helm.sh
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART)/ci/production-values.yaml
	$(BIN)/pytest tests/test_helm_*.py

# The benchmark of issue 12 (docs/performance.md): installs wrk from Debian's
# packages if missing, then prints a table and writes var/bench.json. Options
# through BENCH_ARGS, e.g. `make bench BENCH_ARGS="--quick"` or "--profile".
.PHONY: bench
bench: install
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# The reliability and security proof of issue 13 (docs/reliability.md): fault,
# bad-input and security suites in embedded mode, and in cluster mode too
# with RELIABILITY_DATABASE_URL (PostgreSQL) and RELIABILITY_REDIS_URL set;
# the page is written from what they measured. Options through
# RELIABILITY_ARGS, e.g. "--examples 1000", "--soak 600" (the soak) or "--atheris 60"
# (the atheris harnesses, `make fuzz`, 60 s each).
.PHONY: reliability
reliability: install
	case "$(RELIABILITY_ARGS)" in *--atheris*) $(MAKE) --no-print-directory atheris;; esac
	$(BIN)/python scripts/reliability.py $(RELIABILITY_ARGS)

# The atheris harnesses of tests/fuzz/ (the SSE parser, Bedrock's event-stream
# decoder, the request readers, the guardrail scanners), each for
# FUZZ_SECONDS (60). atheris is installed here, not by `make install`.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: install atheris
	$(BIN)/python scripts/fuzz.py --seconds $(FUZZ_SECONDS) $(FUZZ_ARGS)

.PHONY: atheris
atheris: install
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/python -m pip install --quiet atheris==3.0.0
