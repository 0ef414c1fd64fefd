# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-unit lint bench soak soak-short e2e-k8s kube image clean

$(STAMP): pyproject.toml scripts/install-system-deps
	./scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# The web dashboard's chart library (npm registry, pinned): served by the hub, no CDN.
WEB_ASSETS := federation/hub/static/vendor/chart.umd.js
$(WEB_ASSETS): scripts/web-assets | $(STAMP)
	./scripts/web-assets

install: $(STAMP) $(WEB_ASSETS)

demo: $(STAMP) $(WEB_ASSETS)
	$(BIN)/fedctl demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check federation vm-agents tests
	$(BIN)/lint-imports
	$(BIN)/mypy --strict federation vm-agents/vmagent
	$(BIN)/vermin -q -t=3.9- --no-tips --violations vm-agents/vmagent  # the agent runs on old VMs' Python

# kube-apiserver and etcd for the Kubernetes-facing tests, built from the Go module proxy (pinned in
# tests/kube/go.mod) into ~/.cache/federation/kube/<version>/bin once per machine; see README.md.
kube:
	nice -n 10 ./scripts/build-kube

# The hub's image (Dockerfile) built here by buildah on an mmdebstrap Debian base; nothing is
# rebuilt when an image of the same inputs exists (scripts/build-image).
image:
	nice -n 15 ./scripts/build-image

# The image's test (marker image) joins once the image of the current sources is built. The
# 3-minute chaos soak (marker soak) runs beside the rest, in its own process (scripts/test-suite).
test: lint kube $(WEB_ASSETS)
	BIN=$(BIN) MARKERS="not k8s and not soak$$(./scripts/build-image --cached >/dev/null 2>&1 || echo ' and not image')" \
		./scripts/test-suite

test-unit: $(STAMP) $(WEB_ASSETS)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/pytest -q -s tests/benchmarks

# The chaos soak (docs/soak.md): SOAK_MINUTES (default 30), SOAK_SEED to replay a run. `make soak-short`
# runs the same code for 3 minutes (tests/soak/test_soak.py), as `make test` does beside the suite.
SOAK_MINUTES ?= 30
soak-short: $(STAMP) $(WEB_ASSETS)
	$(BIN)/pytest -q -s -m soak tests/soak

soak: $(STAMP) $(WEB_ASSETS)
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m tests.soak

e2e-k8s: $(STAMP)
	$(BIN)/pytest -q -rs -m k8s tests/k8s_real

clean:
	rm -rf $(VENV) .federation-demo
