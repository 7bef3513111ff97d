package revocationsource

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// AdminStatusPath answers the source's state to the admin token.
const AdminStatusPath = "/v1/admin/status"

// Paging of GET /v1/admin/revocations.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// maxCursorBytes bounds a cursor: a claim, a jti, value or sub, and an
	// iss, encoded.
	maxCursorBytes = 2048
)

// AdminList is one page of GET /v1/admin/revocations: items in the feed's
// shapes, in the snapshot's order (jti entries by jti then iss, claim
// entries by claim, value and iss, then cutoffs by sub then iss).
// NextCursor, when set, asks for the page after this one.
type AdminList struct {
	Version    string       `json:"version"`
	Entries    []WireEntry  `json:"entries"`
	Cutoffs    []WireCutoff `json:"cutoffs"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// AdminStatus is the answer of GET /v1/admin/status.
type AdminStatus struct {
	Version  string `json:"version"`
	Ready    bool   `json:"ready"`
	Entries  int    `json:"entries"` // jti and claim entries
	Claims   int    `json:"claims"`  // how many of the entries are claim entries
	Cutoffs  int    `json:"cutoffs"`
	Held     int    `json:"held"`     // entries and cutoffs gone from the store, served until exp + grace
	Watchers int    `json:"watchers"` // long polls held now
}

// listParams are the query parameters GET /v1/admin/revocations takes;
// anything else is a 400, so that a typo does not list everything.
var listParams = map[string]bool{"limit": true, "cursor": true, "jti_prefix": true, "claim": true, "value": true,
	"sub": true, "iss": true, "only": true}

// parseListQuery reads the list request. Its errors name the parameter.
func parseListQuery(r *http.Request) (f ListFilter, after *ListPos, limit int, err error) {
	q := r.URL.Query()
	for k, v := range q {
		if !listParams[k] {
			return f, nil, 0, fmt.Errorf("%w: unknown parameter %q; use limit, cursor, jti_prefix, claim, value, sub, iss, only", errBadRequest, k)
		}
		if len(v) > 1 {
			return f, nil, 0, fmt.Errorf("%w: parameter %q given %d times", errBadRequest, k, len(v))
		}
	}
	limit = DefaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			return f, nil, 0, fmt.Errorf("%w: limit=%q: want a whole number from 1 to %d", errBadRequest, s, MaxListLimit)
		}
		limit = n
	}
	f = ListFilter{Entries: true, Cutoffs: true, JTIPrefix: q.Get("jti_prefix"), Claim: q.Get("claim"), Value: q.Get("value"), Sub: q.Get("sub")}
	switch only := q.Get("only"); only {
	case "":
	case "entries":
		f.Cutoffs = false
	case "cutoffs":
		f.Entries = false
	default:
		return f, nil, 0, fmt.Errorf("%w: only=%q: want entries or cutoffs", errBadRequest, only)
	}
	if q.Has("iss") {
		iss := q.Get("iss")
		f.Iss = &iss
	}
	switch {
	case len(f.JTIPrefix) > MaxIDBytes, len(f.Sub) > MaxIDBytes, len(f.Value) > MaxIDBytes, f.Iss != nil && len(*f.Iss) > MaxIssBytes:
		return f, nil, 0, fmt.Errorf("%w: jti_prefix, value and sub are at most %d bytes, iss %d", errBadRequest, MaxIDBytes, MaxIssBytes)
	case q.Has("claim") && !ValidClaimName(f.Claim):
		return f, nil, 0, fmt.Errorf("%w: claim=%.70q: want a claim name of 1-%d bytes of visible ASCII, not jti, sub, iss or iat", errBadRequest, f.Claim, MaxClaimBytes)
	case f.Value != "" && f.Claim == "":
		return f, nil, 0, fmt.Errorf("%w: value selects a claim entry: give claim too", errBadRequest)
	case countSet(f.JTIPrefix != "", f.Claim != "", f.Sub != "") > 1:
		return f, nil, 0, fmt.Errorf("%w: jti_prefix selects jti entries, claim claim entries and sub cutoffs: give one", errBadRequest)
	case (f.JTIPrefix != "" || f.Claim != "") && !f.Entries, f.Sub != "" && !f.Cutoffs:
		return f, nil, 0, fmt.Errorf("%w: only=%s leaves out what jti_prefix, claim or sub select", errBadRequest, q.Get("only"))
	}
	if c := q.Get("cursor"); c != "" {
		pos, err := decodeCursor(c)
		if err != nil {
			return f, nil, 0, err
		}
		after = &pos
	}
	return f, after, limit, nil
}

func countSet(b ...bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// A cursor is the position of the last item of a page: base64url of the JSON
// array [kind, id, iss], or ["k", id, iss, claim] for a claim entry. Opaque
// to clients, but a position and not a snapshot: it stays valid across
// changes and restarts.
func encodeCursor(p ListPos) string {
	parts := []string{"e", p.ID, p.Iss}
	switch {
	case p.Cutoff:
		parts[0] = "c"
	case p.Claim != "":
		parts = []string{"k", p.ID, p.Iss, p.Claim}
	}
	b, _ := json.Marshal(parts)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (ListPos, error) {
	bad := fmt.Errorf("%w: cursor=%.40q is not a cursor this API returned", errBadRequest, s)
	if len(s) > maxCursorBytes {
		return ListPos{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ListPos{}, bad
	}
	var parts []string
	if json.Unmarshal(b, &parts) != nil {
		return ListPos{}, bad
	}
	switch {
	case len(parts) == 3 && (parts[0] == "e" || parts[0] == "c"):
		return ListPos{Cutoff: parts[0] == "c", ID: parts[1], Iss: parts[2]}, nil
	case len(parts) == 4 && parts[0] == "k" && parts[3] != "":
		return ListPos{Claim: parts[3], ID: parts[1], Iss: parts[2]}, nil
	}
	return ListPos{}, bad
}

func (s *Server) adminList(r *http.Request) (int, any, error) {
	f, after, limit, err := parseListQuery(r)
	if err != nil {
		return http.StatusBadRequest, nil, err
	}
	version, entries, cutoffs, more := s.Index.List(f, after, limit)
	page := AdminList{Version: version, Entries: make([]WireEntry, 0, len(entries)), Cutoffs: make([]WireCutoff, 0, len(cutoffs))}
	for _, e := range entries {
		page.Entries = append(page.Entries, e.Wire())
	}
	for _, c := range cutoffs {
		page.Cutoffs = append(page.Cutoffs, WireCutoff{Sub: c.Sub, Iss: c.Iss, RevokedBefore: c.RevokedBefore, Exp: c.Exp})
	}
	if more {
		var last ListPos
		if n := len(cutoffs); n > 0 {
			last = ListPos{Cutoff: true, ID: cutoffs[n-1].Sub, Iss: cutoffs[n-1].Iss}
		} else {
			e := entries[len(entries)-1]
			last = ListPos{Claim: e.Claim, ID: e.JTI, Iss: e.Iss}
		}
		page.NextCursor = encodeCursor(last)
	}
	return http.StatusOK, page, nil
}

func (s *Server) adminStatus(*http.Request) (int, any, error) {
	entries, cutoffs := s.Index.Len()
	he, hc := s.Index.Held()
	return http.StatusOK, AdminStatus{
		Version: s.Index.Version(), Ready: s.Ready == nil || s.Ready(),
		Entries: entries, Claims: s.Index.Claims(), Cutoffs: cutoffs, Held: he + hc, Watchers: s.Watchers(),
	}, nil
}

// adminRead guards a read-only admin endpoint and writes its JSON answer.
func (s *Server) adminRead(next func(*http.Request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.adminAuthorized(w, r) {
			return
		}
		code, v, err := next(r)
		if err != nil {
			s.adminReply(w, r, code, "", err)
			return
		}
		if s.Metrics != nil {
			s.Metrics.AdminRequests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
}
