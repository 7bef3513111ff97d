package revocationsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBearerMatches(t *testing.T) {
	want := sha256.Sum256([]byte("s3cret"))
	tests := []struct {
		header string
		ok     bool
	}{
		{"Bearer s3cret", true},
		{"bearer s3cret", true}, // RFC 9110: the scheme is case-insensitive
		{"BEARER s3cret", true},
		{"Bearer   s3cret  ", true},
		{"  Bearer s3cret", true},
		{"Bearer s3cre", false},
		{"Bearer s3cret2", false},
		{"Basic s3cret", false},
		{"s3cret", false},
		{"Bearer", false},
		{"", false},
		{"Bearers3cret", false},
	}
	for _, tt := range tests {
		if got := bearerMatches(tt.header, want); got != tt.ok {
			t.Errorf("bearerMatches(%q) = %v", tt.header, got)
		}
	}
}

// memStore is a Store in memory, for server tests.
type memStore struct {
	mu      sync.Mutex
	entries map[EntryKey]Entry
	cutoffs map[CutoffKey]Cutoff
}

func newMemStore() *memStore {
	return &memStore{entries: map[EntryKey]Entry{}, cutoffs: map[CutoffKey]Cutoff{}}
}

func (m *memStore) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st State
	for _, e := range m.entries {
		st.Entries = append(st.Entries, e)
	}
	for _, c := range m.cutoffs {
		st.Cutoffs = append(st.Cutoffs, c)
	}
	return st, nil
}
func (m *memStore) RevokeToken(_ context.Context, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[e.Key()] = e
	return nil
}
func (m *memStore) UnrevokeToken(_ context.Context, k EntryKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, k)
	return nil
}
func (m *memStore) RevokeSubject(_ context.Context, c Cutoff) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cutoffs[c.Key()] = c
	return nil
}
func (m *memStore) UnrevokeSubject(_ context.Context, k CutoffKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cutoffs, k)
	return nil
}
func (m *memStore) Close() error { return nil }

func request(t *testing.T, h http.Handler, method, target, auth, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestFeedAndMetricsTokens: each endpoint asks for its own token when one is
// configured, and for none otherwise.
func TestFeedAndMetricsTokens(t *testing.T) {
	idx := NewIndex(nil, 0)
	reg := prometheus.NewRegistry()
	srv := &Server{Index: idx, Store: newMemStore(), Metrics: NewMetrics(reg, idx), Gatherer: reg,
		AdminToken: "admin-t", FeedToken: "feed-t", MetricsToken: "metrics-t"}
	h := srv.Handler()
	tests := []struct {
		method, path, auth string
		code               int
	}{
		{"GET", FeedPath, "", 401},
		{"GET", FeedPath, "Bearer admin-t", 401},
		{"GET", FeedPath, "Bearer feed-t", 200},
		{"GET", FeedPath, "bearer feed-t", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "Bearer feed-t", 401},
		{"GET", "/metrics", "Bearer metrics-t", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"POST", AdminPath, "Bearer feed-t", 401},
		{"POST", AdminPath, "bEaReR admin-t", 200},
	}
	for _, tt := range tests {
		w := request(t, h, tt.method, tt.path, tt.auth, `{"jti":"a"}`)
		if w.Code != tt.code {
			t.Errorf("%s %s with %q: %d, want %d (%s)", tt.method, tt.path, tt.auth, w.Code, tt.code, w.Body)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tt.method, tt.path)
		}
	}
	open := (&Server{Index: idx, Gatherer: reg}).Handler()
	for _, p := range []string{FeedPath, "/metrics"} {
		if w := request(t, open, "GET", p, "", ""); w.Code != 200 {
			t.Errorf("%s without a token configured: %d", p, w.Code)
		}
	}
}

