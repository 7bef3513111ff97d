package revocationsource

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"
)

const benchN = 1_000_000

var (
	deltaRuns int
	benchOnce sync.Once
	benchIdx  *Index
)

// bigIndex builds 1M UUID-sized entries with expiries once per process.
func bigIndex(b *testing.B) *Index {
	benchOnce.Do(func() {
		x := NewIndex(func() time.Time { return time.Unix(t0, 0) }, 0)
		ch := make([]Change, benchN)
		for i := range ch {
			ch[i] = Change{Op: OpPutEntry, Entry: Entry{JTI: fmt.Sprintf("%08x-7d7c-4c1a-9a57-%012x", i, i*7919), Exp: t0 + 3600 + int64(i%86400)}}
		}
		x.Apply(ch)
		benchIdx = x
	})
	return benchIdx
}

// BenchmarkSnapshot1M: copy, sort and encode a 1M-entry snapshot.
func BenchmarkSnapshot1M(b *testing.B) {
	x := bigIndex(b)
	b.ResetTimer()
	var size, gz int
	for range b.N {
		v, e, c := x.Snapshot()
		body := AppendSnapshot(make([]byte, 0, 64*len(e)), v, e, c)
		size = len(body)
		if gz == 0 {
			b.StopTimer()
			enc := &encoded{plain: body}
			gz = len(enc.gzipped())
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(size), "snapshot-bytes")
	b.ReportMetric(float64(gz), "gzip-bytes")
}

// BenchmarkGzipSnapshot1M: the one-off cost of the gzip form.
func BenchmarkGzipSnapshot1M(b *testing.B) {
	x := bigIndex(b)
	v, e, c := x.Snapshot()
	body := AppendSnapshot(nil, v, e, c)
	b.ResetTimer()
	for range b.N {
		(&encoded{plain: body}).gzipped()
	}
}

// BenchmarkDelta1M: a delta of 100 changes against a 1M-entry index.
func BenchmarkDelta1M(b *testing.B) {
	x := bigIndex(b)
	base := x.Version()
	deltaRuns++ // the framework calls a benchmark several times: fresh jtis each time
	for i := range 100 {
		x.Apply([]Change{{Op: OpPutEntry, Entry: Entry{JTI: fmt.Sprintf("delta-%d-%d", deltaRuns, i), Exp: t0 + 7200}}})
	}
	b.ResetTimer()
	var size int
	for range b.N {
		v, d, ok := x.Delta(base)
		if !ok || d.Len() != 100 {
			b.Fatalf("delta ok=%v len=%d", ok, d.Len())
		}
		size = len(AppendDelta(nil, base, v, d))
	}
	b.ReportMetric(float64(size), "delta-bytes")
}

// BenchmarkPollers1k: 1000 pollers on 127.0.0.1 against a 1M-entry index.
// Each iteration is one round: a writer revokes 10 jtis, then every poller
// asks for a delta from its version (with If-None-Match) and applies it.
// Bounded: b.N rounds (use -benchtime=Nx) of 1000 requests each.
func BenchmarkPollers1k(b *testing.B) {
	const pollers = 1000
	x := bigIndex(b)
	s := &Server{Index: x}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers, MaxConnsPerHost: pollers}, Timeout: 30 * time.Second}
	versions := make([]string, pollers)
	etags := make([]string, pollers)
	cur := x.Version()
	for i := range versions {
		versions[i], etags[i] = cur, `"`+cur+`"`
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		n304 int
	)
	b.ResetTimer()
	for round := range b.N {
		for j := range 10 {
			x.Apply([]Change{{Op: OpPutEntry, Entry: Entry{JTI: fmt.Sprintf("load-%d-%d-%d", b.N, round, j), Exp: t0 + 7200}}})
		}
		var wg sync.WaitGroup
		for p := range pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", srv.URL+FeedPath+"?since="+versions[p], nil)
				req.Header.Set("If-None-Match", etags[p])
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat := time.Since(start)
				if resp.StatusCode != 200 && resp.StatusCode != 304 {
					b.Errorf("status %d", resp.StatusCode)
				}
				mu.Lock()
				lats = append(lats, lat)
				if resp.StatusCode == 304 {
					n304++
				}
				mu.Unlock()
				etags[p] = resp.Header.Get("ETag")
				versions[p] = x.Version()
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	if len(lats) > 0 {
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(len(lats))/b.Elapsed().Seconds(), "req/s")
	}
}

// BenchmarkListPage1M: one admin list page of 100 from a 1M-entry index,
// in the middle of the list (each page scans the whole list once).
func BenchmarkListPage1M(b *testing.B) {
	x := bigIndex(b)
	after := &ListPos{ID: "0007a120"} // about half-way
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_, es, _, more := x.List(ListFilter{Entries: true, Cutoffs: true}, after, 100)
		if len(es) != 100 || !more {
			b.Fatalf("page of %d, more %v", len(es), more)
		}
	}
}
