// Package e2e holds the end-to-end tests of jtiguard: the real module (built from the work
// tree, see localproxy/localproxytest) in the wazero harness and, for the decision table, in
// V8 (package v8host), talking over real HTTP on 127.0.0.1 to the real revocation source
// (revocationsource with its SQLite store), plus the soak test and the module benchmark
// (V8, wazero and native Go in one run). It has no non-test code.
//
//	go test ./e2e/                                   end-to-end tests and the soak (-short skips the soak)
//	make bench-module                                the module benchmark table (docs/benchmarks.md)
package e2e
