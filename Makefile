# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# one capture of each protocol, each with something an analyst must see
DEMO_CAPTURES := pcaps/modbus_writes.pcap pcaps/s7_control.pcap pcaps/opcua_none_plaintext_password.pcap
DEBIAN_PACKAGES := tshark tcpdump tcpreplay chromium

.PHONY: demo test test-fast lint install test-deps bench captures clean

$(BIN)/icsguard: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# byte-compiled as a packaged install is, so that no run compiles the modules again at start
# (a third of a second of every command where Python is told not to write its caches)
install: $(BIN)/icsguard
	$(BIN)/python -m compileall -q icsguard parsers

demo: install
	rm -f demo.db
	$(BIN)/icsguard analyze --db demo.db $(DEMO_CAPTURES)
	@echo
	@echo "icsguard is installed in $(VENV): run '. $(VENV)/bin/activate' to put it on your PATH"
	@echo "(or call $(BIN)/icsguard), then e.g. 'icsguard alerts --db demo.db'"

# Debian packages the tests use: tshark (cross-checks), tcpdump (live captures) and tcpreplay
# (the sensor against another replayer) and chromium (the HTML report, checked in a browser).
test-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: install
	$(BIN)/ruff check --no-cache .

# Every tier: unit, end-to-end (real peers, live tcpdump, the CLI) and the tshark cross-checks.
test: lint test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The unit tier alone: one stage at a time, no subprocess, no capture tools (under a minute).
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m unit

bench: install test-deps
	$(BIN)/python -m bench.decode_vs_tshark

captures: install test-deps
	$(BIN)/python -m pcaps.make_captures

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache demo.db
