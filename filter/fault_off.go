//go:build !jtiguard_faultinject

package filter

// injectFault is empty in every real build; see fault_on.go.
func injectFault([][2]string) {}
