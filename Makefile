# The two commands a newcomer needs: `make run` (the main job) and `make test`.
# Every set-up step is here, so both work on a fresh machine.

GUEST_OUT := guest-plugins/target/wasm32-wasip2/release
PLUGINS   := plugins

.PHONY: all setup plugins test run bench fuzz doc clean

all: test

# The guest target; idempotent, and takes seconds when it is missing.
setup:
	rustup target add wasm32-wasip2

# Builds every example plugin and gathers the components in $(PLUGINS)/.
# Copies go through a temporary name and a rename, so a running watcher
# never sees a half-written file.
plugins: setup
	cd guest-plugins && cargo build --release --target wasm32-wasip2
	mkdir -p $(PLUGINS)
	for f in $(GUEST_OUT)/*.wasm guest-plugins/*/*.toml; do \
		case "$$f" in */Cargo.toml) continue;; esac; \
		cp "$$f" "$(PLUGINS)/.$$(basename $$f).tmp" && \
		mv "$(PLUGINS)/.$$(basename $$f).tmp" "$(PLUGINS)/$$(basename $$f)"; \
	done

test: plugins
	cargo test --workspace

run: plugins
	cargo run --release -p hotslot -- watch $(PLUGINS)

# Benchmarks are not tests: they are run by hand and reported in BENCHMARKS.md.
bench: plugins
	env -u RUST_BACKTRACE cargo bench -p hotslot

# Fuzzing needs the nightly toolchain and cargo-fuzz; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: plugins
	cargo install cargo-fuzz --locked --quiet || true
	cd host && cargo +nightly fuzz run loader -- -max_total_time=$(FUZZ_SECONDS)
	cd host && cargo +nightly fuzz run request -- -max_total_time=$(FUZZ_SECONDS)

doc:
	cargo doc -p hotslot --no-deps

clean:
	cargo clean
	cd guest-plugins && cargo clean
	rm -rf $(PLUGINS)
