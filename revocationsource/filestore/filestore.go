// Package filestore serves a static, read-only list: a JSON document in the
// feed's snapshot shape (jti and claim entries, cutoffs), or plain text with one jti per line and an optional
// Unix expiry. The file is re-read when its modification time or size
// changes, so an operator (or a ConfigMap update) can replace it in place.
//
// A list served is a list the filter enforces: a jti missing from it is a token let through. So
// a file that is not plainly a list is refused, and the source keeps the last good one: an
// empty file or one of blank lines (what a writer that truncates and then writes leaves for a
// moment; an empty list is written as a comment line, or as {"entries":[]}), a JSON object
// without "entries" (an error object, {}), and a JSON array or markup (neither format: read as
// text they would be one junk jti each). A file caught while being written is refused where
// that can be told: one that changed while it was read, and a text file whose last line has no
// newline (its jti may be cut short) until the file has not changed for settle (then it is
// taken as whole: some writers end without one). A writer that stopped at a line's end
// cannot be told from a shorter list; replace the file whole (write, then rename over it).
package filestore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// ErrTooLarge is returned for a file above MaxBytes.
var ErrTooLarge = errors.New("file too large")

// ErrSyntax is returned for a malformed file.
var ErrSyntax = errors.New("malformed revocation file")

// ErrIncomplete is returned for a file that looks caught while being written: empty, its last
// line without a newline, or changed during the read. The next poll reads it again.
var ErrIncomplete = errors.New("revocation file incomplete")

// DefaultMaxBytes matches the filter's default sync.max_body_bytes.
const DefaultMaxBytes = 128 << 20

// Store is a read-only revocationsource.Store over one file.
type Store struct {
	Path         string
	PollInterval time.Duration // default 1s
	MaxBytes     int64         // default DefaultMaxBytes
	MaxEntries   int           // live items allowed; default 2,000,000
	// Grace: items past exp + Grace are left out and do not count against
	// MaxEntries (0: revocationsource.DefaultExpiryGrace).
	Grace time.Duration
	Now   func() time.Time // default time.Now

	mu     sync.Mutex
	loaded stamp // of the file as last read by Load
}

type stamp struct {
	mod  time.Time
	size int64
}

func (s *Store) stat() (stamp, error) {
	fi, err := os.Stat(s.Path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// Load reads and parses the file.
func (s *Store) Load(_ context.Context) (rs.State, error) {
	// Stat before reading: a change during the read then shows up as a new
	// stamp on the next poll rather than being lost.
	before, err := s.stat()
	if err != nil {
		return rs.State{}, err
	}
	data, err := s.read(before)
	if err != nil {
		return rs.State{}, err
	}
	if unterminated(data) {
		if age := s.now().Sub(before.mod); age < s.settle() {
			return rs.State{}, fmt.Errorf("%w: %s: the last line has no newline and the file changed %s ago; read again once it has not changed for %s",
				ErrIncomplete, s.Path, age.Round(time.Millisecond), s.settle())
		}
	}
	st, err := Parse(data)
	if err != nil {
		return rs.State{}, fmt.Errorf("%s: %w", s.Path, err)
	}
	maxEntries := s.MaxEntries
	if maxEntries <= 0 {
		maxEntries = 2_000_000
	}
	st = s.live(st)
	if len(st.Entries)+len(st.Cutoffs) > maxEntries {
		return rs.State{}, fmt.Errorf("%w: %s holds more than %d unexpired items", rs.ErrTooManyEntries, s.Path, maxEntries)
	}
	s.mu.Lock()
	s.loaded = before
	s.mu.Unlock()
	return st, nil
}

// read reads the file whole, and refuses it unless it is still the file stated as before: a
// writer at work between the two stats, or one that replaced the file under its name while it
// was open, shows as a size or time that is not the file's as it was read.
func (s *Store) read(before stamp) ([]byte, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	max := s.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, s.Path, max)
	}
	after, err := s.stat()
	if err != nil {
		return nil, err
	}
	if after != before || int64(len(data)) != before.size {
		return nil, fmt.Errorf("%w: %s changed while it was read", ErrIncomplete, s.Path)
	}
	return data, nil
}

// unterminated reports a text file whose last line has no newline.
func unterminated(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	return len(trimmed) > 0 && trimmed[0] != '{' && data[len(data)-1] != '\n'
}

// minSettle is the least settle: a writer that flushes in blocks (mid-line) and stalls on its
// own source for less than this is not read cut short; coarse file times (1 s, 2 s on FAT)
// come off it.
const minSettle = 10 * time.Second

