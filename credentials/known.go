package credentials

import (
	"math/rand/v2"
	"sync/atomic"
	"unsafe"

	"github.com/jtiguard/jtiguard/internal/words"
)

// Known values. A client sends the same Authorization value ("Bearer <token>") on request
// after request, and discovery's reading of a value depends on its bytes alone: the runs of
// token characters, and the payload candidates they hold. The Scanner therefore remembers,
// for values of the configured header it read before, what runs found in them, and finds a
// value again by comparing it in full: the same bytes, the same candidates. On a cache hit
// that replaces the classification of every byte of the token (about 40 operations a word,
// half of discovery's work on such a request in wasm) with one comparison (a few a word).
//
// A known value also carries an id, unique in the process (whichever Scanner gave it, so
// that no cache can take one Scanner's id for another's), that it hands to the selection of
// the token the value holds (Selection.Known): equal ids mean the same token, byte for byte,
// so the filter's token cache can find its entry for that token without hashing and
// comparing the payload again.
//
// Only values of the common form are remembered, "<header_type> <token>" with the token one
// run of token characters holding a candidate: those whose token selection takes from the
// value without reading it again (fromHeader's first case). Other values (Basic credentials,
// a signature scheme's, a client's junk) are neither copied nor kept.
//
// What is remembered is exactly what runs added for the value when nothing came before it
// in the request (the request target, read first, usually holds no candidate): replaying
// those candidates with addCandidate, after whatever came before, adds what runs would add,
// since addCandidate ignores a payload it already has and refuses the same new ones at the
// MaxCandidates bound. A value read after other candidates is not remembered (remember
// refuses a candidate that is not a view into the value; discoverHeader does not even ask),
// nor one with more than knownSpans candidates (so none that reached the bound).
// FuzzKnownValueIsDiscovery holds a scan with known values equal to one without.

const (
	// knownSlots is how many values are remembered: a direct-mapped table, a value's slot
	// taken by the next value that maps to it.
	knownSlots = 256
	// knownSpans bounds the candidates of a remembered value: one is the common token.
	knownSpans = 4
	// knownMinLen and knownMaxLen bound the values remembered: shorter ones hold no token
	// worth it; the longest bound the memory a stream of hostile values can make it hold
	// (knownSlots × knownMaxLen, 1 MiB).
	knownMinLen = 16
	knownMaxLen = 4096
)

// knownValue is one remembered value.
type knownValue struct {
	// text is a copy of the value (empty for an empty slot), in the slot's own buffer: the
	// next value to take the slot is copied over it, so remembering allocates nothing once
	// the buffer has grown (a working set larger than the table makes values take turns in
	// their slots; each turn must cost little more than the reading it replaces).
	text  []byte
	id    uint64 // unique in the process (lastKnownID)
	run   run    // the value's last run, as runs returns it
	spans [knownSpans]struct{ from, to int32 }
	n     int
}

// knownValues is the table of remembered values.
type knownValues struct {
	seed  uint64
	slots []knownValue
}

// lastKnownID is the last id a value was given, by any Scanner.
var lastKnownID atomic.Uint64

func newKnownValues() knownValues {
	return knownValues{seed: rand.Uint64(), slots: make([]knownValue, knownSlots)}
}

// slot is where value is remembered if it is: chosen by its length and its last sixteen
// bytes (a token's signature), seeded. A crafted value can only take another value's slot,
// which costs that value a reading by runs; it is found by comparing it in full.
func (k *knownValues) slot(value string) *knownValue {
	const m = 0x9e3779b97f4a7c15
	n := len(value)
	h := (k.seed ^ uint64(n)) * m
	h = (h ^ words.Load64(value, n-8)) * m
	h = (h ^ words.Load64(value, n-16)) * m
	return &k.slots[(h>>32)&(knownSlots-1)]
}

// find returns value's entry if the table remembers value.
func (k *knownValues) find(value string) *knownValue {
	if len(value) < knownMinLen || len(value) > knownMaxLen {
		return nil
	}
	v := k.slot(value)
	if !words.Equal(unsafe.String(unsafe.SliceData(v.text), len(v.text)), value) {
		return nil
	}
	return v
}

// remember stores what runs found in value: its last run r, and the candidates cands, which
// are views into value. It returns the value's id, or 0 if it was not remembered.
func (k *knownValues) remember(value string, r run, cands []string) uint64 {
	if len(value) < knownMinLen || len(value) > knownMaxLen || len(cands) > knownSpans {
		return 0
	}
	var spans [knownSpans]struct{ from, to int32 }
	base := uintptr(unsafe.Pointer(unsafe.StringData(value)))
	for i, c := range cands {
		from := int(uintptr(unsafe.Pointer(unsafe.StringData(c))) - base)
		if from < 0 || from+len(c) > len(value) {
			return 0 // not a view into value: nothing to remember
		}
		spans[i].from, spans[i].to = int32(from), int32(from+len(c))
	}
	v := k.slot(value)
	v.text = append(v.text[:0], value...)
	v.id, v.run, v.spans, v.n = lastKnownID.Add(1), r, spans, len(cands)
	return v.id
}

// discoverHeader is runs for a value of the configured header, through the known values. It
// sets s.headerKnown to the value's id, or 0 when it is not remembered.
func (s *Scanner) discoverHeader(value string) run {
	if v := s.known.find(value); v != nil {
		for _, sp := range v.spans[:v.n] {
			s.addCandidate(value[sp.from:sp.to])
		}
		s.headerKnown = v.id
		return v.run
	}
	s.headerKnown = 0
	fresh := len(s.res.Candidates) == 0
	r, _ := s.runs(value)
	if fresh && len(s.res.Candidates) > 0 && s.commonForm(value, r) {
		s.headerKnown = s.known.remember(value, r, s.res.Candidates)
	}
	return r
}

// commonForm reports whether value is "<header_type> <token>" with r, its last run, the
// whole token: fromHeader's first case, the only one that gives Selection.Known.
func (s *Scanner) commonForm(value string, r run) bool {
	ht := s.cfg.HeaderType
	return ht != "" && len(value) > len(ht)+1 && value[len(ht)] == ' ' && value[:len(ht)] == ht &&
		r.start == len(ht)+1 && r.end == len(value)
}

// KnownOf returns the Known id of the selected token whose payload is the candidate c (the
// same view, as discovery gives both), or 0: the id names c's bytes too, the token's fixed
// part.
func (r *Result) KnownOf(c string) uint64 {
	for k := range r.Selected {
		sel := &r.Selected[k]
		if sel.Known != 0 && len(sel.Payload) == len(c) && unsafe.StringData(sel.Payload) == unsafe.StringData(c) {
			return sel.Known
		}
	}
	return 0
}
