package revocationsource

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"
)

// want returns what a full, filtered listing holds, from the snapshot.
func wantListing(x *Index, f ListFilter) (entries []Entry, cutoffs []Cutoff) {
	_, es, cs := x.Snapshot()
	for _, e := range es {
		if f.entry(e.Key()) {
			entries = append(entries, e)
		}
	}
	for _, c := range cs {
		if f.cutoff(c.Key()) {
			cutoffs = append(cutoffs, c)
		}
	}
	return entries, cutoffs
}

func randomIndex(rnd *rand.Rand, n int) *Index {
	x := NewIndex(newFakeClock(t0).Now, 0)
	var ch []Change
	isses := []string{"", "https://a.example", "https://b.example"}
	for range n {
		iss := isses[rnd.IntN(len(isses))]
		if rnd.IntN(4) == 0 {
			ch = append(ch, Change{Op: OpPutCutoff, Cutoff: Cutoff{Sub: fmt.Sprintf("user-%d", rnd.IntN(n/4+1)), Iss: iss, RevokedBefore: t0}})
			continue
		}
		ch = append(ch, put(fmt.Sprintf("%c%d", 'a'+rune(rnd.IntN(3)), rnd.IntN(n)), int64(rnd.IntN(2))*(t0+3600)))
		ch[len(ch)-1].Entry.Iss = iss
	}
	x.Apply(ch)
	return x
}

func randomFilter(rnd *rand.Rand) ListFilter {
	f := ListFilter{Entries: rnd.IntN(4) != 0, Cutoffs: rnd.IntN(4) != 0}
	switch rnd.IntN(4) {
	case 0:
		if f.Entries {
			f.JTIPrefix = []string{"a", "b1", "c2", "zz"}[rnd.IntN(4)]
		}
	case 1:
		if f.Cutoffs {
			f.Sub = fmt.Sprintf("user-%d", rnd.IntN(10))
		}
	}
	if rnd.IntN(3) == 0 {
		iss := []string{"", "https://a.example"}[rnd.IntN(2)]
		f.Iss = &iss
	}
	return f
}

// TestListPagesAreTheSnapshot: for random lists, filters and page sizes,
// paging through List gives exactly the filtered snapshot, in its order,
// each item once, and says "more" exactly when items remain.
func TestListPagesAreTheSnapshot(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	for iter := range 300 {
		x := randomIndex(rnd, rnd.IntN(120))
		f := randomFilter(rnd)
		limit := 1 + rnd.IntN(15)
		wantE, wantC := wantListing(x, f)
		var gotE []Entry
		var gotC []Cutoff
		var after *ListPos
		for pages := 0; ; pages++ {
			if pages > 500 {
				t.Fatalf("iter %d: paging does not end", iter)
			}
			_, es, cs, more := x.List(f, after, limit)
			if n := len(es) + len(cs); n > limit || (more && n != limit) {
				t.Fatalf("iter %d: page of %d (more %v) with limit %d", iter, n, more, limit)
			}
			gotE, gotC = append(gotE, es...), append(gotC, cs...)
			if !more {
				break
			}
			if len(cs) > 0 {
				after = &ListPos{Cutoff: true, ID: cs[len(cs)-1].Sub, Iss: cs[len(cs)-1].Iss}
			} else {
				after = &ListPos{ID: es[len(es)-1].JTI, Iss: es[len(es)-1].Iss}
			}
			// The cursor survives its encoding.
			if p, err := decodeCursor(encodeCursor(*after)); err != nil || p != *after {
				t.Fatalf("cursor %+v came back as %+v, %v", *after, p, err)
			}
		}
		if fmt.Sprint(gotE) != fmt.Sprint(wantE) || fmt.Sprint(gotC) != fmt.Sprint(wantC) {
			t.Fatalf("iter %d, filter %+v, limit %d:\n got %v %v\nwant %v %v", iter, f, limit, gotE, gotC, wantE, wantC)
		}
	}
}

// TestListAcrossChanges: items that stay in the list while it changes
// between pages are each listed exactly once, in order.
func TestListAcrossChanges(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 2))
	x := NewIndex(newFakeClock(t0).Now, 0)
	var stay []Change
	for i := range 200 {
		stay = append(stay, put(fmt.Sprintf("stay-%03d", i), 0))
	}
	x.Apply(stay)
	seen := map[string]int{}
	var after *ListPos
	last := ""
	for {
		// Churn: other jtis come and go around the stayers.
		for range 5 {
			j := fmt.Sprintf("stay-%03d-x%d", rnd.IntN(200), rnd.IntN(3))
			if rnd.IntN(2) == 0 {
				x.Apply([]Change{put(j, 0)})
			} else {
				x.Apply([]Change{{Op: OpRemoveEntry, Entry: Entry{JTI: j}}})
			}
		}
		_, es, _, more := x.List(ListFilter{Entries: true}, after, 7)
		for _, e := range es {
			if e.JTI <= last {
				t.Fatalf("%s listed after %s", e.JTI, last)
			}
			last = e.JTI
			seen[e.JTI]++
		}
		if !more {
			break
		}
		after = &ListPos{ID: es[len(es)-1].JTI}
	}
	for _, c := range stay {
		if seen[c.Entry.JTI] != 1 {
			t.Fatalf("%s listed %d times", c.Entry.JTI, seen[c.Entry.JTI])
		}
	}
}