// TestDeltaCacheBoundedInBytes: however many and however large the deltas
// asked for, the cache stays within its byte bound, and a delta too large
// for it is served but not kept.
func TestDeltaCacheBoundedInBytes(t *testing.T) {
	clk := newFakeClock(t0)
	idx := NewIndex(clk.Now, 0)
	const limit = 64 << 10
	srv := &Server{Index: idx, DeltaCacheBytes: limit}
	h := srv.Handler()
	big := strings.Repeat("x", 200)
	var versions []string
	for i := range 150 {
		versions = append(versions, idx.Version())
		idx.Apply([]Change{put(big[:100+i%100]+strconv.Itoa(i), 0)})
		for _, v := range versions[max(0, len(versions)-40):] {
			w := request(t, h, "GET", FeedPath+"?since="+v, "", "")
			var d Delta
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &d) != nil || d.Kind != "delta" {
				t.Fatalf("since %s: %d %.80s", v, w.Code, w.Body)
			}
		}
		if n, b := srv.deltaCacheUsage(); b > limit {
			t.Fatalf("after %d versions: %d deltas take %d bytes, over %d", i, n, b, limit)
		}
	}
	if n, _ := srv.deltaCacheUsage(); n == 0 {
		t.Fatal("nothing was cached")
	}
	// A cached delta is served from the cache, byte for byte the same.
	v := versions[len(versions)-1]
	a := request(t, h, "GET", FeedPath+"?since="+v, "", "").Body.String()
	b := request(t, h, "GET", FeedPath+"?since="+v, "", "").Body.String()
	if a != b {
		t.Fatal("cached delta differs")
	}
}

// TestAdminAuditLog: each revoke and unrevoke leaves one log line naming
// what changed, and never the bearer token.
func TestAdminAuditLog(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))
	idx := NewIndex(nil, 0)
	const token = "very-secret-admin-token"
	h := (&Server{Index: idx, Store: newMemStore(), Logger: log, AdminToken: token}).Handler()
	exp := time.Now().Add(time.Hour).Unix()
	steps := []struct{ method, target, body string }{
		{"POST", AdminPath, `{"jti":"j-1","exp":` + strconv.FormatInt(exp, 10) + `}`},
		{"POST", AdminPath, `{"sub":"user-9"}`},
		{"DELETE", AdminPath + "?jti=j-1", ""},
		{"DELETE", AdminPath + "?sub=user-9", ""},
	}
	for _, st := range steps {
		if w := request(t, h, st.method, st.target, "Bearer "+token, st.body); w.Code != 200 {
			t.Fatalf("%s %s: %d %s", st.method, st.target, w.Code, w.Body)
		}
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if strings.Contains(out, token) {
		t.Fatal("the admin token was logged")
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	want := []struct{ msg, key, val string }{
		{"admin revoke", "jti", "j-1"}, {"admin revoke", "sub", "user-9"},
		{"admin unrevoke", "jti", "j-1"}, {"admin unrevoke", "sub", "user-9"},
	}
	if len(lines) != len(want) {
		t.Fatalf("log lines:\n%s", out)
	}
	for i, w := range want {
		if lines[i]["msg"] != w.msg || lines[i][w.key] != w.val || lines[i]["version"] == nil {
			t.Errorf("line %d = %v, want %s %s=%s", i, lines[i], w.msg, w.key, w.val)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestAdminExpWithinGrace: a token past its exp but within the filter's
// leeway can still be revoked; one past exp + grace gets a 400 that says
// how to write a valid exp.
func TestAdminExpWithinGrace(t *testing.T) {
	clk := newFakeClock(t0)
	idx := NewIndex(clk.Now, 0)
	idx.SetExpiryGrace(time.Minute)
	h := (&Server{Index: idx, Store: newMemStore(), Now: clk.Now, AdminToken: "t"}).Handler()
	if w := request(t, h, "POST", AdminPath, "Bearer t", `{"jti":"a","exp":`+strconv.Itoa(t0-30)+`}`); w.Code != 200 {
		t.Fatalf("within grace: %d %s", w.Code, w.Body)
	}
	w := request(t, h, "POST", AdminPath, "Bearer t", `{"jti":"b","exp":`+strconv.Itoa(t0-60)+`}`)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "date +%s") {
		t.Fatalf("past grace: %d %s", w.Code, w.Body)
	}
}
