# jtiguard — a proxy-wasm filter that rejects revoked JWTs.
#
#   make build      the module: build/jtiguard.wasm (standard Go, wasip1, c-shared)
#   make run        the local demo: revocation source + echo upstream + the module in the harness proxy
#                   (ports: envoy.yaml's when free, else free ones; choose with PROXY_PORT=, SOURCE_PORT=,
#                   UPSTREAM_PORT=, 0 = any free port; RUN_FLAGS=-exit-after-steps stops after the demo)
#   make oci        OCI images without Docker: build/oci/jtiguard (Istio "compat" Wasm image) and
#                   build/oci/revocation-source (static binary, non-root); publish with crane push
#   make test       every test (installs and starts redis-server and PostgreSQL for the source's tests)
#   make check      gofmt, go vet (native and wasip1), build-tag sanity for TinyGo, go mod tidy
#   make bench      the benchmarks quoted in README.md
#   make bench-module  the module in V8 and wazero vs native Go (docs/benchmarks.md), ~10 min
#   make bench-mix  the mix of requests with list updates in all three (docs/benchmarks.md), ~3 min
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
# Fuzz budgets in make test are execution counts, not durations: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a duration ends mid-call on a loaded machine
# (go.dev/issue/75804, fixed in Go 1.27). `make fuzz FUZZTIME=10m` still takes a duration.
FUZZTIME  ?= 50000x

.PHONY: build run run-envoy oci test test-long test-services check bench bench-module bench-mix fuzz clean

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

# Empty: envoy.yaml's port, or a free one when it is taken. Set: that port or a clear error.
PROXY_PORT    ?=
SOURCE_PORT   ?=
UPSTREAM_PORT ?=
RUN_FLAGS     ?=

RUN_ARGS = $(if $(PROXY_PORT),-listen 127.0.0.1:$(PROXY_PORT)) \
	$(if $(SOURCE_PORT),-source-listen 127.0.0.1:$(SOURCE_PORT)) \
	$(if $(UPSTREAM_PORT),-upstream-listen 127.0.0.1:$(UPSTREAM_PORT))

run: build
	$(GO) run ./cmd/jtiguard-demo $(strip $(RUN_ARGS) $(RUN_FLAGS))

# The revocation source's image runs this static binary; OCI_ARCH=arm64 builds for arm64 instead.
OCI_ARCH   ?= $(shell $(GO) env GOARCH)
SOURCE_BIN := build/revocation-source.linux-$(OCI_ARCH)

oci: build
	@rm -f build/revocation-source.linux-*
	CGO_ENABLED=0 GOOS=linux GOARCH=$(OCI_ARCH) $(GO) build -trimpath -ldflags='-s -w' -o $(SOURCE_BIN) ./cmd/revocation-source
	$(GO) run ./cmd/build-oci -plugin $(WASM) -plugin-out build/oci/jtiguard \
		-source $(SOURCE_BIN) -source-arch $(OCI_ARCH) -source-out build/oci/revocation-source

run-envoy: build
	@command -v envoy >/dev/null || { echo "run-envoy: no envoy binary on PATH (Envoy >= 1.33 is needed)"; exit 1; }
	@echo "Envoy on :10000; it expects the revocation source on 127.0.0.1:8081 and an upstream on 127.0.0.1:8080"
	envoy -c envoy.yaml --log-level info

# Every go test has an explicit -timeout, so a loaded machine fails with a stack dump instead of
# hitting go test's 10-minute default. The long tests (the 1M-request soak, the docs' commands run
# end to end) carry the build tag "long": the default `go test ./...` does not build them, and
# test-long runs them with their own timeout.
TEST_TIMEOUT ?= 15m
LONG_TIMEOUT ?= 20m

# test-services prints `export` lines for the database-backed tests; it installs what is missing.
test: build
	eval "$$(bash scripts/test-services.sh)" && \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./... && \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -race ./blocklistsync ./revocationsource/... ./jwkssync ./statuslist && \
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -race -run 'Test(SharedData|HTTPCall|TickTimers|LocalResponse|RealModuleConcurrentStreams)' ./harness && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzParseFeed -fuzztime=$(FUZZTIME) ./blocklistsync && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzScannerMatchesReference -fuzztime=$(FUZZTIME) ./blocklistsync && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzDiscoveryFindsThePayload -fuzztime=$(FUZZTIME) ./credentials && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzTextWithoutDotsHoldsNoPayload -fuzztime=$(FUZZTIME) ./credentials && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzRevokedNeverAllowed -fuzztime=$(FUZZTIME) ./filter && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzCanonicalPath -fuzztime=$(FUZZTIME) ./filter && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzPeekReadsWhatVerifierAccepts -fuzztime=$(FUZZTIME) ./filter && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzVerifyMatchesGolangJWT -fuzztime=$(FUZZTIME) ./jwtverify && \
	$(GO) test -timeout 5m -run='^$$' -fuzz=FuzzParseToken -fuzztime=$(FUZZTIME) ./statuslist
	$(MAKE) test-long

