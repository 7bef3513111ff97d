package harness

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// WASI errno values Envoy returns.
const (
	errnoSuccess  = 0
	errnoBadf     = 8
	errnoFault    = 21
	errnoInval    = 28
	errnoNoent    = 44
	errnoNosys    = 52
	errnoNotsup   = 58
	errnoNotdir   = 20
	randomGetMax  = 64 << 10 // PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES
	clockRealtime = 0
	clockMonotime = 1
)

// Answer says how a host answers one WASI function, as data shared by every
// host of this repository (the wazero harness builds its functions from it;
// the V8 host gets it from SurfaceOf), so their WASI behaviour cannot drift.
// Each is a transcription of the wasi_unstable_* function of the same name in
// proxy-wasm-cpp-host src/exports.cc.
type Answer struct {
	// Kind is one of:
	//   "errno"     return Errno, touch nothing;
	//   "stdio"     return 0 for fd 1 and 2, EBADF (8) for any other fd (first parameter);
	//   "zero-then" write a zero u32 at the address in parameter Arg, then return Errno;
	//   "log"       log Message at error level, return 0 (Envoy's fd_seek and fd_close);
	//   "func"      the implementation named Func, with more behaviour than the kinds above.
	Kind    string `json:"kind"`
	Errno   uint32 `json:"errno,omitempty"`
	Arg     int    `json:"arg,omitempty"`
	Message string `json:"message,omitempty"`
	Func    string `json:"func,omitempty"`
}

func errnoAnswer(e uint32) Answer       { return Answer{Kind: "errno", Errno: e} }
func funcAnswer(name string) Answer     { return Answer{Kind: "func", Func: name} }
func zeroThen(e uint32, arg int) Answer { return Answer{Kind: "zero-then", Errno: e, Arg: arg} }
func logAnswer(msg string) Answer       { return Answer{Kind: "log", Message: msg} }
func stdioAnswer() Answer               { return Answer{Kind: "stdio"} }

// wasiAnswers returns how generation g answers each of its WASI functions.
// Only poll_oneoff differs between generations (besides which functions exist
// at all): ENOSYS on envoy-1.33, no events on current.
//
// See https://github.com/WebAssembly/WASI/blob/snapshot-01/phases/snapshot/docs.md
func wasiAnswers(g WASIGeneration) map[string]Answer {
	a := map[string]Answer{
		"fd_write":            funcAnswer("fd_write"),
		"fd_read":             errnoAnswer(errnoNosys),
		"fd_seek":             logAnswer("wasi_unstable fd_seek"),
		"fd_close":            logAnswer("wasi_unstable fd_close"),
		"fd_fdstat_get":       funcAnswer("fd_fdstat_get"),
		"fd_fdstat_set_flags": errnoAnswer(errnoNosys),
		"environ_get":         funcAnswer("environ_get"),
		"environ_sizes_get":   funcAnswer("environ_sizes_get"),
		"args_get":            errnoAnswer(errnoSuccess),
		"args_sizes_get":      funcAnswer("args_sizes_get"),
		"clock_time_get":      funcAnswer("clock_time_get"),
		"random_get":          funcAnswer("random_get"),
		"sched_yield":         errnoAnswer(errnoSuccess),
		"poll_oneoff":         funcAnswer("poll_oneoff_no_events"),
		"proc_exit":           funcAnswer("proc_exit"),
		"path_open":           errnoAnswer(errnoNoent),
		"fd_prestat_get":      errnoAnswer(errnoBadf),
		"fd_prestat_dir_name": errnoAnswer(errnoNosys),

		"fd_filestat_get":         errnoAnswer(errnoBadf),
		"path_filestat_get":       errnoAnswer(errnoNotsup),
		"clock_res_get":           funcAnswer("clock_res_get"),
		"fd_advise":               errnoAnswer(errnoSuccess),
		"fd_allocate":             stdioAnswer(),
		"fd_datasync":             stdioAnswer(),
		"fd_fdstat_set_rights":    stdioAnswer(),
		"fd_filestat_set_size":    stdioAnswer(),
		"fd_filestat_set_times":   stdioAnswer(),
		"fd_pread":                errnoAnswer(errnoNosys),
		"fd_pwrite":               funcAnswer("fd_pwrite"),
		"fd_readdir":              zeroThen(errnoNotdir, 4),
		"fd_renumber":             funcAnswer("fd_renumber"),
		"fd_sync":                 stdioAnswer(),
		"fd_tell":                 funcAnswer("fd_tell"),
		"path_create_directory":   errnoAnswer(errnoNotsup),
		"path_filestat_set_times": errnoAnswer(errnoNotsup),
		"path_link":               errnoAnswer(errnoNotsup),
		"path_readlink":           zeroThen(errnoNotsup, 5),
		"path_remove_directory":   errnoAnswer(errnoNotsup),
		"path_rename":             errnoAnswer(errnoNotsup),
		"path_symlink":            errnoAnswer(errnoNotsup),
		"path_unlink_file":        errnoAnswer(errnoNotsup),
		"sock_accept":             funcAnswer("sock_accept"),
		"sock_recv":               funcAnswer("sock_recv"),
		"sock_send":               zeroThen(errnoNotsup, 4),
		"sock_shutdown":           errnoAnswer(errnoNotsup),
	}
	if g == WASIEnvoy133 {
		a["poll_oneoff"] = errnoAnswer(errnoNosys)
	}
	return a
}

