package harness

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// LogEntry is one line logged by a module through proxy_log or fd_write.
type LogEntry struct {
	VM      int      // index of the VM that logged it
	Level   LogLevel // proxy_log level; fd 1 is info, fd 2 is error
	Message string
}

// Logs captures what modules log, per level, for tests. Like Envoy it keeps
// only entries at or above the configured level. It is safe for concurrent
// use.
type Logs struct {
	mu      sync.Mutex // guards entries and out
	entries []LogEntry
	out     io.Writer // optional echo, nil for none
	min     LogLevel
}

func newLogs(min LogLevel, out io.Writer) *Logs { return &Logs{min: min, out: out} }

func (l *Logs) add(vm int, level LogLevel, msg string) {
	if level < l.min {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, LogEntry{VM: vm, Level: level, Message: msg})
	if l.out != nil {
		fmt.Fprintf(l.out, "wasm vm=%d [%s] %s\n", vm, level, msg)
	}
}

// Entries returns a copy of every captured entry, in order.
func (l *Logs) Entries() []LogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LogEntry(nil), l.entries...)
}

// AtLevel returns the messages logged at exactly level.
func (l *Logs) AtLevel(level LogLevel) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		if e.Level == level {
			out = append(out, e.Message)
		}
	}
	return out
}

// Contains reports whether some message at level or above contains substr.
func (l *Logs) Contains(level LogLevel, substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.Level >= level && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// String renders every entry, one a line, for failure messages.
func (l *Logs) String() string {
	var b strings.Builder
	for _, e := range l.Entries() {
		fmt.Fprintf(&b, "vm=%d [%s] %s\n", e.VM, e.Level, e.Message)
	}
	return b.String()
}
