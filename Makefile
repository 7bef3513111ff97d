# jtiguard — a proxy-wasm filter that rejects revoked JWTs.
#
#   make build      the module: build/jtiguard.wasm (standard Go, wasip1, c-shared)
#   make run        the local demo: revocation source + echo upstream + the module in the harness proxy
#   make test       every test (installs and starts redis-server and PostgreSQL for the source's tests)
#   make check      gofmt, go vet (native and wasip1), build-tag sanity for TinyGo, go mod tidy
#   make bench      the benchmarks quoted in README.md
#   make run-envoy  the module in a real Envoy, where an envoy binary is installed

GO        ?= go
WASM      := build/jtiguard.wasm
# The module answers some WASI calls itself so it behaves alike on every Envoy from 1.33 on:
# path_filestat_get (linked, never called; missing before mid-2026) and poll_oneoff (Go's
# runtime calls it after a GC; older hosts answer ENOSYS, which is fatal). See wasmstub.EnvoyStubs.
WASM_STUBS := -envoy
# -compact-data: Go's linker writes the runtime's findfunctab as ~57 000 tiny data segments
# (560 KB); a start function writes the same bytes instead. See docs/module-size.md.
# WASM_OPT=wasm-opt (binaryen: `apt-get install binaryen` or `npm install -g binaryen`) adds an
# optimising pass: 0.4-0.5 MB smaller, V8's first start 7-10% less CPU, the request path and
# wazero's compile unchanged. Off by default, so that `make build` needs only Go and makes the
# same module everywhere. The features enabled are exactly those Go's output already uses.
WASM_OPT ?=
WASM_OPT_FLAGS := -Oz -g --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals
FUZZTIME  ?= 10s

.PHONY: build run run-envoy test test-services check bench fuzz clean

build:
	@mkdir -p build
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(WASM).tmp .
	$(GO) run ./cmd/wasm-stub-imports -in $(WASM).tmp -out $(WASM).tmp $(WASM_STUBS) -compact-data
ifneq ($(WASM_OPT),)
	$(WASM_OPT) $(WASM_OPT_FLAGS) $(WASM).tmp -o $(WASM).opt.tmp
	@mv $(WASM).opt.tmp $(WASM).tmp
else
	@echo "make build: no wasm-opt pass (make build WASM_OPT=wasm-opt adds one; docs/module-size.md)"
endif
	@mv $(WASM).tmp $(WASM)
	@ls -l $(WASM)

run: build
	$(GO) run ./cmd/jtiguard-demo

run-envoy: build
	@command -v envoy >/dev/null || { echo "run-envoy: no envoy binary on PATH (Envoy >= 1.33 is needed)"; exit 1; }
	@echo "Envoy on :10000; it expects the revocation source on 127.0.0.1:8081 and an upstream on 127.0.0.1:8080"
	envoy -c envoy.yaml --log-level info

# test-services prints `export` lines for the database-backed tests; it installs what is missing.
test: build
	eval "$$(bash scripts/test-services.sh)" && \
	$(GO) test -count=1 ./... && \
	$(GO) test -count=1 -race ./blocklistsync ./harness ./revocationsource/... && \
	$(GO) test -run='^$$' -fuzz=FuzzParseFeed -fuzztime=$(FUZZTIME) ./blocklistsync && \
	$(GO) test -run='^$$' -fuzz=FuzzScannerMatchesReference -fuzztime=$(FUZZTIME) ./blocklistsync

check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet . ./filter ./blocklistsync ./internal/abi
	@# TinyGo builds use internal/abi/sdk.go, the same file the native vet above type-checks; gc
	@# cannot compile the SDK's TinyGo-only internals, so here only file selection is checked.
	$(GO) list -tags tinygo -deps . >/dev/null
	$(GO) mod tidy && git diff --exit-code go.mod go.sum

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./filter ./blocklistsync

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseFeed -fuzztime=$(FUZZTIME) ./blocklistsync
	$(GO) test -run='^$$' -fuzz=FuzzScannerMatchesReference -fuzztime=$(FUZZTIME) ./blocklistsync
	$(GO) test -run='^$$' -fuzz=FuzzDecodeHeaderMap -fuzztime=$(FUZZTIME) ./internal/abi

clean:
	rm -rf build
