package filter

import "testing"

// TestPythonFloat: the text an entry's value takes for a number claim is Python's str().
func TestPythonFloat(t *testing.T) {
	for f, want := range map[float64]string{
		7: "7.0", 7.5: "7.5", 1e-05: "1e-05", 1.5e16: "1.5e+16", 1234567.5: "1234567.5", 0.0001: "0.0001",
		123456789012345.6: "123456789012345.6", 1e16: "1e+16", 0.1: "0.1", -2.5: "-2.5",
	} {
		if got := pythonFloat(f); got != want {
			t.Errorf("pythonFloat(%v) = %q; want %q (Python's str)", f, got, want)
		}
	}
}