# The soak (e2e/TestSoakEnvoy133) and the docs' commands (deploy/TestDocs*, jwtverify/TestDocCommands), tag "long".
test-long: build
	$(GO) test -count=1 -tags long -timeout $(LONG_TIMEOUT) -run '^(TestSoakEnvoy133|TestDocs.*|TestDocCommands)$$' ./e2e ./deploy ./jwtverify ./cmd/wasm-size

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

# The table of docs/benchmarks.md: needs node (the V8 host). JTIGUARD_BENCH_N (1000000),
# JTIGUARD_BENCH_COLD_HS (10000) and JTIGUARD_BENCH_COLD_PK (1000) set the request counts.
bench-module: build
	JTIGUARD_WASM=$(CURDIR)/$(WASM) JTIGUARD_BENCH_MD=$(CURDIR)/build/bench-module.md \
		$(GO) test -run '^$$' -bench '^BenchmarkModule$$' -benchtime 1x -timeout 40m ./e2e/ \
		>build/bench-module.log 2>&1 || { tail -40 build/bench-module.log; exit 1; }
	@cat build/bench-module.md

# The mix of docs/benchmarks.md: needs node. It builds its own module (-tags jtiguard_testexports,
# stubbed and compacted as above). JTIGUARD_MIX_N (1000000), JTIGUARD_MIX_EVERY (10000) and
# JTIGUARD_MIX_LIST (10000) set the requests, the requests between two list updates and the list size.
bench-mix:
	@mkdir -p build
	JTIGUARD_MIX_MD=$(CURDIR)/build/bench-mix.md \
		$(GO) test -run '^$$' -bench '^BenchmarkModuleMix$$' -benchtime 1x -timeout 40m ./e2e/ \
		>build/bench-mix.log 2>&1 || { tail -40 build/bench-mix.log; exit 1; }
	@cat build/bench-mix.md

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseFeed -fuzztime=$(FUZZTIME) ./blocklistsync
	$(GO) test -run='^$$' -fuzz=FuzzScannerMatchesReference -fuzztime=$(FUZZTIME) ./blocklistsync
	$(GO) test -run='^$$' -fuzz=FuzzDecodeHeaderMap -fuzztime=$(FUZZTIME) ./internal/abi
	$(GO) test -run='^$$' -fuzz=FuzzDiscoveryFindsThePayload -fuzztime=$(FUZZTIME) ./credentials
	$(GO) test -run='^$$' -fuzz=FuzzTextWithoutDotsHoldsNoPayload -fuzztime=$(FUZZTIME) ./credentials
	$(GO) test -run='^$$' -fuzz=FuzzKnownValueIsDiscovery -fuzztime=$(FUZZTIME) ./credentials
	$(GO) test -run='^$$' -fuzz=FuzzRevokedNeverAllowed -fuzztime=$(FUZZTIME) ./filter
	$(GO) test -run='^$$' -fuzz=FuzzCanonicalPath -fuzztime=$(FUZZTIME) ./filter
	$(GO) test -run='^$$' -fuzz=FuzzPeekReadsWhatVerifierAccepts -fuzztime=$(FUZZTIME) ./filter
	$(GO) test -run='^$$' -fuzz=FuzzVerifyMatchesGolangJWT -fuzztime=$(FUZZTIME) ./jwtverify
	$(GO) test -run='^$$' -fuzz=FuzzPKIXMatchesX509 -fuzztime=$(FUZZTIME) ./jwtverify
	$(GO) test -run='^$$' -fuzz=FuzzRefs -fuzztime=$(FUZZTIME) ./statuslist
	$(GO) test -run='^$$' -fuzz=FuzzParseToken -fuzztime=$(FUZZTIME) ./statuslist
	$(GO) test -run='^$$' -fuzz=FuzzRecords -fuzztime=$(FUZZTIME) ./statuslist

clean:
	rm -rf build
