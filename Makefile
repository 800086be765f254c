# loglake: `make demo` and `make test` are all a fresh machine needs (Python 3.11, Java 17).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt | cksum | cut -d' ' -f1)
SCALE ?= small
BENCH_ARGS ?=
# Test files run in this many processes (pytest-xdist), each with its own Spark and moto
# server: most tests wait on a JVM's start or a subprocess, so 2 halve the time on 2 cores.
TEST_WORKERS ?= 2

.PHONY: demo test lint clean lock java install bench

java:
	@command -v java >/dev/null 2>&1 || { echo "java not found: loglake needs Java 17 for Spark (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless)"; exit 1; }

$(STAMP): setup.py constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "loglake needs Python 3.11 (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[local,test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: java $(STAMP)
	$(BIN)/loglake demo

test: java $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check lib addapart glue_jobs tests
	$(BIN)/cfn-lint deploy/loglake.yaml

lock: $(STAMP)
	(echo "# Exact versions of the whole dependency tree, used by 'make' (pip install -c)."; \
	 echo "# Regenerate with: make lock"; \
	 $(BIN)/pip freeze --exclude-editable | grep -v '^loglake') > constraints.txt

.PHONY: columns
# Record columns appended to a table in ddl/columns.tsv; refuses any other change (Athena reads ORC by position).
columns: $(STAMP)
	$(BIN)/python -m loglake.contract --update-snapshot

.PHONY: package template

# The deployable artifacts into dist/, reproducibly: the loglake wheel, the Glue job
# scripts and the AddAPart Lambda zip (needs PyPI for the Lambda's manylinux wheels).
package: $(STAMP)
	$(BIN)/python -m loglake.package --out dist

# Regenerate the CloudFormation template from the code (tests fail while it is stale).
template: $(STAMP)
	$(BIN)/python -m loglake.deploy deploy/loglake.yaml

.PHONY: glue-lock glue-check

# Re-resolve the wheels the Glue 5.0 jobs need beyond what Glue provides
# (deploy/glue-wheels.txt; needs PyPI) and the template that lists them, after changing
# setup.py, constraints.txt or deploy/glue-5.0-provided.txt.
glue-lock: $(STAMP)
	$(BIN)/python -m loglake.package --glue-lock
	$(BIN)/python -m loglake.deploy deploy/loglake.yaml

# Install the package into a throwaway venv holding Glue 5.0's provided versions (from
# PyPI), with no index; check nothing Glue provides is replaced and that the job's modules
# run on Glue's numpy, pandas, pyarrow and botocore (about 80 seconds). `make test` only
# resolves that install (pip --dry-run on the metadata of Glue's modules): no venv, no runs.
glue-check: $(STAMP)
	LOGLAKE_GLUE_CHECK=1 $(BIN)/python -m pytest -q tests/test_deploy.py -k glue

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache build dist lib/*.egg-info spark-warehouse metastore_db derby.log
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# SCALE=small (100k events, a smoke run: RESULTS-small.md), medium (1M, ~20 min, the committed bench/RESULTS.md) or large (5M, hours)
bench: java $(STAMP)
	$(BIN)/python -m loglake.bench --scale $(SCALE) $(BENCH_ARGS)
