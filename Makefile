# Thin driver for CMake and the test suites. `make demo` and `make test` work
# on a fresh Debian machine: both run scripts/setup.sh first.
BUILD   ?= build
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: all setup build test unit integration sanity demo bench fuzz clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DWC_TESTS=ON $(CMAKE_FLAGS)

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD)

unit: build
	cd $(BUILD) && ctest --output-on-failure

integration: build
	WC_BUILD=$(CURDIR)/$(BUILD) python3 -m pytest -q tests/integration

sanity: build
	bash tests/sanity/run.sh $(BUILD)

test: unit integration sanity
	@echo "make test: unit, integration and csi-sanity passed"

demo: build
	bash scripts/demo.sh $(BUILD)

# libFuzzer on every parser of outside input; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: setup
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