// wasiFuncs are the implementations that Answer{Kind: "func"} names.
var wasiFuncs = map[string]hostFunc{
	"fd_write":              fdWrite,
	"fd_pwrite":             fdPwrite,
	"fd_fdstat_get":         fdFdstatGet,
	"environ_get":           environGet,
	"environ_sizes_get":     environSizesGet,
	"args_sizes_get":        argsSizesGet,
	"clock_time_get":        clockTimeGet,
	"clock_res_get":         clockResGet,
	"random_get":            randomGet,
	"poll_oneoff_no_events": pollOneoffCurrent,
	"proc_exit":             procExit,
	"fd_renumber":           fdRenumber,
	"fd_tell":               fdTell,
	"sock_accept":           sockAccept,
	"sock_recv":             sockRecv,
}

// wasiFunctions returns the WASI implementations of generation g, built from
// wasiAnswers.
func wasiFunctions(g WASIGeneration) map[string]hostFunc {
	fns := map[string]hostFunc{}
	for name, a := range wasiAnswers(g) {
		fns[name] = a.hostFunc()
	}
	return fns
}

// hostFunc turns an answer into the harness's implementation; nil for an
// unknown kind or function (TestWASITables catches it).
func (a Answer) hostFunc() hostFunc {
	switch a.Kind {
	case "errno":
		e := a.Errno
		return func(_ context.Context, _ *VM, _ api.Module, stack []uint64) { stack[0] = uint64(e) }
	case "stdio":
		return func(_ context.Context, _ *VM, _ api.Module, stack []uint64) {
			if fd := u32(stack[0]); fd != 1 && fd != 2 {
				stack[0] = errnoBadf
				return
			}
			stack[0] = errnoSuccess
		}
	case "zero-then":
		return zeroWordThen(a.Errno, a.Arg)
	case "log":
		return logAndSucceed(a.Message)
	case "func":
		return wasiFuncs[a.Func]
	}
	return nil
}

// fdWrite is fd_write: stdout goes to the info log, stderr to the error log,
// each call one log line without its trailing newline (Envoy's writevImpl).
//
// Parameters: fd, iovs, iovs_len, nwritten_ptr. Result: errno; EBADF for any
// fd but 1 and 2, EFAULT for an iovec outside memory.
//
//	iovs ──► [u32 buf, u32 len] × iovs_len      nwritten_ptr ──► [u32 total]
func fdWrite(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	n, e := writev(v, mod, u32(stack[0]), u32(stack[1]), u32(stack[2]))
	if e == errnoSuccess && !writeU32(mod, u32(stack[3]), n) {
		e = errnoFault
	}
	stack[0] = uint64(e)
}

func writev(v *VM, mod api.Module, fd, iovs, iovsLen uint32) (uint32, uint32) {
	var level LogLevel
	switch fd {
	case 1:
		level = LogInfo
	case 2:
		level = LogError
	default:
		return 0, errnoBadf
	}
	var s []byte
	for i := uint32(0); i < iovsLen; i++ {
		vec, ok := mod.Memory().Read(iovs+i*8, 8)
		if !ok {
			return 0, errnoFault
		}
		buf := uint32(vec[0]) | uint32(vec[1])<<8 | uint32(vec[2])<<16 | uint32(vec[3])<<24
		l := uint32(vec[4]) | uint32(vec[5])<<8 | uint32(vec[6])<<16 | uint32(vec[7])<<24
		if l == 0 {
			continue
		}
		b, ok := mod.Memory().Read(buf, l)
		if !ok {
			return 0, errnoFault
		}
		s = append(s, b...)
	}
	if len(s) > 0 {
		v.h.logs.add(v.index, level, trimNewline(string(s)))
	}
	return uint32(len(s)), errnoSuccess
}

// fdPwrite is fd_pwrite (current generation): like fd_write, offset ignored.
// Parameters: fd, iovs, iovs_len, offset (i64), nwritten_ptr.
func fdPwrite(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	n, e := writev(v, mod, u32(stack[0]), u32(stack[1]), u32(stack[2]))
	if e == errnoSuccess && !writeU32(mod, u32(stack[4]), n) {
		e = errnoFault
	}
	stack[0] = uint64(e)
}

// logAndSucceed is Envoy's fd_seek / fd_close: log an error, return success.
func logAndSucceed(msg string) hostFunc {
	return func(_ context.Context, v *VM, _ api.Module, stack []uint64) {
		v.h.logs.add(v.index, LogError, msg)
		stack[0] = errnoSuccess
	}
}

