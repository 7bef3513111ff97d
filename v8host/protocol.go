package v8host

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jtiguard/jtiguard/harness"
)

//go:embed host.js
var hostJS []byte

// Sentinel errors of this package; errors about the module or its VMs wrap the harness's
// sentinels instead (harness.ErrStartFailed, harness.ErrVMFailed, ...), so a test checks
// both hosts with the same errors.Is.
var (
	// ErrNoNode: no node binary (JTIGUARD_NODE or node on PATH). Tests fail on it, never skip.
	ErrNoNode = errors.New("v8host: node not found")
	// ErrHostExited: the node process ended or broke the protocol.
	ErrHostExited = errors.New("v8host: node host exited")
	// ErrNodeTooOld: Node before 18 lacks what host.js uses (BigInt wasm integration
	// with V8 ≥ 10, flat header arrays).
	ErrNodeTooOld = errors.New("v8host: node too old")
)

// V8Flags are the flags proxy-wasm-cpp-host gives V8 (src/v8/v8.cc, engine()), passed to
// node as they are: no Liftoff, so every function is compiled by TurboFan (cpp-host wants
// "optimized JIT up-front"; with V8's default lazy compilation that happens at a function's
// first call); the memory cap of PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES (1 GiB) in
// pages, here the configured limit; and a backtrace of PROXY_WASM_HOST_MAX_BACKTRACE_FRAMES_COUNT
// (20) frames. cpp-host also calls V8::EnableWebAssemblyTrapHandler(true), which Node
// already does on Linux x86-64, so out-of-bounds accesses trap through signals in both.
func V8Flags(memoryLimitPages uint32) []string {
	return []string{"--no-liftoff", "--wasm-max-mem-pages=" + strconv.FormatUint(uint64(memoryLimitPages), 10), "--stack-trace-limit=20"}
}

// NodePath returns the node binary to use: $JTIGUARD_NODE, else node on PATH.
func NodePath() (string, error) {
	if p := os.Getenv("JTIGUARD_NODE"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("%w: %w (install Node.js 18 or later, e.g. Debian's nodejs)", ErrNoNode, err)
	}
	return p, nil
}

// proc is one node process and the JSON-lines conversation with it. Requests carry an id;
// answers come back with it, in any order (callouts make wait_calls finish late); lines
// without an id are events (log echo).
type proc struct {
	cmd     *exec.Cmd
	dir     string // temporary directory with host.js and the module
	stdin   io.WriteCloser
	stderr  *tailBuffer
	logOut  io.Writer
	writeMu sync.Mutex // serialises request lines
	mu      sync.Mutex // guards nextID, waiting, dead
	nextID  uint64
	waiting map[uint64]chan reply
	dead    error
	done    chan struct{} // closed when the reader ends
}

