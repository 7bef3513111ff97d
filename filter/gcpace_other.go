//go:build !wasip1

package filter

// gcPacer moves collections to the tick in the module (gcpace_wasip1.go); natively (tests,
// benchmarks) the runtime's own pacing stays.
type gcPacer struct{}

func newGCPacer() *gcPacer { return &gcPacer{} }

func (*gcPacer) tick() {}

func (*gcPacer) grew(int) {}
