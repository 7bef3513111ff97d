package hosttest

import "syscall"

// rusageThread is RUSAGE_THREAD (Linux): the calling thread's usage only.
const rusageThread = 1

// ThreadSwitches returns the calling thread's voluntary and involuntary context switches
// (getrusage(RUSAGE_THREAD): ru_nvcsw, ru_nivcsw), and false if they cannot be read. The
// caller must hold its goroutine on its thread (runtime.LockOSThread).
func ThreadSwitches() (voluntary, involuntary int64, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, 0, false
	}
	return ru.Nvcsw, ru.Nivcsw, true
}
