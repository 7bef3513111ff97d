// Package e2e holds the end-to-end tests of jtiguard: the real module (built from the work
// tree, see localproxy/localproxytest) in the wazero harness, talking over real HTTP on
// 127.0.0.1 to the real revocation source (revocationsource with its SQLite store), plus the
// soak test and the module-versus-native benchmarks. It has no non-test code.
//
//	go test ./e2e/                                   end-to-end tests
//	go test -tags long -timeout 15m -run Soak ./e2e/  the soak (make test-long)
//	go test -bench . -benchmem -run '^$' ./e2e/      benchmarks (docs/benchmarks-harness.md)
package e2e