type reply struct {
	ID     uint64          `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
	Kind   string          `json:"kind"`
	Event  string          `json:"event"`
	// log event
	VM      int              `json:"vm"`
	Level   harness.LogLevel `json:"level"`
	Message string           `json:"message"`
}

func startProc(wasm []byte, flags []string, logOut io.Writer) (*proc, string, error) {
	node, err := NodePath()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "jtiguard-v8host-")
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrHostExited, err)
	}
	script := filepath.Join(dir, "host.js")
	wasmPath := filepath.Join(dir, "module.wasm")
	if err := os.WriteFile(script, hostJS, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("%w: %w", ErrHostExited, err)
	}
	if err := os.WriteFile(wasmPath, wasm, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("%w: %w", ErrHostExited, err)
	}
	cmd := exec.Command(node, append(append([]string{}, flags...), script)...)
	cmd.Dir = dir
	p := &proc{cmd: cmd, dir: dir, stderr: &tailBuffer{max: 16 << 10}, logOut: logOut,
		waiting: map[uint64]chan reply{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("%w: %w", ErrHostExited, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("%w: %w", ErrHostExited, err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("%w: start %s: %w", ErrNoNode, node, err)
	}
	go p.read(stdout)
	return p, wasmPath, nil
}

// read dispatches answer lines to their callers until stdout ends, then fails every
// caller still waiting.
func (p *proc) read(stdout io.Reader) {
	defer close(p.done)
	r := bufio.NewReaderSize(stdout, 1<<20)
	var cause error
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var rep reply
			if jerr := json.Unmarshal(line, &rep); jerr != nil {
				cause = fmt.Errorf("bad answer line %.200q: %w", line, jerr)
				break
			}
			if rep.Event == "log" {
				if p.logOut != nil {
					fmt.Fprintf(p.logOut, "wasm vm=%d [%s] %s\n", rep.VM, rep.Level, rep.Message)
				}
				continue
			}
			p.mu.Lock()
			ch := p.waiting[rep.ID]
			delete(p.waiting, rep.ID)
			p.mu.Unlock()
			if ch != nil {
				ch <- rep
			}
		}
		if err != nil {
			cause = err
			break
		}
	}
	_ = p.cmd.Wait()
	p.mu.Lock()
	p.dead = fmt.Errorf("%w: %v (%v); stderr: %s", ErrHostExited, cause, p.cmd.ProcessState, p.stderr.String())
	for id, ch := range p.waiting {
		close(ch)
		delete(p.waiting, id)
	}
	p.mu.Unlock()
}

// call sends op with args and decodes the answer's result into out (nil to drop it). An
// error answer is mapped to the harness's sentinel of its kind.
func (p *proc) call(ctx context.Context, op string, args, out any) error {
	p.mu.Lock()
	if p.dead != nil {
		err := p.dead
		p.mu.Unlock()
		return err
	}
	p.nextID++
	id := p.nextID
	ch := make(chan reply, 1)
	p.waiting[id] = ch
	p.mu.Unlock()

	line, err := json.Marshal(struct {
		ID   uint64 `json:"id"`
		Op   string `json:"op"`
		Args any    `json:"args,omitempty"`
	}{id, op, args})
	if err != nil {
		p.forget(id)
		return fmt.Errorf("v8host: encode %s: %w", op, err)
	}
	p.writeMu.Lock()
	_, err = p.stdin.Write(append(line, '\n'))
	p.writeMu.Unlock()
	if err != nil {
		p.forget(id)
		return fmt.Errorf("%w: write %s: %v; stderr: %s", ErrHostExited, op, err, p.stderr.String())
	}
	select {
	case rep, ok := <-ch:
		if !ok {
			p.mu.Lock()
			err := p.dead
			p.mu.Unlock()
			return err
		}
		if !rep.OK {
			return answerError(op, rep)
		}
		if out != nil {
			if err := json.Unmarshal(rep.Result, out); err != nil {
				return fmt.Errorf("%w: decode %s answer: %v", ErrHostExited, op, err)
			}
		}
		return nil
	case <-ctx.Done():
		p.forget(id)
		return fmt.Errorf("v8host: %s: %w", op, ctx.Err())
	}
}

func (p *proc) forget(id uint64) {
	p.mu.Lock()
	delete(p.waiting, id)
	p.mu.Unlock()
}

func answerError(op string, rep reply) error {
	var sentinel error
	switch rep.Kind {
	case "start_failed":
		sentinel = harness.ErrStartFailed
	case "vm_failed":
		sentinel = harness.ErrVMFailed
	case "closed":
		sentinel = harness.ErrClosed
	case "bad_config":
		sentinel = harness.ErrBadConfig
	case "stream_state":
		sentinel = harness.ErrStreamState
	default:
		return fmt.Errorf("v8host: %s: %s (%s)", op, rep.Error, rep.Kind)
	}
	return fmt.Errorf("%w: %s", sentinel, rep.Error)
}

// stop asks node to exit, closes its stdin and waits (bounded) for it; then kills it.
func (p *proc) stop(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = p.call(cctx, "close", nil, nil)
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}

// tailBuffer keeps the last max bytes written (node's stderr, for error messages).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
