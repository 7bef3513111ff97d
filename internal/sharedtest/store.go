// Package sharedtest is an in-memory proxy-wasm shared-data store with Envoy's semantics, for
// tests that need several "VMs" on one store: the SDK's proxytest emulator holds one VM, and
// its CAS rules differ from Envoy's (per-key counters; cas 0 is not unconditional).
//
// Envoy's rules, kept here: one global CAS counter; a set with cas 0 always succeeds; a set
// with a stale cas changes nothing and fails with CAS_MISMATCH; setting an absent key succeeds
// whatever the cas; there is no delete.
package sharedtest

import (
	"sync"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// Store is safe for concurrent use.
type Store struct {
	mu   sync.Mutex // guards cas and data
	cas  uint32
	data map[string]value
}

type value struct {
	bytes []byte
	cas   uint32
}

// New returns an empty store.
func New() *Store { return &Store{data: map[string]value{}} }

// GetSharedData returns a copy of the value, as the host copies it into the VM.
func (s *Store) GetSharedData(key string) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	if !ok {
		return nil, 0, types.ErrorStatusNotFound
	}
	return append([]byte(nil), v.bytes...), v.cas, nil
}

// SetSharedData stores a copy of value under Envoy's CAS rules.
func (s *Store) SetSharedData(key string, val []byte, cas uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.data[key]; ok && cas != 0 && v.cas != cas {
		return types.ErrorStatusCasMismatch
	}
	s.cas++
	s.data[key] = value{bytes: append([]byte(nil), val...), cas: s.cas}
	return nil
}

// Keys returns the stored keys, for isolation tests.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	return keys
}
