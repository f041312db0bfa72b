# Set-up and checks. Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-long lint soak scale bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Six test processes on two cores: many tests wait on servers, signals and timeouts rather
# than compute (session 25, 3,561 tests on a quiet machine: three took 330 s, four 279 s;
# session 26, 3,869 tests: four took 284 s, six 246 s).
# fetcher's bytecode first: thousands of tests start fetcher in a process of its own, and with
# PYTHONDONTWRITEBYTECODE set none found it compiled (each compiled what it imports again, 70 ms
# of CPU: session 27, 4,138 tests took 308 s and 607 s of CPU; compiled first, 236 s and 436 s).
test: $(STAMP)
	$(BIN)/python -m compileall -q fetcher
	$(BIN)/python -m pytest -q -n 6 -m "not long"

# The long tests (tests/long.txt: signals, worker processes, soaks, fuzzers; each over 1 s of
# CPU): session 33's whole suite took 821 s of CPU, 438 s on two cores under a load of 6; without
# them `make test` stays under five minutes. CI runs both.
test-long: $(STAMP)
	$(BIN)/python -m compileall -q fetcher
	$(BIN)/python -m pytest -q -n 6 -m long

# The long soaks: 20,000 URLs at -j 64 against the chaos server (a 400-URL one is part of test),
# 40 interrupt storms, and a second signal at 6 moments of a 20,000-line run (test has 10 and 1).
soak: $(STAMP)
	FETCHER_SOAK_URLS=20000 FETCHER_STORM_RUNS=40 FETCHER_HARD_STOP_PLANS=6 \
	  $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_soak.py tests/test_storm.py \
	  tests/test_hard_stop.py

# The README's GNU parallel recipe run for real: 4 shards over ssh to a throw-away sshd on
# 127.0.0.1-4 (tests/test_scale.py). As root; installs sshd, parallel and rsync from Debian's
# packages when missing. Not part of `make test` nor of CI.
SCALE_TOOLS := /usr/sbin/sshd /usr/bin/ssh-keygen /usr/bin/parallel /usr/bin/rsync
scale: $(STAMP)
	@for tool in $(SCALE_TOOLS); do test -x $$tool || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    openssh-server openssh-client parallel rsync; \
	fi
	FETCHER_SCALE=1 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_scale.py

lint: $(STAMP)
	$(BIN)/ruff check fetcher tests examples
	$(BIN)/ruff format --check fetcher tests examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

# docs/options.md is generated from `fetcher --help`; tests/test_docs.py fails when it is stale.
docs: $(STAMP)
	$(BIN)/python docs/generate_options.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