// settle is how long a file must not have changed before a last line without its newline is
// taken as whole: two poll intervals, and at least minSettle.
func (s *Store) settle() time.Duration {
	every := s.PollInterval
	if every <= 0 {
		every = time.Second
	}
	return max(2*every, minSettle)
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// live drops the items past exp + grace.
func (s *Store) live(st rs.State) rs.State {
	grace := s.Grace
	if grace <= 0 {
		grace = rs.DefaultExpiryGrace
	}
	cut := s.now().Add(-grace).Unix()
	keep := func(exp int64) bool { return exp == 0 || exp > cut }
	entries := st.Entries[:0]
	for _, e := range st.Entries {
		if keep(e.Exp) {
			entries = append(entries, e)
		}
	}
	cutoffs := st.Cutoffs[:0]
	for _, c := range st.Cutoffs {
		if keep(c.Exp) {
			cutoffs = append(cutoffs, c)
		}
	}
	return rs.State{Entries: entries, Cutoffs: cutoffs}
}

// Parse reads either format: JSON when the first non-space byte is '{'. It refuses what is not
// plainly a whole list (see the package's doc).
func Parse(data []byte) (rs.State, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) == 0 {
		return rs.State{}, fmt.Errorf("%w: the file is empty (an empty list is a comment line, or {\"entries\":[]})", ErrIncomplete)
	}
	switch trimmed[0] {
	case '[', '<':
		return rs.State{}, fmt.Errorf("%w: a JSON array or markup, neither format (JSON is an object in the feed's snapshot shape)", ErrSyntax)
	}
	if trimmed[0] == '{' {
		var snap rs.Snapshot
		if err := json.Unmarshal(trimmed, &snap); err != nil {
			return rs.State{}, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		if snap.Kind != "" && snap.Kind != "snapshot" {
			return rs.State{}, fmt.Errorf("%w: kind %q, want snapshot", ErrSyntax, snap.Kind)
		}
		if snap.Entries == nil {
			return rs.State{}, fmt.Errorf("%w: no \"entries\" array (an empty list is {\"entries\":[]})", ErrSyntax)
		}
		st := rs.State{Entries: make([]rs.Entry, 0, len(snap.Entries))}
		for i, w := range snap.Entries {
			e, err := w.Entry()
			if err != nil {
				if w.JTI == "" && w.Claim == "" && w.Value == "" {
					// Neither form: an entry without a jti, dropped and
					// counted by the index as any invalid item.
					e = rs.Entry{Iss: w.Iss, Exp: w.Exp}
				} else {
					return rs.State{}, fmt.Errorf("%w: entries[%d]: %v", ErrSyntax, i, err)
				}
			}
			st.Entries = append(st.Entries, e)
		}
		for _, c := range snap.Cutoffs {
			st.Cutoffs = append(st.Cutoffs, rs.Cutoff{Sub: c.Sub, Iss: c.Iss, RevokedBefore: c.RevokedBefore, Exp: c.Exp})
		}
		return st, nil
	}
	var st rs.State
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) > 2 {
			return rs.State{}, fmt.Errorf("%w: line %d: more than two fields", ErrSyntax, line)
		}
		e := rs.Entry{JTI: fields[0]}
		if len(fields) == 2 {
			exp, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return rs.State{}, fmt.Errorf("%w: line %d: expiry %q is not an integer", ErrSyntax, line, fields[1])
			}
			e.Exp = exp
		}
		st.Entries = append(st.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return rs.State{}, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return st, nil
}

// Follow re-reads the file when its mtime or size changes.
func (s *Store) Follow(ctx context.Context, sink rs.Sink) error {
	every := s.PollInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		cur, err := s.stat()
		s.mu.Lock()
		last := s.loaded
		s.mu.Unlock()
		if err != nil || cur == last {
			continue // a missing file keeps the last good list
		}
		if err := s.ReloadInto(ctx, sink); err != nil {
			return err
		}
	}
}

// ReloadInto reads the file and reconciles sink with it.
func (s *Store) ReloadInto(ctx context.Context, sink rs.Sink) error {
	since := sink.Seq()
	st, err := s.Load(ctx)
	if err != nil {
		return err
	}
	return sink.Reconcile(st, since)
}

// Close does nothing.
func (s *Store) Close() error { return nil }

// RevokeToken is not supported: the file is the operator's.
func (s *Store) RevokeToken(context.Context, rs.Entry) error { return rs.ErrReadOnly }

// UnrevokeToken is not supported.
func (s *Store) UnrevokeToken(context.Context, rs.EntryKey) error { return rs.ErrReadOnly }

// RevokeSubject is not supported.
func (s *Store) RevokeSubject(context.Context, rs.Cutoff) error { return rs.ErrReadOnly }

// UnrevokeSubject is not supported.
func (s *Store) UnrevokeSubject(context.Context, rs.CutoffKey) error { return rs.ErrReadOnly }

// RevokeClaim is not supported: the file is the operator's.
func (s *Store) RevokeClaim(context.Context, rs.Entry) error { return rs.ErrReadOnly }

// UnrevokeClaim is not supported.
func (s *Store) UnrevokeClaim(context.Context, rs.EntryKey) error { return rs.ErrReadOnly }
