package localproxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy"
)

// bodyGuest compiles testdata/bodyguest once per test binary (see its doc comment for what
// it does with a body).
var bodyGuest = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "bodyguest")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "bodyguest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/bodyguest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build bodyguest: %w\n%s", err, b)
	}
	return os.ReadFile(out)
})

func startBodyProxy(t *testing.T, upstream string, limit int64, chunk int) *httptest.Server {
	t.Helper()
	wasm, err := bodyGuest()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := harness.New(ctx, wasm, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).WithTimers(false))
	if err != nil {
		t.Fatalf("start bodyguest: %v", err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	p := localproxy.New(h, upstream, slog.New(slog.DiscardHandler))
	if p.BufferLimit != localproxy.DefaultBufferLimit || p.BodyChunk != localproxy.DefaultBodyChunk {
		t.Fatalf("New set BufferLimit %d, BodyChunk %d; want the defaults", p.BufferLimit, p.BodyChunk)
	}
	p.BufferLimit, p.BodyChunk = limit, chunk
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}

// TestRequestBody: a filter that pauses on headers sees the body in chunks with the whole
// buffer on each call and end_of_stream on the last, decides before anything goes upstream,
// and the upstream gets the body whole; a local reply or a body past the buffer limit never
// reaches the upstream.
func TestRequestBody(t *testing.T) {
	up, upstreamSaw := newUpstream(t)
	srv := startBodyProxy(t, strings.TrimPrefix(up.URL, "http://"), 64, 8)
	for _, tc := range []struct {
		name       string
		body       string
		chunked    bool   // unknown length: Transfer-Encoding chunked
		mode       string // x-body-mode
		wantStatus int
		wantBody   string // of the response
		wantSaw    string // x-guest-saw at the upstream ("" = not reached)
	}{
		{name: "whole body in one chunk", body: "hello", wantStatus: 418, wantSaw: "calls=1 size=5"},
		{name: "chunks buffered, end on the last", body: "0123456789abcdefghij", wantStatus: 418, wantSaw: "calls=3 size=20"},
		{name: "exactly a chunk multiple", body: "0123456789abcdef", wantStatus: 418, wantSaw: "calls=2 size=16"},
		{name: "chunked encoding, short last chunk", body: "0123456789abcdefghij", chunked: true, wantStatus: 418, wantSaw: "calls=3 size=20"},
		{name: "chunked encoding ends with an empty call", body: "0123456789abcdef", chunked: true, wantStatus: 418, wantSaw: "calls=3 size=16"},
		{name: "at the buffer limit", body: strings.Repeat("x", 64), wantStatus: 418, wantSaw: "calls=8 size=64"},
		{name: "filter replies on a later chunk", body: "0123456789abcdefDENY", wantStatus: 403, wantBody: "denied"},
		{name: "past the buffer limit", body: strings.Repeat("x", 65), wantStatus: 413, wantBody: "Payload Too Large"},
		{name: "past the limit, chunked", body: strings.Repeat("x", 100), chunked: true, wantStatus: 413, wantBody: "Payload Too Large"},
		{name: "paused at end of stream without a reply", body: "abc", mode: "forever", wantStatus: 500},
		{name: "streaming filter: no buffering, no limit", body: strings.Repeat("y", 200), mode: "continue", wantStatus: 418},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(upstreamSaw())
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(strings.NewReader(tc.body)) // hides the length
			}
			req, _ := http.NewRequest("POST", srv.URL+"/p?q=1", body)
			if tc.mode != "" {
				req.Header.Set("x-body-mode", tc.mode)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || tc.wantBody != "" && string(b) != tc.wantBody {
				t.Fatalf("POST %d bytes = %d %q; want %d %q", len(tc.body), resp.StatusCode, b, tc.wantStatus, tc.wantBody)
			}
			after := upstreamSaw()
			if tc.wantStatus != 418 {
				if len(after) != before {
					t.Fatalf("a stopped request reached the upstream")
				}
				return
			}
			if len(after) != before+1 {
				t.Fatalf("upstream got %d requests; want 1", len(after)-before)
			}
			s := after[len(after)-1]
			if s.Body != tc.body || s.Path != "/p" || s.RawQuery != "q=1" {
				t.Fatalf("upstream saw %s?%s with %d body bytes; want /p?q=1 with the %d sent", s.Path, s.RawQuery, len(s.Body), len(tc.body))
			}
			if got := s.Header.Get("x-guest-saw"); got != tc.wantSaw {
				t.Fatalf("filter saw %q; want %q", got, tc.wantSaw)
			}
		})
	}
}

// TestRequestBodyStopsUpstream: when the headers went upstream already (the filter
// continued on them) and a later chunk gets a local reply, the upstream request is cut off
// and the client gets the filter's reply, as Envoy resets the upstream stream.
func TestRequestBodyStopsUpstream(t *testing.T) {
	var mu sync.Mutex
	var got []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%d bytes, err %v", len(b), err))
		mu.Unlock()
		if err != nil {
			return
		}
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(up.Close)
	srv := startBodyProxy(t, strings.TrimPrefix(up.URL, "http://"), 64, 8)
	body := bytes.Repeat([]byte("z"), 40)
	body = append(body, "DENY"...)
	req, _ := http.NewRequest("POST", srv.URL+"/s", bytes.NewReader(body))
	req.Header.Set("x-body-mode", "continue")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(b) != "denied" {
		t.Fatalf("status %d %q; want the filter's 403 denied", resp.StatusCode, b)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, g := range got {
		if !strings.Contains(g, "err <nil>") {
			continue
		}
		t.Fatalf("upstream read a complete body (%s); want it cut off", g)
	}
}
