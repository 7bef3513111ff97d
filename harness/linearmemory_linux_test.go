package harness

import "testing"

// TestHarnessReservesOnLinux: on linux the harness's memories are reservations, not the
// fallback (which TestLinearMemoryGrowsInPlace would pass too).
func TestHarnessReservesOnLinux(t *testing.T) {
	m := memoryAllocator.Allocate(0, 1<<20)
	defer m.Free()
	if _, ok := m.(*reservedMemory); !ok {
		t.Fatalf("the harness's memory is a %T; want a reservation", m)
	}
}
