package harness

import "errors"

// Sentinel errors. Every error returned by this package wraps one of them so
// that callers can use errors.Is.
var (
	// ErrImportNotProvided: the module imports a function (or memory) that
	// Envoy does not provide; Envoy refuses to load such a module.
	ErrImportNotProvided = errors.New("import not provided by envoy")
	// ErrMissingExport: a function the host requires is not exported.
	ErrMissingExport = errors.New("required export missing")
	// ErrABIVersion: the module does not declare proxy_abi_version_0_2_1.
	ErrABIVersion = errors.New("missing or unsupported proxy-wasm abi version")
	// ErrStartFailed: _initialize, proxy_on_vm_start or proxy_on_configure
	// trapped or returned false; Envoy rejects the configuration.
	ErrStartFailed = errors.New("plugin start failed")
	// ErrVMFailed: the VM trapped earlier and serves no more callbacks.
	ErrVMFailed = errors.New("wasm vm failed")
	// ErrRestrictedCallback: a host function was called while Envoy forbids
	// it (during _initialize or proxy_on_memory_allocate); the call traps.
	ErrRestrictedCallback = errors.New("restricted callback")
	// ErrBadConfig: an option holds an invalid value.
	ErrBadConfig = errors.New("bad harness config")
	// ErrClosed: the harness was closed.
	ErrClosed = errors.New("harness closed")
	// ErrStreamState: a stream method was called out of order.
	ErrStreamState = errors.New("bad stream state")
)
