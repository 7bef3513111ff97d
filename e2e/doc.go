// Package e2e holds the end-to-end tests of jtiguard: the real module (built from the work
// tree, see localproxy/localproxytest) in the wazero harness and, for the decision table, in
// V8 (package v8host), talking over real HTTP on 127.0.0.1 to the real revocation source
// (revocationsource with its SQLite store), plus the soak test and the module benchmark
// (V8, wazero and native Go in one run). It has no non-test code.
//
// Its tests run one at a time, since most assert what a host does within some time. The few
// that assert no timing and are heavy on the CPU (the benchmark tables' runs, the large
// lists) call t.Parallel: they run two at a time once the others are done, which on a 2-core
// machine beside another build is the share of the cores that keeps CI within 20 minutes.
//
//	go test ./e2e/                                   end-to-end tests
//	go test -tags long -timeout 15m -run Soak ./e2e/  the soak (make test-long)
//	make bench-module                                the module benchmark table (docs/benchmarks.md)
//	make bench-mix                                   the mix with list updates (docs/benchmarks.md)
package e2e
