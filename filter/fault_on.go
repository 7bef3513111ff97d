//go:build jtiguard_faultinject

package filter

// injectFault panics on a request carrying x-jtiguard-panic, so tests can prove that a panic
// in the request path is answered (500) instead of trapping the VM. Only a module built with
// -tags jtiguard_faultinject has it.
func injectFault(headers [][2]string) {
	for _, h := range headers {
		if h[0] == "x-jtiguard-panic" {
			panic("injected fault")
		}
	}
}