// TestAdminListAndStatus: the endpoints over HTTP: the admin token, paging
// by cursor, the filters, and a 400 naming the parameter for each mistake.
func TestAdminListAndStatus(t *testing.T) {
	idx := NewIndex(newFakeClock(t0).Now, 0)
	ready := false
	h := (&Server{Index: idx, Store: newMemStore(), AdminToken: "t", Ready: func() bool { return ready }}).Handler()
	var ch []Change
	for i := range 25 {
		ch = append(ch, put(fmt.Sprintf("j%02d", i), t0+3600))
	}
	iss := "https://a.example"
	ch = append(ch, Change{Op: OpPutEntry, Entry: Entry{JTI: "j05", Iss: iss}},
		Change{Op: OpPutCutoff, Cutoff: Cutoff{Sub: "user-1", RevokedBefore: t0}},
		Change{Op: OpPutCutoff, Cutoff: Cutoff{Sub: "user-2", Iss: iss, RevokedBefore: t0, Exp: t0 + 60}})
	idx.Apply(ch)

	get := func(query string) (int, AdminList, string) {
		t.Helper()
		w := request(t, h, "GET", AdminPath+query, "Bearer t", "")
		var page AdminList
		if w.Code == 200 {
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
				t.Fatalf("%s: %v", w.Body, err)
			}
		}
		return w.Code, page, w.Body.String()
	}
	if w := request(t, h, "GET", AdminPath, "", ""); w.Code != 401 {
		t.Fatalf("without the token: %d", w.Code)
	}
	if w := request(t, h, "GET", AdminStatusPath, "Bearer wrong", ""); w.Code != 401 {
		t.Fatalf("status with a wrong token: %d", w.Code)
	}

	// Page through everything, 10 at a time.
	var jtis, subs []string
	cursor := ""
	for pages := 1; ; pages++ {
		q := "?limit=10"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		code, page, body := get(q)
		if code != 200 || page.Version != idx.Version() {
			t.Fatalf("page %d: %d %s", pages, code, body)
		}
		for _, e := range page.Entries {
			jtis = append(jtis, e.JTI+"|"+e.Iss)
		}
		for _, c := range page.Cutoffs {
			subs = append(subs, c.Sub)
		}
		if cursor = page.NextCursor; cursor == "" {
			if pages != 3 {
				t.Fatalf("%d pages for 28 items by 10", pages)
			}
			break
		}
	}
	if len(jtis) != 26 || jtis[5] != "j05|" || jtis[6] != "j05|"+iss || strings.Join(subs, ",") != "user-1,user-2" {
		t.Fatalf("listed %v %v", jtis, subs)
	}

	for _, c := range []struct {
		query string
		n     int
		first string
	}{
		{"?jti_prefix=j1", 10, "j10"},
		{"?iss=" + url.QueryEscape(iss), 2, "j05"},
		{"?only=cutoffs", 2, "user-1"},
		{"?sub=user-2", 1, "user-2"},
		{"?only=entries&iss=", 25, "j00"},
		{"?jti_prefix=nothing", 0, ""},
	} {
		code, page, body := get(c.query)
		n := len(page.Entries) + len(page.Cutoffs)
		first := ""
		if len(page.Entries) > 0 {
			first = page.Entries[0].JTI
		} else if len(page.Cutoffs) > 0 {
			first = page.Cutoffs[0].Sub
		}
		if code != 200 || n != c.n || first != c.first || page.NextCursor != "" || page.Entries == nil || page.Cutoffs == nil {
			t.Errorf("%s: %d, %d items from %q; want %d from %q (%s)", c.query, code, n, first, c.n, c.first, body)
		}
	}
	for _, c := range []struct{ query, says string }{
		{"?limit=0", "limit"}, {"?limit=1001", "limit"}, {"?limit=x", "limit"},
		{"?cursor=bogus", "cursor"}, {"?cursor=" + encodeCursor(ListPos{}) + "x!", "cursor"},
		{"?only=jtis", "only"}, {"?jti_prefix=a&sub=b", "jti_prefix"}, {"?only=cutoffs&jti_prefix=a", "only"},
		{"?prefix=a", "prefix"}, {"?limit=1&limit=2", "limit"}, {"?sub=" + strings.Repeat("s", 300), "sub"},
	} {
		code, _, body := get(c.query)
		if code != 400 || !strings.Contains(body, c.says) || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s; want 400 naming %s", c.query, code, body, c.says)
		}
	}

	w := request(t, h, "GET", AdminStatusPath, "Bearer t", "")
	var st AdminStatus
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &st) != nil ||
		st != (AdminStatus{Version: idx.Version(), Ready: false, Entries: 26, Cutoffs: 2}) {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	ready = true
	w = request(t, h, "GET", AdminStatusPath, "Bearer t", "")
	if json.Unmarshal(w.Body.Bytes(), &st) != nil || !st.Ready {
		t.Fatalf("status when ready: %s", w.Body)
	}
}
