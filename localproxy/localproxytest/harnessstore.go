package localproxytest

import (
	"errors"
	"fmt"

	"github.com/jtiguard/jtiguard/harness"
)

// ErrShared: the harness's shared data refused a write (CAS mismatch).
var ErrShared = errors.New("shared data write refused")

// HarnessStore adapts a harness's shared data (namespace h.VMID()) to Store, so a test can
// publish a list exactly as a worker VM's syncer would.
type HarnessStore struct{ H *harness.Harness }

// GetSharedData implements Store.
func (s HarnessStore) GetSharedData(key string) ([]byte, uint32, error) {
	v, cas, st := s.H.SharedData().Get(s.H.VMID(), key)
	if st != harness.StatusOK {
		return nil, 0, fmt.Errorf("%w: get %s: status %d", ErrShared, key, st)
	}
	return v, cas, nil
}

// SetSharedData implements Store.
func (s HarnessStore) SetSharedData(key string, value []byte, cas uint32) error {
	if st := s.H.SharedData().Set(s.H.VMID(), key, value, cas); st != harness.StatusOK {
		return fmt.Errorf("%w: set %s: status %d", ErrShared, key, st)
	}
	return nil
}
