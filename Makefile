# The two commands a newcomer needs: `make run` (the main job) and `make test`.
# Every set-up step is here, so both work on a fresh machine.

GUEST_OUT := guest-plugins/target/wasm32-wasip2/release
OTHER_OUT := guest-plugins/target/other
PLUGINS   := plugins
FIXTURES  := target/fixtures

# The tools that make Python and JavaScript components, pinned, installed
# here (not system-wide) the first time they are needed.
TOOLS           := .tools
COMPONENTIZE_PY := $(TOOLS)/python/bin/componentize-py
COMPONENTIZE_JS := $(TOOLS)/node/node_modules/.bin/componentize-js
PY_VERSION      := 0.25.1
JS_VERSION      := 0.23.0

# Python and JavaScript plugins: an example (yours) and a fixture (the
# tests') of each. `make plugins` rebuilds one only when its source changed.
OTHER_GUESTS := $(OTHER_OUT)/greeter_py.wasm $(OTHER_OUT)/fx_greeter_py.wasm \
                $(OTHER_OUT)/greeter_js.wasm $(OTHER_OUT)/fx_greeter_js.wasm \
                $(OTHER_OUT)/fx_fetcher_js.wasm

.PHONY: all setup guests plugins fixtures test run bench fuzz doc clean

all: test

# The guest target; idempotent, and takes seconds when it is missing.
setup:
	rustup target add wasm32-wasip2

# Builds every guest plugin: the Rust ones (examples and test fixtures, one
# workspace), then the Python and JavaScript ones.
guests: setup $(OTHER_GUESTS)
	cd guest-plugins && cargo build --release --target wasm32-wasip2

$(COMPONENTIZE_PY):
	python3 -m venv $(TOOLS)/python
	$(TOOLS)/python/bin/pip install --quiet --disable-pip-version-check componentize-py==$(PY_VERSION)

$(COMPONENTIZE_JS):
	npm install --silent --no-fund --no-audit --prefix $(TOOLS)/node @bytecodealliance/componentize-js@$(JS_VERSION)

# $(call python,DIR,WORLD): DIR/app.py with the world in DIR/wit.
python = mkdir -p $(OTHER_OUT) && $(COMPONENTIZE_PY) -d $(1)/wit -w $(2) componentize app -p $(1) -o $@.tmp && mv $@.tmp $@
# $(call javascript,DIR,WORLD): DIR/app.js; plain WASI (no HTTP) imports.
javascript = mkdir -p $(OTHER_OUT) && $(COMPONENTIZE_JS) $(1)/app.js --wit $(1)/wit -n $(2) -d http fetch-event -o $@.tmp && mv $@.tmp $@
# $(call javascript_http,DIR,WORLD): componentize-js's defaults (fetch() over wasi:http).
javascript_http = mkdir -p $(OTHER_OUT) && $(COMPONENTIZE_JS) $(1)/app.js --wit $(1)/wit -n $(2) -o $@.tmp && mv $@.tmp $@

$(OTHER_OUT)/greeter_py.wasm: guest-plugins/examples/greeter-py/app.py guest-plugins/examples/greeter-py/wit/world.wit | $(COMPONENTIZE_PY)
	$(call python,guest-plugins/examples/greeter-py,greeter-py)
$(OTHER_OUT)/fx_greeter_py.wasm: guest-plugins/fixtures/greeter-py/app.py guest-plugins/fixtures/greeter-py/wit/world.wit | $(COMPONENTIZE_PY)
	$(call python,guest-plugins/fixtures/greeter-py,greeter-py)
$(OTHER_OUT)/greeter_js.wasm: guest-plugins/examples/greeter-js/app.js guest-plugins/examples/greeter-js/wit/world.wit | $(COMPONENTIZE_JS)
	$(call javascript,guest-plugins/examples/greeter-js,greeter-js)
$(OTHER_OUT)/fx_greeter_js.wasm: guest-plugins/fixtures/greeter-js/app.js guest-plugins/fixtures/greeter-js/wit/world.wit | $(COMPONENTIZE_JS)
	$(call javascript,guest-plugins/fixtures/greeter-js,greeter-js)
$(OTHER_OUT)/fx_fetcher_js.wasm: guest-plugins/fixtures/fetcher-js/app.js guest-plugins/fixtures/fetcher-js/wit/world.wit | $(COMPONENTIZE_JS)
	$(call javascript_http,guest-plugins/fixtures/fetcher-js,fetcher-js)

# Gathers the example plugins (and their manifests) in $(PLUGINS)/. Copies
# go through a temporary name and a rename, so a running watcher never sees
# a half-written file.
plugins: guests
	mkdir -p $(PLUGINS)
	for f in $(GUEST_OUT)/*.wasm $(OTHER_OUT)/*.wasm guest-plugins/examples/*/*.toml; do \
		case "$$f" in */Cargo.toml|*/fx_*) continue;; esac; \
		cp "$$f" "$(PLUGINS)/.$$(basename $$f).tmp" && \
		mv "$(PLUGINS)/.$$(basename $$f).tmp" "$(PLUGINS)/$$(basename $$f)"; \
	done

# The tests' own plugins, in $(FIXTURES)/ without their `fx_` prefix.
fixtures: guests
	mkdir -p $(FIXTURES)
	for f in $(GUEST_OUT)/fx_*.wasm $(OTHER_OUT)/fx_*.wasm; do \
		name=$$(basename $$f); cp "$$f" "$(FIXTURES)/$${name#fx_}"; \
	done

test: plugins fixtures
	cargo test --workspace

run: plugins
	cargo run --release -p hotslot -- watch $(PLUGINS)

# Benchmarks are not tests: they are run by hand and reported in BENCHMARKS.md.
# The compilers' section also times a debug build of calc: what a plugin
# author reloads while developing.
bench: fixtures
	cd guest-plugins && cargo build --target wasm32-wasip2 -p fx-calc
	cp guest-plugins/target/wasm32-wasip2/debug/fx_calc.wasm $(FIXTURES)/calc_debug.wasm
	env -u RUST_BACKTRACE cargo bench -p hotslot

# Fuzzing needs the nightly toolchain and cargo-fuzz; FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: fixtures
	cargo install cargo-fuzz --locked --quiet || true
	cd host && cargo +nightly fuzz run loader -- -max_total_time=$(FUZZ_SECONDS)
	cd host && cargo +nightly fuzz run request -- -max_total_time=$(FUZZ_SECONDS)

doc:
	cargo doc -p hotslot --no-deps

clean:
	cargo clean
	cd guest-plugins && cargo clean
	rm -rf $(PLUGINS) $(TOOLS)
