// Package testenv finds the real services that store tests run against.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Lookup returns the value of env var name. When it is unset the test is
// skipped, except under CI=true, where a missing service must fail the run
// rather than silently skip it.
func Lookup(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	msg := name + " is not set: run `eval \"$(bash scripts/test-services.sh)\"` first"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
	return ""
}

// RedisAddr is the address of a test redis-server (REDIS_ADDR).
func RedisAddr(t testing.TB) string { return Lookup(t, "REDIS_ADDR") }

// PGDSN is the DSN of a test PostgreSQL database (PG_DSN).
func PGDSN(t testing.TB) string { return Lookup(t, "PG_DSN") }

// RedisServerBinary is the redis-server program, for tests that need a
// Redis of their own (to restart it). Missing, the test is skipped, or fails
// under CI=true.
func RedisServerBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err == nil {
		return p
	}
	msg := "no redis-server on PATH: run `eval \"$(bash scripts/test-services.sh)\"` first"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
	return ""
}

// PythonWithPyJWT is Debian's /usr/bin/python3 when it has PyJWT and
// cryptography (python3-jwt, python3-cryptography), for tests that check
// logout tokens minted by an independent implementation. Missing, the test
// is skipped, or fails under CI=true.
func PythonWithPyJWT(t testing.TB) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import jwt, cryptography").Run(); err == nil {
		return py
	}
	msg := py + " lacks PyJWT or cryptography: apt-get install python3-jwt python3-cryptography (scripts/test-services.sh does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
	return ""
}
