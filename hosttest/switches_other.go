//go:build !linux

package hosttest

// ThreadSwitches is not available here: no request is known to be switched out.
func ThreadSwitches() (voluntary, involuntary int64, ok bool) { return 0, 0, false }
