# Everything a fresh machine with only python3 needs. `make demo` and `make test` are the quick start.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint sysdeps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/autonomic demo

# System packages the tests need, installed only when missing: git (the config actuator commits
# and reverts for real), Prometheus and Alertmanager (real servers for the source tests), Chromium
# (the dashboard's browser tests), dbus-daemon (a private bus for the systemd actuator's stand-in),
# systemd-analyze (verifies examples/systemd/autonomic.service; nothing is started; about 10 MB),
# openssl (a certificate for the email notifier's STARTTLS test's real SMTP server) and PostgreSQL (a real server for the store's tests; Debian keeps its binaries off PATH, in
# /usr/lib/postgresql/<version>/bin, so that is where the check looks).
SYSDEPS := git:git prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
           chromium:chromium dbus-daemon:dbus systemd-analyze:systemd openssl:openssl
sysdeps:
	@missing=""; for pair in $(SYSDEPS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

lint: install
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)
	$(VENV)/bin/mypy

test: install sysdeps lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .autonomic build *.egg-info
