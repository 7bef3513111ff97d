// Package testenv finds the real services that store tests run against.
package testenv

import (
	"os"
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
