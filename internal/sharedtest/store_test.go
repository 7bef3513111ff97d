package sharedtest

import (
	"errors"
	"testing"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func TestEnvoyCASRules(t *testing.T) {
	s := New()
	if _, _, err := s.GetSharedData("k"); !errors.Is(err, types.ErrorStatusNotFound) {
		t.Fatalf("get absent = %v; want not found", err)
	}
	if err := s.SetSharedData("k", []byte("a"), 12345); err != nil {
		t.Fatalf("set absent with any cas = %v; want ok", err)
	}
	_, cas, _ := s.GetSharedData("k")
	if err := s.SetSharedData("k", []byte("b"), cas+1); !errors.Is(err, types.ErrorStatusCasMismatch) {
		t.Fatalf("set stale cas = %v; want cas mismatch", err)
	}
	if v, _, _ := s.GetSharedData("k"); string(v) != "a" {
		t.Fatalf("value after failed set = %q; want %q", v, "a")
	}
	if err := s.SetSharedData("k", []byte("c"), 0); err != nil {
		t.Fatalf("set cas 0 = %v; want ok", err)
	}
	if err := s.SetSharedData("k", []byte("d"), cas); !errors.Is(err, types.ErrorStatusCasMismatch) {
		t.Fatalf("set with cas from before an unconditional set = %v; want mismatch", err)
	}
}
