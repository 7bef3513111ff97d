package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// LocalResponse is a reply the module sent with proxy_send_local_response,
// or the 503 Envoy sends for a stream on a failed VM.
type LocalResponse struct {
	Status     uint32
	Body       []byte
	Headers    Pairs
	Details    string // response code details, e.g. "wasm_fail_stream"
	GRPCStatus int32  // -1 = none
}

// Stream is one HTTP stream through the filter on one VM: an HTTP context
// created with proxy_on_context_create(id, root). Its methods drive the
// callbacks in the order Envoy calls them; each runs under the VM lock.
type Stream struct {
	vm *VM
	id uint32

	// State below is guarded by vm.mu.
	reqHeaders, reqTrailers, respHeaders, respTrailers       Pairs
	hasReqHeaders, hasReqTrailers, hasRespHdrs, hasRespTrail bool
	reqBody, respBody                                        []byte
	hasReqBody, hasRespBody                                  bool
	pendingLocal                                             *LocalResponse // sent during the running callback
	local                                                    *LocalResponse // took effect
	continued                                                []StreamType
	closedByModule                                           bool
	bufferingReqBody                                         bool  // the last proxy_on_request_body paused: keep the chunks
	vmFailure                                                error // the VM failed before or during this stream
	ended                                                    bool
}

// NewStream creates an HTTP context on VM vm (AnyVM for round robin). If the
// VM has failed, the stream is created without calling the module and every
// callback behaves as Envoy's failed-VM path.
func (h *Harness) NewStream(ctx context.Context, vm int) (*Stream, error) {
	v, err := h.pickVM(vm)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s := &Stream{vm: v}
	if v.failed != nil {
		s.failVM(v.failed)
		return s, nil
	}
	s.id = v.nextCtxID
	v.nextCtxID++
	v.streams[s.id] = s
	if _, err := v.call(ctx, exportContextCreate, s.id, uint64(s.id), rootContextID); err != nil {
		s.failVM(err)
	}
	return s, nil
}

// failVM applies Envoy's behaviour for a stream whose VM failed: 503
// wasm_fail_stream, or nothing with fail-open.
func (s *Stream) failVM(err error) {
	if s.vmFailure == nil {
		s.vmFailure = err
	}
	delete(s.vm.streams, s.id)
	if !s.vm.h.cfg.failOpen && s.local == nil {
		s.local = &LocalResponse{Status: 503, Details: "wasm_fail_stream", GRPCStatus: 14}
	}
}

// ID returns the stream's context id (0 if the VM had failed before it).
func (s *Stream) ID() uint32 { return s.id }

// VM returns the index of the stream's VM.
func (s *Stream) VM() int { return s.vm.index }

// run calls a stream callback and applies what Envoy applies when it returns.
func (s *Stream) run(ctx context.Context, name string, args ...uint64) (Action, error) {
	v := s.vm
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.ended {
		return 0, fmt.Errorf("%w: %s after end of stream", ErrStreamState, name)
	}
	if v.closed {
		return 0, fmt.Errorf("%w: %s", ErrClosed, name)
	}
	if s.vmFailure != nil || v.failed != nil {
		if s.vmFailure == nil {
			s.failVM(v.failed)
		}
		if v.h.cfg.failOpen {
			return ActionContinue, nil
		}
		return ActionPause, nil
	}
	if s.local != nil {
		// Envoy stops the filter chain once a local reply is sent.
		return ActionPause, nil
	}
	// The context id first, then the callback's arguments, without an allocation per call.
	var a [4]uint64
	all := append(a[:0], uint64(s.id))
	all = append(all, args...)
	res, err := v.call(ctx, name, s.id, all...)
	if errors.Is(err, errNotExported) {
		return ActionContinue, nil
	}
	if err != nil {
		s.pendingLocal = nil
		s.failVM(err)
		if v.h.cfg.failOpen {
			return ActionContinue, nil
		}
		return ActionPause, nil
	}
	if s.pendingLocal != nil {
		s.local, s.pendingLocal = s.pendingLocal, nil
	}
	return Action(uint32(res)), nil
}

