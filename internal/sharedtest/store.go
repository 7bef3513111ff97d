// Package sharedtest gives tests that need several "VMs" on one shared-data store the
// harness's store (Envoy's rules: one global CAS counter, cas 0 unconditional, stale cas
// refused, absent keys created whatever the cas, no delete) behind the interface that
// blocklistsync takes, with the SDK's error values. The SDK's proxytest emulator holds one VM
// only, and its CAS rules differ from Envoy's.
package sharedtest

import (
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/harness"
)

// vmID is the one namespace tests use: all their VMs share it, as Envoy's workers do.
const vmID = "sharedtest"

// Store is safe for concurrent use.
type Store struct{ data *harness.SharedData }

// New returns an empty store.
func New() *Store { return &Store{data: harness.NewSharedData()} }

// GetSharedData returns a copy of the value, as the host copies it into the VM.
func (s *Store) GetSharedData(key string) ([]byte, uint32, error) {
	v, cas, st := s.data.Get(vmID, key)
	return v, cas, statusError(st)
}

// SetSharedData stores a copy of value under Envoy's CAS rules.
func (s *Store) SetSharedData(key string, value []byte, cas uint32) error {
	return statusError(s.data.Set(vmID, key, value, cas))
}

// Keys returns the stored keys, for isolation tests.
func (s *Store) Keys() []string { return s.data.Keys(vmID) }

func statusError(st harness.Status) error {
	switch st {
	case harness.StatusOK:
		return nil
	case harness.StatusNotFound:
		return types.ErrorStatusNotFound
	case harness.StatusCASMismatch:
		return types.ErrorStatusCasMismatch
	default:
		return types.ErrorInternalFailure
	}
}
