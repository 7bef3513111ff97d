package adminclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// memStore accepts every write.
type memStore struct{}

func (memStore) Load(context.Context) (rs.State, error)              { return rs.State{}, nil }
func (memStore) RevokeToken(context.Context, rs.Entry) error         { return nil }
func (memStore) UnrevokeToken(context.Context, rs.EntryKey) error    { return nil }
func (memStore) RevokeSubject(context.Context, rs.Cutoff) error      { return nil }
func (memStore) UnrevokeSubject(context.Context, rs.CutoffKey) error { return nil }
func (memStore) Close() error                                        { return nil }

func newSource(t *testing.T) (*rs.Index, *Client) {
	t.Helper()
	idx := rs.NewIndex(nil, 0)
	hs := httptest.NewServer((&rs.Server{Index: idx, Store: memStore{}, AdminToken: "admin-t"}).Handler())
	t.Cleanup(hs.Close)
	return idx, &Client{BaseURL: hs.URL + "/", Token: "admin-t"}
}

// TestClientAgainstTheServer: every call against the real handler.
func TestClientAgainstTheServer(t *testing.T) {
	idx, c := newSource(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Unix()
	for i := range 25 {
		if _, err := c.Revoke(ctx, rs.AdminRequest{JTI: fmt.Sprintf("j%02d", i), Exp: exp}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := c.Revoke(ctx, rs.AdminRequest{Sub: "user-1", Iss: "https://a.example"})
	if err != nil || v != idx.Version() {
		t.Fatalf("cutoff: %q %v", v, err)
	}
	var n int
	lq := ListQuery{Limit: 7}
	for pages := 1; ; pages++ {
		page, err := c.List(ctx, lq)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Entries) + len(page.Cutoffs)
		if page.NextCursor == "" {
			if pages != 4 {
				t.Fatalf("%d pages", pages)
			}
			break
		}
		lq.Cursor = page.NextCursor
	}
	if n != 26 {
		t.Fatalf("listed %d items, want 26", n)
	}
	iss := "https://a.example"
	page, err := c.List(ctx, ListQuery{Iss: &iss})
	if err != nil || len(page.Entries) != 0 || len(page.Cutoffs) != 1 {
		t.Fatalf("by issuer: %+v %v", page, err)
	}
	if _, err := c.Unrevoke(ctx, rs.AdminRequest{Sub: "user-1", Iss: iss}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unrevoke(ctx, rs.AdminRequest{JTI: "j00"}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Entries != 24 || st.Cutoffs != 0 || !st.Ready || st.Version != idx.Version() {
		t.Fatalf("status %+v %v", st, err)
	}
}

// TestClientErrors: a refusal is an *APIError with the server's message;
// no answer at all is ErrUnreachable; a bad URL is ErrBadURL.
func TestClientErrors(t *testing.T) {
	_, c := newSource(t)
	ctx := context.Background()
	var apiErr *APIError
	if _, err := c.Revoke(ctx, rs.AdminRequest{JTI: "a", Exp: 5}); !errors.As(err, &apiErr) || apiErr.Status != 400 ||
		apiErr.Message == "" || errors.Is(err, ErrUnreachable) {
		t.Fatalf("bad exp: %v", err)
	}
	bad := *c
	bad.Token = "wrong"
	if _, err := bad.Status(ctx); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := (&Client{BaseURL: "http://" + addr, Token: "t"}).Status(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("closed port: %v", err)
	}
	// A server that never answers: the timeout, then ErrUnreachable.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	if _, err := (&Client{BaseURL: hang.URL, Token: "t", Timeout: 100 * time.Millisecond}).Status(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no answer: %v", err)
	}
	// Something else at the URL: HTML with 200 is a refusal, not a success.
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == rs.AdminStatusPath {
			w.Write([]byte("<html>login</html>"))
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer html.Close()
	if _, err := (&Client{BaseURL: html.URL, Token: "t"}).Status(ctx); !errors.As(err, &apiErr) || apiErr.Status != 200 {
		t.Fatalf("html: %v", err)
	}
	if _, err := (&Client{BaseURL: html.URL, Token: "t"}).Revoke(ctx, rs.AdminRequest{JTI: "a"}); !errors.As(err, &apiErr) {
		t.Fatalf("other JSON: %v", err)
	}
	for _, u := range []string{"127.0.0.1:8081", "ftp://x", "http://", "://"} {
		if _, err := (&Client{BaseURL: u, Token: "t"}).Status(ctx); !errors.Is(err, ErrBadURL) {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}