// fdFdstatGet is fd_fdstat_get: only fd 1 and 2 exist; the 24-byte fdstat
// is zero but for fs_rights_base = FD_WRITE (64). Like Envoy, a failed write
// of the struct is ignored.
//
//	stat ──► [u8 filetype, u8 pad, u16 flags, u32 pad | u64 rights_base=64 | u64 inheriting=0]
func fdFdstatGet(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	fd, out := u32(stack[0]), u32(stack[1])
	if fd != 1 && fd != 2 {
		stack[0] = errnoBadf
		return
	}
	var b [24]byte
	b[8] = 64
	mod.Memory().Write(out, b[:])
	stack[0] = errnoSuccess
}

// environGet is environ_get: the VM's environment variables (Envoy's
// vm_config.environment_variables) as NUL-terminated "KEY=value" strings.
//
//	environ ──► [u32 ptr] × count ──► environ_buf: "K=v\0K2=v2\0"
func environGet(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	arr, buf := u32(stack[0]), u32(stack[1])
	for _, k := range v.envKeys {
		if !writeU32(mod, arr, buf) {
			stack[0] = errnoFault
			return
		}
		data := []byte(k + "=" + v.h.cfg.env[k] + "\x00")
		if !mod.Memory().Write(buf, data) {
			stack[0] = errnoFault
			return
		}
		buf += uint32(len(data))
		arr += 4
	}
	stack[0] = errnoSuccess
}

// environSizesGet is environ_sizes_get. Parameters: count_ptr, buf_size_ptr.
func environSizesGet(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	size := 0
	for _, k := range v.envKeys {
		size += len(k) + len(v.h.cfg.env[k]) + 2
	}
	if !writeU32(mod, u32(stack[0]), uint32(len(v.envKeys))) || !writeU32(mod, u32(stack[1]), uint32(size)) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// argsSizesGet is args_sizes_get: Envoy gives no arguments.
func argsSizesGet(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU32(mod, u32(stack[0]), 0) || !writeU32(mod, u32(stack[1]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// clockTimeGet is clock_time_get: realtime (0) and monotonic (1) only,
// from the host's real clocks; ENOTSUP for the CPU-time clocks.
// Parameters: clock_id, precision (i64, ignored), result_ptr (u64).
func clockTimeGet(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	var t uint64
	switch u32(stack[0]) {
	case clockRealtime:
		t = uint64(time.Now().UnixNano())
	case clockMonotime:
		t = uint64(time.Since(v.h.monoBase).Nanoseconds()) + 1
	default:
		stack[0] = errnoNotsup
		return
	}
	if !writeU64(mod, u32(stack[2]), t) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// clockResGet is clock_res_get: 1ns for realtime and monotonic.
func clockResGet(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	switch u32(stack[0]) {
	case clockRealtime, clockMonotime:
	default:
		stack[0] = errnoNotsup
		return
	}
	if !writeU64(mod, u32(stack[1]), 1) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// randomGet is random_get from crypto/rand, at most 64 KiB a call (EINVAL
// beyond, as Envoy).
func randomGet(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	buf, n := u32(stack[0]), u32(stack[1])
	if n > randomGetMax {
		stack[0] = errnoInval
		return
	}
	if n == 0 {
		stack[0] = errnoSuccess
		return
	}
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if !mod.Memory().Write(buf, b) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// pollOneoffCurrent is poll_oneoff after cpp-host 94091cd: no waiting, no
// events, success. (The envoy-1.33 generation answers ENOSYS instead.)
// Parameters: in, out, nsubscriptions, nevents_ptr.
func pollOneoffCurrent(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU32(mod, u32(stack[3]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// procExit is proc_exit: Envoy only logs; the call returns to the guest.
func procExit(_ context.Context, v *VM, _ api.Module, _ []uint64) {
	v.h.logs.add(v.index, LogError, "wasi_unstable proc_exit")
}

func fdRenumber(_ context.Context, _ *VM, _ api.Module, stack []uint64) {
	fd, to := u32(stack[0]), u32(stack[1])
	if (fd != 1 && fd != 2) || (to != 1 && to != 2) {
		stack[0] = errnoBadf
		return
	}
	stack[0] = errnoNotsup
}

func fdTell(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if fd := u32(stack[0]); fd != 1 && fd != 2 {
		stack[0] = errnoBadf
		return
	}
	if !writeU64(mod, u32(stack[1]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// sockAccept writes 8 zero bytes at retptr (Envoy uses setDatatype with an
// unsigned long) and answers ENOTSUP.
func sockAccept(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU64(mod, u32(stack[2]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoNotsup
}

func sockRecv(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU32(mod, u32(stack[4]), 0) || !mod.Memory().WriteUint16Le(u32(stack[5]), 0) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoNotsup
}

// zeroWordThen writes a zero word at parameter idx, then answers e.
func zeroWordThen(e uint32, idx int) hostFunc {
	return func(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
		if !writeU32(mod, u32(stack[idx]), 0) {
			stack[0] = errnoFault
			return
		}
		stack[0] = uint64(e)
	}
}
