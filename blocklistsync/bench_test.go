package blocklistsync

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

var benchSizes = []int{0, 10_000, 1_000_000}

func benchJTI(i int) string { return "5f0c8d2e-7a41-4b6e-9c3d-" + fmt.Sprintf("%012d", i) } // UUID-shaped

// benchHasher is a fixed key, so that runs are comparable.
var benchHasher = Hasher{0x0123456789abcdef, 0xfedcba9876543210}

func benchList(n int) List {
	l := List{Entries: make([]Entry, 0, n)}
	for i := 0; i < n; i++ {
		l.AddToken(benchHasher, "", benchJTI(i), 1_900_000_000)
	}
	l.Normalize(0)
	return l
}

func benchSnapshot(b *testing.B, n int) (*Snapshot, Encoded) {
	b.Helper()
	l := benchList(n)
	enc, err := l.Encode(Meta{Generation: 1, Version: "v1", Hasher: benchHasher})
	if err != nil {
		b.Fatal(err)
	}
	s, err := DecodeSnapshot(bytes.Clone(enc.Snapshot))
	if err != nil {
		b.Fatal(err)
	}
	return s, enc
}

// BenchmarkLookup is the per-request revocation check: it must not grow with the list.
func BenchmarkLookup(b *testing.B) {
	for _, n := range benchSizes {
		s, _ := benchSnapshot(b, n)
		hit := benchHasher.TokenKey("", benchJTI(n/2))
		miss := benchHasher.TokenKey("", "not-revoked")
		b.Run(fmt.Sprintf("entries=%d/miss", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s.Revoked(miss, 1_800_000_000) {
					b.Fatal("miss reported revoked")
				}
			}
		})
		if n > 0 {
			b.Run(fmt.Sprintf("entries=%d/hit", n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !s.Revoked(hit, 1_800_000_000) {
						b.Fatal("hit not found")
					}
				}
			})
		}
	}
}

// BenchmarkDecodeSnapshot is what a worker VM pays when the generation changes, and how much
// memory it then holds per entry (raw snapshot plus bucket directory).
func BenchmarkDecodeSnapshot(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		_, enc := benchSnapshot(b, n)
		raw := enc.Snapshot
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var s *Snapshot
			for b.Loop() {
				// Each VM gets its own copy from the host, as Envoy copies shared data.
				var err error
				if s, err = DecodeSnapshot(bytes.Clone(raw)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(raw))/float64(n), "shared-B/entry")
			b.ReportMetric(float64(len(enc.IDs))/float64(n), "ids-B/entry")
			b.ReportMetric(heapPerEntry(b, raw, n), "vm-B/entry")
			runtime.KeepAlive(s)
		})
	}
}

// heapPerEntry measures the live heap that one decoded snapshot holds.
func heapPerEntry(b *testing.B, raw []byte, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := DecodeSnapshot(bytes.Clone(raw))
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func feedBody(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"kind":"snapshot","version":"v1","entries":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"jti":"` + benchJTI(i) + `","exp":1900000000}`)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

func plainBody(n int) []byte {
	var buf bytes.Buffer
	for i := 0; i < n; i++ {
		buf.WriteString(benchJTI(i) + " 1900000000\n")
	}
	return buf.Bytes()
}

// BenchmarkApplyFullSnapshot is the lease holder's work for a full 1M-entry feed: parse,
// sort, encode. It runs on one VM, once per change of a full feed.
func BenchmarkApplyFullSnapshot(b *testing.B) {
	const n = 1_000_000
	for _, tc := range []struct {
		name, ctype string
		body        []byte
	}{{"json", "application/json", feedBody(n)}, {"text", "text/plain", plainBody(n)}} {
		b.Run(tc.name+"/entries=1000000", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				u, err := ParseFeed(tc.body, tc.ctype, FeedLimits{MaxEntries: 2_000_000, Hasher: benchHasher})
				if err != nil {
					b.Fatal(err)
				}
				u.Add.Normalize(0)
				if _, err := u.Add.Encode(Meta{Generation: 2, Version: u.Version, Hasher: benchHasher}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyDelta merges a 1k-entry delta (900 added, 100 removed) into a 1M-entry list.
func BenchmarkApplyDelta(b *testing.B) {
	s, enc := benchSnapshot(b, 1_000_000)
	var body bytes.Buffer
	body.WriteString(`{"kind":"delta","base":"v1","version":"v2","added":[`)
	for i := 0; i < 900; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"jti":"new-` + strconv.Itoa(i) + `","exp":1900000000}`)
	}
	body.WriteString(`],"removed":[`)
	for i := 0; i < 100; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"jti":"` + benchJTI(i*7) + `"}`)
	}
	body.WriteString(`]}`)
	b.ReportAllocs()
	for b.Loop() {
		u, err := ParseFeed(body.Bytes(), "application/json", FeedLimits{MaxEntries: 2_000_000, Hasher: benchHasher})
		if err != nil {
			b.Fatal(err)
		}
		// The lease holder reads the IDs from shared data (a copy) and checks them.
		held, err := attachIDs(s, bytes.Clone(enc.IDs))
		if err != nil {
			b.Fatal(err)
		}
		l := mergeDelta(held, u, uint32(time.Now().Unix()))
		if len(l.Entries) != 1_000_000+800 {
			b.Fatalf("merged %d entries; want %d", len(l.Entries), 1_000_800)
		}
		if _, err := l.Encode(Meta{Generation: 2, Version: u.Version, Hasher: benchHasher}); err != nil {
			b.Fatal(err)
		}
	}
}
