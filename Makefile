# rkdump: `make demo` crashes a real kernel in QEMU and captures it; `make test` runs every test.
MUSL      := x86_64-unknown-linux-musl
BIN       := target/$(MUSL)/release
OUT       ?= out/demo
CARGO     ?= cargo

.PHONY: all deps build demo test bench clippy fmt clean-out space

all: build

deps:
	bash scripts/deps.sh

# Static binaries: rkdump-init is the capture /init; rkdump itself also runs inside test guests.
build:
	$(CARGO) build --release --target $(MUSL) -p rkdump -p rkdump-init
	@readelf -l $(BIN)/rkdump-init | grep -q INTERP && { echo "rkdump-init is not static" >&2; exit 1; } || true

# Each demo starts from an empty $(OUT) (out/ is ignored by git).
demo: deps build
	rm -rf $(OUT)
	$(BIN)/rkdump crash-test --out $(OUT)

# Lints (also of the fuzz crates, which are workspaces of their own: running them needs nightly
# and cargo-fuzz, compiling them does not), unit tests of every crate, then the end-to-end tests
# (QEMU, crash as the oracle), then the vmcore crate again against the real vmcores the end-to-end
# tests captured (makedumpfile, vmcore-dmesg and crash as oracles).
# A full `make test` peaks at about 8 GiB under target/ (the build, 2 GiB guests' vmcores and
# the images they are captured onto); a full disk fails it late and obscurely, so say so first.
TEST_GIB  ?= 10
space:
	@mkdir -p target
	@free=$$(df -Pk target | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free" -lt $(TEST_GIB) ]; then \
		echo "make test: only $$free GiB free under target/; the tests need about $(TEST_GIB) GiB (TEST_GIB=N overrides)" >&2; \
		exit 1; \
	fi

test: space deps build
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path vmcore/fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path vmcore/fuzz/Cargo.toml --all-targets -- -D warnings
	$(CARGO) test --workspace --no-fail-fast
	RKDUMP_BIN_DIR=$(CURDIR)/$(BIN) RKDUMP_DRGN=$(CURDIR)/target/drgn-venv/bin/drgn \
		$(CARGO) test -p rkdump --test e2e -- --ignored --test-threads=1 --nocapture
	RKDUMP_VMCORES=$(CURDIR)/target/e2e/vmcores RKDUMP_DRGN=$(CURDIR)/target/drgn-venv/bin/drgn \
		$(CARGO) test -p rkdump-vmcore --lib --tests --no-fail-fast -- --nocapture

# rkdump against makedumpfile on the same vmcore (default: one `make test` captured), and the
# capture image's size and build time. Results are recorded in BENCHMARKS.md.
bench: build
	bash bench/run.sh $(VMCORE)
	bash bench/image.sh

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# rustfmt.toml: 120 columns. `make test` fails on unformatted code.
fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml
	$(CARGO) fmt --manifest-path vmcore/fuzz/Cargo.toml

clean-out:
	rm -rf out
