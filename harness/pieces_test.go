package harness

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestPairsRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs Pairs
	}{
		{"empty", nil},
		{"one", Pairs{{":status", "200"}}},
		{"repeated and empty values", Pairs{{"a", ""}, {"set-cookie", "x=1"}, {"set-cookie", "y=2"}, {"", "v"}}},
		{"binary-ish", Pairs{{"k", "v\xff\x01"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := encodePairs(tc.pairs)
			if len(tc.pairs) == 0 && b != nil {
				t.Fatalf("encodePairs(empty) = %x; want nil (size 0)", b)
			}
			got, err := decodePairs(b)
			if err != nil {
				t.Fatalf("decodePairs: %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.pairs) || len(got) != len(tc.pairs) {
				t.Fatalf("round trip = %q; want %q", got, tc.pairs)
			}
		})
	}
}

func TestEncodePairsWireFormat(t *testing.T) {
	got := encodePairs(Pairs{{"ab", "c"}, {"d", ""}})
	want := []byte{
		2, 0, 0, 0, // count
		2, 0, 0, 0, 1, 0, 0, 0, // "ab", "c"
		1, 0, 0, 0, 0, 0, 0, 0, // "d", ""
		'a', 'b', 0, 'c', 0, 'd', 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encodePairs = %v; want %v", got, want)
	}
}

func TestDecodePairsRejects(t *testing.T) {
	tooMany := make([]byte, 4)
	binary.LittleEndian.PutUint32(tooMany, maxPairsCount+1)
	tooMany = append(tooMany, make([]byte, 8*(maxPairsCount+1))...)
	good := encodePairs(Pairs{{"k", "v"}})
	noNul := append([]byte{}, good...)
	noNul[len(noNul)-1] = 'x'
	tests := []struct {
		name string
		in   []byte
	}{
		{"short count", []byte{1, 0}},
		{"sizes past end", []byte{1, 0, 0, 0, 1, 0}},
		{"data past end", good[:len(good)-1]},
		{"missing NUL", noNul},
		{"over 1024 pairs", tooMany},
		{"over 1 MiB", make([]byte, maxPairsBytes+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := decodePairs(tc.in); !errors.Is(err, errPairs) {
				t.Fatalf("decodePairs = %q, %v; want errPairs", p, err)
			}
		})
	}
}

func TestPairsMutations(t *testing.T) {
	base := Pairs{{"a", "1"}, {"b", "2"}, {"a", "3"}}
	tests := []struct {
		name string
		got  Pairs
		want Pairs
	}{
		{"add lower-cases", base.clone().add("X-New", "v"), Pairs{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"x-new", "v"}}},
		{"replace keeps first drops rest", base.clone().replace("A", "9"), Pairs{{"a", "9"}, {"b", "2"}}},
		{"replace absent appends", base.clone().replace("c", "4"), Pairs{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", "4"}}},
		{"remove all", base.clone().remove("a"), Pairs{{"b", "2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %q; want %q", tc.got, tc.want)
			}
		})
	}
	if v, _ := base.Get("A"); v != "1" {
		t.Fatalf("Get(A) = %q; want first value 1", v)
	}
}

func TestSharedDataSemantics(t *testing.T) {
	s := NewSharedData()
	if _, _, st := s.Get("", "k"); st != StatusNotFound {
		t.Fatalf("Get(absent) = %d; want NotFound", st)
	}
	// Setting an absent key succeeds whatever the cas.
	if st := s.Set("", "k", []byte("v1"), 12345); st != StatusOK {
		t.Fatalf("Set(absent, cas 12345) = %d; want OK", st)
	}
	v, cas1, _ := s.Get("", "k")
	if string(v) != "v1" || cas1 == 0 {
		t.Fatalf("Get = %q, cas %d; want v1, non-zero cas", v, cas1)
	}
	// Stale cas: mismatch and no change.
	if st := s.Set("", "k", []byte("bad"), cas1+100); st != StatusCASMismatch {
		t.Fatalf("Set(stale cas) = %d; want CASMismatch", st)
	}
	if v, c, _ := s.Get("", "k"); string(v) != "v1" || c != cas1 {
		t.Fatalf("after mismatch Get = %q, %d; want v1, %d", v, c, cas1)
	}
	// Matching cas: set, new cas.
	if st := s.Set("", "k", []byte("v2"), cas1); st != StatusOK {
		t.Fatalf("Set(current cas) = %d; want OK", st)
	}
	_, cas2, _ := s.Get("", "k")
	if cas2 == cas1 {
		t.Fatalf("cas did not change after set: %d", cas2)
	}
	// The old cas is now stale.
	if st := s.Set("", "k", []byte("v3"), cas1); st != StatusCASMismatch {
		t.Fatalf("Set(old cas) = %d; want CASMismatch", st)
	}
	// cas 0 is unconditional.
	if st := s.Set("", "k", []byte("v4"), 0); st != StatusOK {
		t.Fatalf("Set(cas 0) = %d; want OK", st)
	}
	// The counter is global: another key gets a cas above every earlier one.
	s.Set("", "other", nil, 0)
	_, c4, _ := s.Get("", "k")
	_, cOther, _ := s.Get("", "other")
	if !(cOther > c4 && c4 > cas2) {
		t.Fatalf("cas values not from one increasing counter: k=%d other=%d prev=%d", c4, cOther, cas2)
	}
	// vm_id namespaces.
	if _, _, st := s.Get("other-vm", "k"); st != StatusNotFound {
		t.Fatalf("Get in another vm_id = %d; want NotFound", st)
	}
	// Values are copied in and out.
	buf := []byte("abc")
	s.Set("", "copy", buf, 0)
	buf[0] = 'X'
	got, _, _ := s.Get("", "copy")
	got[1] = 'Y'
	if again, _, _ := s.Get("", "copy"); string(again) != "abc" {
		t.Fatalf("stored value aliased caller memory: %q", again)
	}
}

func TestSharedDataCASWraps(t *testing.T) {
	s := NewSharedData()
	s.cas = 0xffffffff
	s.Set("", "a", nil, 0)
	s.Set("", "b", nil, 0)
	_, ca, _ := s.Get("", "a")
	_, cb, _ := s.Get("", "b")
	if ca != 0xffffffff || cb != 1 {
		t.Fatalf("cas around wrap = %d, %d; want 4294967295, 1 (0 is never used)", ca, cb)
	}
}

// TestSharedDataHammerCAS runs P goroutines × N read-modify-write loops on
// one counter with CAS retries; a lost update or a torn read shows as a
// final count other than P×N.
func TestSharedDataHammerCAS(t *testing.T) {
	const P, N = 8, 500
	s := NewSharedData()
	s.Set("", "ctr", make([]byte, 8), 0)
	var wg sync.WaitGroup
	for p := 0; p < P; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				for {
					v, cas, st := s.Get("", "ctr")
					if st != StatusOK || len(v) != 8 {
						t.Errorf("Get(ctr) = %x, %d", v, st)
						return
					}
					next := make([]byte, 8)
					binary.LittleEndian.PutUint64(next, binary.LittleEndian.Uint64(v)+1)
					if s.Set("", "ctr", next, cas) == StatusOK {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	v, _, st := s.Get("", "ctr")
	if st != StatusOK {
		t.Fatalf("Get(ctr) = %d", st)
	}
	if got := binary.LittleEndian.Uint64(v); got != P*N {
		t.Fatalf("counter = %d; want %d (lost updates)", got, P*N)
	}
}

func TestMetricsRules(t *testing.T) {
	m := newMetrics()
	c := m.define(MetricCounter, "c")
	g := m.define(MetricGauge, "g")
	h := m.define(MetricHistogram, "h")
	if m.define(MetricCounter, "c") != c {
		t.Fatal("defining the same counter twice gave two metrics")
	}
	tests := []struct {
		name string
		st   Status
		want Status
	}{
		{"counter +2", m.increment(MetricCounter, c, 2), StatusOK},
		{"counter -1", m.increment(MetricCounter, c, -1), StatusBadArgument},
		{"counter 0", m.increment(MetricCounter, c, 0), StatusBadArgument},
		{"gauge -5", m.increment(MetricGauge, g, -5), StatusOK},
		{"histogram increment", m.increment(MetricHistogram, h, 1), StatusBadArgument},
		{"counter record 3", m.record(MetricCounter, c, 3), StatusOK},
		{"histogram record", m.record(MetricHistogram, h, 7), StatusOK},
	}
	for _, tc := range tests {
		if tc.st != tc.want {
			t.Errorf("%s = %d; want %d", tc.name, tc.st, tc.want)
		}
	}
	if v, _ := m.Counter("c"); v != 5 {
		t.Errorf("Counter(c) = %d; want 5", v)
	}
	if v, _ := m.Gauge("g"); v != -5 {
		t.Errorf("Gauge(g) = %d; want -5", v)
	}
	m.record(MetricGauge, g, 42)
	if v, _ := m.Gauge("g"); v != 42 {
		t.Errorf("Gauge(g) after record = %d; want 42", v)
	}
	if hs, _ := m.Histogram("h"); len(hs) != 1 || hs[0] != 7 {
		t.Errorf("Histogram(h) = %v; want [7]", hs)
	}
	if _, st := m.get(MetricHistogram, h); st != StatusBadArgument {
		t.Errorf("get(histogram) = %d; want BadArgument", st)
	}
}

func TestConfigImmutable(t *testing.T) {
	base := NewConfig()
	a := base.WithWorkers(4).WithCluster("x", "127.0.0.1:1")
	b := base.WithCluster("y", "127.0.0.1:2")
	if base.workers != 2 || a.workers != 4 {
		t.Fatalf("workers base=%d a=%d; want 2, 4", base.workers, a.workers)
	}
	if _, ok := a.clusters["y"]; ok {
		t.Fatal("WithCluster on b changed a")
	}
	if _, ok := b.clusters["x"]; ok {
		t.Fatal("WithCluster on a changed b")
	}
	if len(base.clusters) != 0 {
		t.Fatal("With* modified the base config")
	}
	if err := base.WithWorkers(0).validate(); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("validate(workers 0) = %v; want ErrBadConfig", err)
	}
	for in, want := range map[string]WASIGeneration{"envoy-1.33": WASIEnvoy133, "current": WASICurrent} {
		if g, err := ParseWASIGeneration(in); err != nil || g != want {
			t.Errorf("ParseWASIGeneration(%q) = %v, %v; want %v", in, g, err, want)
		}
	}
	if _, err := ParseWASIGeneration("1.20"); !errors.Is(err, ErrBadConfig) {
		t.Errorf("ParseWASIGeneration(1.20) err = %v; want ErrBadConfig", err)
	}
}
