package harness

import "sync"

// SharedData is Envoy's process-wide shared key/value store, namespaced by
// vm_id, with one global CAS counter. All VMs of a Harness use one store; pass
// the same store to several harnesses (WithSharedData) to model several
// plugins with the same vm_id on one proxy.
//
// Semantics, as in proxy-wasm-cpp-host's SharedData:
//   - every successful set stamps the entry with the next value of one global
//     counter (starting at 1, never 0);
//   - cas 0 sets unconditionally;
//   - a non-zero cas that differs from the entry's gets StatusCASMismatch and
//     changes nothing;
//   - setting an absent key succeeds whatever the cas (create-if-absent is
//     therefore not atomic);
//   - there is no delete.
//
// It is safe for concurrent use.
type SharedData struct {
	mu   sync.Mutex // guards data and cas
	data map[string]map[string]sharedEntry
	cas  uint32 // next CAS value to hand out; never 0
}

type sharedEntry struct {
	value []byte
	cas   uint32
}

// NewSharedData returns an empty store.
func NewSharedData() *SharedData {
	return &SharedData{data: map[string]map[string]sharedEntry{}, cas: 1}
}

func (s *SharedData) nextCAS() uint32 {
	c := s.cas
	s.cas++
	if s.cas == 0 {
		s.cas = 1
	}
	return c
}

// Get returns a copy of the value of key in namespace vmID and its CAS, or
// StatusNotFound.
func (s *SharedData) Get(vmID, key string) ([]byte, uint32, Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[vmID][key]
	if !ok {
		return nil, 0, StatusNotFound
	}
	return append([]byte{}, e.value...), e.cas, StatusOK
}

// Set stores value under key in namespace vmID following the rules in the
// type documentation. It returns StatusOK or StatusCASMismatch.
func (s *SharedData) Set(vmID, key string, value []byte, cas uint32) Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[vmID]
	if m == nil {
		m = map[string]sharedEntry{}
		s.data[vmID] = m
	}
	if e, ok := m[key]; ok && cas != 0 && cas != e.cas {
		return StatusCASMismatch
	}
	m[key] = sharedEntry{value: append([]byte{}, value...), cas: s.nextCAS()}
	return StatusOK
}

// Keys returns the keys of namespace vmID, for tests.
func (s *SharedData) Keys(vmID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data[vmID]))
	for k := range s.data[vmID] {
		keys = append(keys, k)
	}
	return keys
}
