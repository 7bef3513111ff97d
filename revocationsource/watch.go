package revocationsource

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Long poll defaults (docs/feed.md, "Long poll").
const (
	// DefaultMaxWait caps the wait a client may ask for. It stays below the
	// idle timeouts of the proxies a long poll commonly crosses (Envoy's
	// default stream idle timeout is 5 minutes, many load balancers 60 s).
	DefaultMaxWait = 30 * time.Second
	// DefaultMaxWatchers bounds the requests held at once. Past it a long
	// poll is answered at once, as a normal poll: never queued.
	DefaultMaxWatchers = 10_000
	// maxWaitParam bounds the wait parameter's text.
	maxWaitParam = 32
)

// ErrBadWait is wrapped by the errors of ParseWait.
var ErrBadWait = errors.New("bad wait parameter")

// ParseWait reads the wait query parameter: a Go duration ("25s", "1m30s",
// "500ms") or plain decimal seconds ("25"), as Consul's blocking queries and
// Kubernetes' timeoutSeconds take them. "" and "0" mean no wait.
func ParseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > maxWaitParam {
		return 0, fmt.Errorf("%w: wait is longer than %d bytes", ErrBadWait, maxWaitParam)
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%w: wait=%q: want a duration such as 25s or 1m, or whole seconds such as 25", ErrBadWait, s)
	}
	return d, nil
}

// holdFor is how long a request asking for wait is held: at most the cap,
// and a random amount up to a sixteenth less, so that watchers that started
// together (after one change, or a restart) do not all come back in the same
// instant, and so that the answer always comes before the client's own
// deadline of wait.
func (s *Server) holdFor(wait time.Duration) time.Duration {
	limit := s.MaxWait
	switch {
	case limit == 0:
		limit = DefaultMaxWait
	case limit < 0:
		return 0
	}
	d := min(wait, limit)
	if d <= 0 {
		return 0
	}
	if j := int64(d / 16); j > 0 {
		d -= time.Duration(rand.Int64N(j + 1))
	}
	return d
}

// clientAt reports whether the client of r already holds version v: a long
// poll waits only while it does. since must be v when it is sent, and
// If-None-Match must match v when it is sent; a request with neither holds
// nothing to wait on.
func clientAt(r *http.Request, since string, v string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" && since == "" {
		return false
	}
	if since != "" && since != v {
		return false
	}
	return inm == "" || etagMatches(inm, v)
}

// Drain answers every held long poll at once (304, as at the end of its
// wait) and makes later long polls answer at once, so that a graceful
// shutdown is not held up by watchers. Handler registers nothing by itself:
// call Drain from http.Server.RegisterOnShutdown.
func (s *Server) Drain() {
	s.init()
	s.drainOnce.Do(func() { close(s.draining) })
}

// Watchers is the number of long polls held now.
func (s *Server) Watchers() int { return int(s.watchers.Load()) }

// holdResult says why a held request ended.
type holdResult int

const (
	holdChanged holdResult = iota // the list moved away from the client's version
	holdTimeout                   // the wait ended (or the server drains)
	holdGone                      // the client went away
)

// hold waits, in the request's own goroutine, until the list is no longer
// at the client's version, the wait ends, the server drains or the client
// goes away. It costs one timer and no work while nothing changes: the
// index closes a channel on each change. held is the client's version, the
// one a 304 must name: the list may move on between the timer firing and
// the answer, and a 304 naming the newer version would make the client skip
// that change.
func (s *Server) hold(r *http.Request, since string, d time.Duration) (res holdResult, held string) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		v, changed := s.Index.Watch()
		if !clientAt(r, since, v) {
			return holdChanged, ""
		}
		select {
		case <-changed:
			// Loop: a change and its undoing (revoke, then unrevoke) bring
			// the list back to the client's version; keep waiting then.
		case <-t.C:
			return holdTimeout, v
		case <-s.draining:
			return holdTimeout, v
		case <-r.Context().Done():
			return holdGone, ""
		}
	}
}

// extendDeadlines keeps the connection's deadlines from cutting a held
// request. net/http arms the read deadline (ReadTimeout) when it reads the
// request and leaves it armed while the handler runs: when it fires, the
// connection's background read fails and cancels the request's context. The
// write deadline (WriteTimeout) runs from the same moment. So the read
// deadline is lifted (the request has no body left to read), and the write
// deadline moved to the end of the hold plus the server's WriteTimeout, the
// time it gives any answer to be written. A ResponseWriter that cannot do
// this (a wrapper without Unwrap) keeps the server's deadlines.
func extendDeadlines(w http.ResponseWriter, r *http.Request, d time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	if hs, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && hs.WriteTimeout > 0 {
		_ = rc.SetWriteDeadline(time.Now().Add(d + hs.WriteTimeout))
	}
}

// tryHold takes a watcher slot and holds the request. ok is false when the
// request is not held at all (over the bound, draining, long poll off).
func (s *Server) tryHold(w http.ResponseWriter, r *http.Request, since string, wait time.Duration) (res holdResult, held string, ok bool) {
	d := s.holdFor(wait)
	if d <= 0 {
		return 0, "", false
	}
	select {
	case <-s.draining:
		return 0, "", false
	default:
	}
	limit := int64(s.MaxWatchers)
	if limit == 0 {
		limit = DefaultMaxWatchers
	}
	if limit < 0 {
		return 0, "", false
	}
	if n := s.watchers.Add(1); n > limit {
		s.watchers.Add(-1)
		if s.Metrics != nil {
			s.Metrics.WatchOverflows.Inc()
		}
		return 0, "", false
	}
	if s.Metrics != nil {
		s.Metrics.Watchers.Inc()
		defer s.Metrics.Watchers.Dec()
	}
	defer s.watchers.Add(-1)
	extendDeadlines(w, r, d)
	res, held = s.hold(r, since, d)
	return res, held, true
}