func boolArg(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RequestHeaders delivers request headers (as Envoy presents them, see
// RequestHeadersFor) to proxy_on_request_headers(id, count, end_of_stream).
func (s *Stream) RequestHeaders(ctx context.Context, headers Pairs, endOfStream bool) (Action, error) {
	s.vm.mu.Lock()
	s.reqHeaders, s.hasReqHeaders = lowerKeys(headers), true
	s.vm.mu.Unlock()
	return s.run(ctx, "proxy_on_request_headers", uint64(len(headers)), boolArg(endOfStream))
}

// RequestBody delivers a request body chunk to proxy_on_request_body. As in
// Envoy, a callback that answers Pause (StopIterationAndBuffer) makes the host
// buffer: the next call's buffer (type 0) holds every chunk so far and its size
// argument is their total; Continue passes the buffer on, and the next chunk
// starts a new one.
func (s *Stream) RequestBody(ctx context.Context, body []byte, endOfStream bool) (Action, error) {
	s.vm.mu.Lock()
	if s.bufferingReqBody {
		s.reqBody = append(s.reqBody, body...)
	} else {
		s.reqBody = clone(body)
	}
	s.hasReqBody = true
	n := len(s.reqBody)
	s.vm.mu.Unlock()
	act, err := s.run(ctx, "proxy_on_request_body", uint64(n), boolArg(endOfStream))
	s.vm.mu.Lock()
	s.bufferingReqBody = err == nil && act == ActionPause && s.local == nil
	s.vm.mu.Unlock()
	return act, err
}

// RequestTrailers delivers request trailers to proxy_on_request_trailers.
func (s *Stream) RequestTrailers(ctx context.Context, trailers Pairs) (Action, error) {
	s.vm.mu.Lock()
	s.reqTrailers, s.hasReqTrailers = lowerKeys(trailers), true
	s.vm.mu.Unlock()
	return s.run(ctx, "proxy_on_request_trailers", uint64(len(trailers)))
}

// ResponseHeaders delivers response headers to proxy_on_response_headers.
func (s *Stream) ResponseHeaders(ctx context.Context, headers Pairs, endOfStream bool) (Action, error) {
	s.vm.mu.Lock()
	s.respHeaders, s.hasRespHdrs = lowerKeys(headers), true
	s.vm.mu.Unlock()
	return s.run(ctx, "proxy_on_response_headers", uint64(len(headers)), boolArg(endOfStream))
}

// ResponseBody delivers a response body chunk to proxy_on_response_body.
func (s *Stream) ResponseBody(ctx context.Context, body []byte, endOfStream bool) (Action, error) {
	s.vm.mu.Lock()
	s.respBody, s.hasRespBody = clone(body), true
	s.vm.mu.Unlock()
	return s.run(ctx, "proxy_on_response_body", uint64(len(body)), boolArg(endOfStream))
}

// End finishes the stream as Envoy does: proxy_on_done, proxy_on_log, then
// proxy_on_delete. It is a no-op on a stream whose VM failed, and returns
// ErrClosed after the harness was closed.
func (s *Stream) End(ctx context.Context) error {
	v := s.vm
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	if v.closed {
		return ErrClosed
	}
	if s.vmFailure != nil || v.failed != nil {
		if s.vmFailure == nil {
			s.failVM(v.failed)
		}
		return nil
	}
	defer delete(v.streams, s.id)
	for _, name := range []string{"proxy_on_done", "proxy_on_log", "proxy_on_delete"} {
		if _, err := v.call(ctx, name, s.id, uint64(s.id)); err != nil && !errors.Is(err, errNotExported) {
			s.vmFailure = err
			return nil
		}
	}
	return nil
}

// LocalResponse returns the local reply, if one took effect.
func (s *Stream) LocalResponse() *LocalResponse {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.local
}

// RequestHeadersNow returns the request headers after the module's mutations.
func (s *Stream) RequestHeadersNow() Pairs {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.reqHeaders.clone()
}

// ResponseHeadersNow returns the response headers after the module's mutations.
func (s *Stream) ResponseHeadersNow() Pairs {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.respHeaders.clone()
}

// Continued returns the stream types the module resumed with
// proxy_continue_stream, in order.
func (s *Stream) Continued() []StreamType {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return append([]StreamType(nil), s.continued...)
}

// VMFailure returns the trap that failed this stream's VM, if any.
func (s *Stream) VMFailure() error {
	s.vm.mu.Lock()
	defer s.vm.mu.Unlock()
	return s.vmFailure
}

// Request describes a downstream request for Harness.Do.
type Request struct {
	Method    string // default GET
	Path      string // default /
	Authority string // default example.com
	Scheme    string // default http
	Headers   Pairs  // regular headers; names are lower-cased
	Body      []byte // nil: headers end the stream
	// BodyChunks, if set instead of Body, arrive one proxy_on_request_body
	// each, the last with end_of_stream.
	BodyChunks [][]byte
	VM         int // VM index, or AnyVM (the zero value is VM 0)
}

// Chunks returns the request body as the chunks a host delivers: BodyChunks,
// or Body as one chunk, or none.
func (r Request) Chunks() [][]byte {
	if r.BodyChunks != nil {
		return r.BodyChunks
	}
	if r.Body != nil {
		return [][]byte{r.Body}
	}
	return nil
}

// Result is what happened to a request run with Harness.Do.
type Result struct {
	VM             int
	ContextID      uint32
	Action         Action         // of the last callback called
	LocalResponse  *LocalResponse // nil if the request went upstream
	RequestHeaders Pairs          // after the module's mutations
	VMFailure      error          // the VM failed before or during the request
}

// String renders the result without header values, which may carry tokens.
func (r *Result) String() string {
	if r == nil {
		return "<nil>"
	}
	names := make([]string, len(r.RequestHeaders))
	for i, kv := range r.RequestHeaders {
		names[i] = kv[0]
	}
	local := "none"
	if lr := r.LocalResponse; lr != nil {
		local = fmt.Sprintf("%d %q body=%dB", lr.Status, lr.Details, len(lr.Body))
	}
	return fmt.Sprintf("vm=%d ctx=%d action=%v local=%s headers=%v vm_failure=%v",
		r.VM, r.ContextID, r.Action, local, names, r.VMFailure)
}

// RequestHeadersFor builds request headers the way Envoy's HTTP connection
// manager hands them to filters: pseudo-headers first (:authority, :path,
// :method, :scheme), regular headers lower-cased, Host folded into
// :authority, then x-forwarded-proto and x-request-id added if absent.
func RequestHeadersFor(r Request) Pairs {
	method, path, auth, scheme := r.Method, r.Path, r.Authority, r.Scheme
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	if scheme == "" {
		scheme = "http"
	}
	var rest Pairs
	for _, kv := range r.Headers {
		k := strings.ToLower(kv[0])
		if k == "host" {
			if auth == "" {
				auth = kv[1]
			}
			continue
		}
		rest = append(rest, [2]string{k, kv[1]})
	}
	if auth == "" {
		auth = "example.com"
	}
	out := Pairs{{":authority", auth}, {":path", path}, {":method", method}, {":scheme", scheme}}
	out = append(out, rest...)
	if _, ok := out.Get("x-forwarded-proto"); !ok {
		out = append(out, [2]string{"x-forwarded-proto", scheme})
	}
	if _, ok := out.Get("x-request-id"); !ok {
		var id [16]byte
		_, _ = rand.Read(id[:])
		out = append(out, [2]string{"x-request-id", hex.EncodeToString(id[:])})
	}
	return out
}

// Do runs one request through the filter: a new stream on r.VM, request
// headers (end of stream unless a body is set), the body chunks if the module
// let the headers continue (each, until a local reply), then End. A paused
// request is ended too; use NewStream to hold a stream open across callouts.
func (h *Harness) Do(ctx context.Context, r Request) (*Result, error) {
	s, err := h.NewStream(ctx, r.VM)
	if err != nil {
		return nil, err
	}
	chunks := r.Chunks()
	act, err := s.RequestHeaders(ctx, RequestHeadersFor(r), len(chunks) == 0)
	if err != nil {
		return nil, err
	}
	if act == ActionContinue {
		for i, c := range chunks {
			if s.LocalResponse() != nil {
				break
			}
			if act, err = s.RequestBody(ctx, c, i == len(chunks)-1); err != nil {
				return nil, err
			}
		}
	}
	if err := s.End(ctx); err != nil {
		return nil, err
	}
	return &Result{
		VM:             s.VM(),
		ContextID:      s.ID(),
		Action:         act,
		LocalResponse:  s.LocalResponse(),
		RequestHeaders: s.RequestHeadersNow(),
		VMFailure:      s.VMFailure(),
	}, nil
}

// mayHaveUpper is false for a name strings.ToLower returns unchanged without looking further:
// ASCII without upper case. The test runs on every request of the benchmarks, where
// strings.ToLower's own scan cost 110 ns for seven names.
func mayHaveUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// lowerKeys is p with lower-case names, as Envoy's header maps hold them.
func lowerKeys(p Pairs) Pairs {
	for i, kv := range p {
		if mayHaveUpper(kv[0]) && strings.ToLower(kv[0]) != kv[0] {
			out := make(Pairs, len(p))
			copy(out, p[:i])
			for j := i; j < len(p); j++ {
				out[j] = [2]string{strings.ToLower(p[j][0]), p[j][1]}
			}
			return out
		}
	}
	// Already lower case, as an HTTP/2 or Envoy header map is: the caller's pairs, capacity
	// clipped so that a header the module adds goes into a new array, never into the caller's.
	// Nothing writes a map's pairs in place (Pairs' add, replace and remove make new slices).
	return p[:len(p):len(p)]
}
