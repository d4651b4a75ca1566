# pi-cluster: `make demo` runs the journey on a virtual lab cluster; `make test` runs every test.
# Both do all set-up first (Debian packages, a virtualenv in .venv, the package in editable mode).

VENV     ?= .venv
PY       := $(VENV)/bin/python
BIN      := $(VENV)/bin
PYTHON   ?= python3
APT_PKGS := iptables nftables dnsmasq-base openssh-server openssh-client curl dnsutils iputils-ping conntrack \
            mtools dosfstools fdisk e2fsprogs xz-utils zstd unzip iproute2 util-linux kmod procps python3-venv openssl
PYTEST_ARGS ?=

.PHONY: setup apt venv lint test unit demo clean

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check pi_cluster tests bench
	$(BIN)/mypy pi_cluster
	if [ -f playbooks/site.yml ]; then PATH="$(abspath $(BIN)):$$PATH" $(BIN)/ansible-lint --offline --profile production playbooks/; fi

test: setup lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -q tests/unit

demo: setup
	@set -e; pc=$(BIN)/pi-cluster; lab=$${DEMO_LAB:-pidemo}; inv=/var/lib/pi-cluster/lab/$$lab/inventory; \
	trap "$$pc lab down --name $$lab >/dev/null 2>&1 || true" EXIT; \
	echo "== 1. the example inventory (edit a copy for your Pis)"; $$pc inventory check -i inventory/example; \
	echo "== 2. a virtual 3-node Pi cluster on this machine"; $$pc lab up --name $$lab; \
	echo "== 3. its inventory, checked like yours"; $$pc inventory check -i $$inv; \
	echo "== 4. Service networking conformance (exit 0: healthy)"; $$pc check -i $$inv --junit $$(mktemp --suffix=.xml); \
	echo "== 5. break node2's kube-proxy rules, check again (exit 1, cause first)"; \
	$$pc lab fault --name $$lab drop-rules node2; \
	if $$pc check -i $$inv --only proxy,clusterip,nodeport; then echo "expected failures"; exit 1; fi; \
	$$pc lab heal --name $$lab; echo "== done; the lab is removed on exit"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
