# Thin driver for CMake and the test suites. `make demo` and `make test` work
# on a fresh Debian machine: each runs scripts/setup.sh first, for what it
# uses (demo: the build and an S3 server; test: everything the tests run).
BUILD   ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all setup setup-demo setup-e2e compile build test unit integration sanity asan chart cluster fuzz-smoke \
        image-test demo bench bench-fleet e2e fuzz stress clean

all: build

setup:
	@bash scripts/setup.sh test
setup-demo:
	@bash scripts/setup.sh demo
setup-e2e:
	@bash scripts/setup.sh e2e

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DWC_TESTS=ON $(CMAKE_FLAGS)

compile: $(BUILD)/build.ninja
	cmake --build $(BUILD)

build: setup
	@$(MAKE) --no-print-directory compile

# The structure rules of docs/design.md (layers, no mutable process state), then the unit tests.
unit: build
	python3 tests/check/structure.py $(BUILD)
	cd $(BUILD) && ctest --output-on-failure

integration: build
	WC_BUILD=$(CURDIR)/$(BUILD) python3 -m pytest -q tests/integration

sanity: build
	bash tests/sanity/run.sh $(BUILD) file
	bash tests/sanity/run.sh $(BUILD) s3

# The same suites on an ASan + UBSan + LeakSanitizer build: a leak or an
# error report makes the plugin exit non-zero, which the tests check.
ASAN_BUILD ?= build-asan
asan: setup
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DWC_SANITIZE=ON -DWC_TESTS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(ASAN_BUILD)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	WC_BUILD=$(CURDIR)/$(ASAN_BUILD) ASAN_OPTIONS=detect_leaks=1 python3 -m pytest -q tests/integration
	ASAN_OPTIONS=detect_leaks=1 bash tests/sanity/run.sh $(ASAN_BUILD) file
	ASAN_OPTIONS=detect_leaks=1 bash tests/sanity/run.sh $(ASAN_BUILD) s3

chart: setup
	bash tests/chart/run.sh

# The short form of make e2e: a real single-node cluster (kubelet on
# containerd), the chart installed with helm, pods reading a model from a
# PVC; the image is the host build's (make e2e builds the Dockerfile's).
cluster: build
	WC_BUILD=$(CURDIR)/$(BUILD) WC_E2E=short python3 -m pytest -q tests/e2e

# Builds the container image without a Docker engine (debootstrap base,
# buildah) and runs warmcache-csi --version in it. Slow: not part of test.
image-test: setup-e2e
	bash scripts/image-test.sh

test: unit integration sanity chart cluster asan fuzz-smoke
	@echo "make test: unit, integration, csi-sanity, chart, cluster, the first three again under ASan+UBSan, fuzz smoke: passed"

demo: setup-demo
	@$(MAKE) --no-print-directory compile
	bash scripts/demo.sh $(BUILD)

# Every cluster scenario with the image built from the Dockerfile, then the
# Kubernetes external-storage e2e suite against the driver.
e2e: setup-e2e
	@$(MAKE) --no-print-directory compile
	WC_BUILD=$(CURDIR)/$(BUILD) WC_E2E=full python3 -m pytest -q tests/e2e

# libFuzzer on every parser of outside input; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: setup
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

# The same targets for 10 s each, in make test: they build, the corpora
# replay, and a shallow crash shows at once.
fuzz-smoke: setup
	bash tests/fuzz/run.sh 10

# kill -9 of the plugin at STRESS_RUNS (100) random points (fills, mounts), and
# at each named crash point, with restart and invariant checks after each.
STRESS_RUNS ?= 100
stress: build
	STRESS_RUNS=$(STRESS_RUNS) WC_BUILD=$(CURDIR)/$(BUILD) python3 -m pytest -q tests/stress

# N fills of one model against one S3 prefix's request limit (issue #17)
bench-fleet: build
	python3 bench/fleet_bench.py --build $(BUILD)

bench:
	bash scripts/setup.sh bench
	@$(MAKE) --no-print-directory compile
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
