package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// calloutReply is what proxy_on_http_call_response can read: map types 6
// and 7 and buffer type 4.
type calloutReply struct {
	headers, trailers Pairs
	body              []byte
}

// HTTPCallRecord describes one proxy_http_call, for tests.
type HTTPCallRecord struct {
	VM             int    // VM that dispatched it and got the reply
	Token          uint32 // call id returned to the module
	Cluster        string
	Address        string // host:port the cluster resolved to
	Headers        Pairs  // as the module sent them
	Body           []byte
	Timeout        time.Duration // 0 = none
	ResponseStatus int           // 0 if no HTTP response (reset, refused, timeout)
	Err            error         // transport error, if any
	Delivered      bool          // proxy_on_http_call_response was called
}

// proxyHTTPCall is proxy_http_call(upstream_data, upstream_size,
// headers_data, headers_size, body_data, body_size, trailers_data,
// trailers_size, timeout_milliseconds, return_callout_id) -> status.
//
// upstream is a cluster name, resolved through WithClusters; unknown →
// BAD_ARGUMENT. headers must hold :method, :path and :authority, else
// BAD_ARGUMENT. The request is sent for real (HTTP/1.1, Host = :authority)
// and the reply is delivered later to proxy_on_http_call_response on the
// root context of the same VM, under its lock. timeout 0 means none.
//
//	headers_data ──► serialised header map (see encodePairs)
//	return_callout_id ──► [u32 token]
func proxyHTTPCall(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	cluster, ok1 := readString(mod, u32(stack[0]), u32(stack[1]))
	hdrs, ok2 := read(mod, u32(stack[2]), u32(stack[3]))
	body, ok3 := read(mod, u32(stack[4]), u32(stack[5]))
	_, ok4 := read(mod, u32(stack[6]), u32(stack[7]))
	timeout := time.Duration(u32(stack[8])) * time.Millisecond
	tokenPtr := u32(stack[9])
	if !ok1 || !ok2 || !ok3 || !ok4 || !writeU32(mod, tokenPtr, 0) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	headers, _ := decodePairs(hdrs)
	addr, known := v.h.cfg.clusters[cluster]
	if !known {
		v.h.hostLog(v.index, LogDebug, "proxy_http_call: unknown cluster %q", cluster)
		ret(stack, StatusBadArgument)
		return
	}
	method, okM := headers.Get(":method")
	path, okP := headers.Get(":path")
	authority, okA := headers.Get(":authority")
	if !okM || !okP || !okA || method == "" || path == "" || authority == "" {
		ret(stack, StatusBadArgument)
		return
	}
	if v.h.closed.Load() {
		ret(stack, StatusInternalFailure)
		return
	}
	token := v.nextCallID
	v.nextCallID++
	if v.nextCallID == 0 {
		v.nextCallID = 1
	}
	writeU32(mod, tokenPtr, token)

	rec := HTTPCallRecord{VM: v.index, Token: token, Cluster: cluster, Address: addr,
		Headers: headers.clone(), Body: body, Timeout: timeout}
	v.h.callsMu.Lock()
	idx := len(v.h.calls)
	v.h.calls = append(v.h.calls, rec)
	v.h.callsMu.Unlock()

	v.h.inflight.Add(1)
	v.h.bg.Add(1)
	go func() {
		defer v.h.bg.Done()
		defer v.h.inflight.Add(-1)
		reply, status, err := v.h.doCallout(addr, method, path, authority, headers, body, timeout)
		v.deliver(idx, token, reply, status, err)
	}()
	ret(stack, StatusOK)
}

// doCallout sends the request and turns the outcome into what Envoy hands
// the module.
func (h *Harness) doCallout(addr, method, path, authority string, headers Pairs, body []byte, timeout time.Duration) (*calloutReply, int, error) {
	ctx := h.bgCtx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return h.calloutFailure(err, false), 0, err
	}
	req.Host = authority
	for _, kv := range headers {
		if strings.HasPrefix(kv[0], ":") {
			continue
		}
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return h.calloutFailure(err, errors.Is(err, context.DeadlineExceeded)), 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.maxCalloutBody))
	if err != nil {
		// Headers arrived but the body broke: Envoy resets the call.
		return h.calloutFailure(err, errors.Is(err, context.DeadlineExceeded)), resp.StatusCode, err
	}
	reply := &calloutReply{body: data}
	reply.headers = append(reply.headers, [2]string{":status", strconv.Itoa(resp.StatusCode)})
	for k, vals := range resp.Header {
		for _, val := range vals {
			reply.headers = append(reply.headers, [2]string{strings.ToLower(k), val})
		}
	}
	for k, vals := range resp.Trailer {
		for _, val := range vals {
			reply.trailers = append(reply.trailers, [2]string{strings.ToLower(k), val})
		}
	}
	return reply, resp.StatusCode, nil
}

// calloutFailure builds the reply for a call without an HTTP response.
func (h *Harness) calloutFailure(err error, timedOut bool) *calloutReply {
	if h.cfg.calloutFailure != CalloutFailureRouterReply {
		return &calloutReply{}
	}
	status, body := "503", "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	if timedOut {
		status, body = "504", "upstream request timeout"
	}
	_ = err
	return &calloutReply{
		headers: Pairs{{":status", status}, {"content-length", strconv.Itoa(len(body))}, {"content-type", "text/plain"}},
		body:    []byte(body),
	}
}

// deliver calls proxy_on_http_call_response(root, token, n_headers,
// body_size, n_trailers) on the VM that made the call, under its lock.
func (v *VM) deliver(idx int, token uint32, reply *calloutReply, status int, callErr error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delivered := false
	if v.failed == nil && !v.h.closed.Load() {
		v.callout = reply
		_, err := v.call(v.h.bgCtx, "proxy_on_http_call_response", rootContextID,
			rootContextID, uint64(token), uint64(len(reply.headers)), uint64(len(reply.body)), uint64(len(reply.trailers)))
		v.callout = nil
		delivered = err == nil || !errors.Is(err, errNotExported)
	}
	v.h.callsMu.Lock()
	r := &v.h.calls[idx]
	r.ResponseStatus, r.Err, r.Delivered = status, callErr, delivered
	v.h.callsMu.Unlock()
}

// String renders a record without header values (they may hold tokens).
func (r HTTPCallRecord) String() string {
	names := make([]string, 0, len(r.Headers))
	for _, kv := range r.Headers {
		names = append(names, kv[0])
	}
	return fmt.Sprintf("vm=%d token=%d cluster=%q headers=%v status=%d err=%v delivered=%v",
		r.VM, r.Token, r.Cluster, names, r.ResponseStatus, r.Err, r.Delivered)
}
