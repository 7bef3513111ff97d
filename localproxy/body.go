package localproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/jtiguard/jtiguard/harness"
)

var (
	// errPausedForever: the filter paused and the stream has nothing left to resume it. Envoy
	// would wait for proxy_continue_stream, which this stand-in does not model.
	errPausedForever = errors.New("filter paused the request without a local reply")
	// errTruncated: the client sent fewer body bytes than its Content-Length.
	errTruncated = errors.New("request body shorter than its content-length")
	// errStopped is what the upstream request's body returns once the filter stopped it.
	errStopped = errors.New("localproxy: the filter stopped the request body")
)

// payloadTooLarge is Envoy's local reply when a buffering filter's body passes the buffer
// limit (FilterManager: Code::PayloadTooLarge, details request_payload_too_large).
var payloadTooLarge = &harness.LocalResponse{
	Status: http.StatusRequestEntityTooLarge, Body: []byte("Payload Too Large"),
	Headers: harness.Pairs{{"content-type", "text/plain"}}, Details: "request_payload_too_large", GRPCStatus: -1,
}

// feederKey carries a request's bodyFeeder to the reverse proxy's ErrorHandler.
type feederKey struct{}

// bodyFeeder hands a request body to proxy_on_request_body the way Envoy's wasm filter
// sees it, and is the body the upstream reads:
//   - chunks of at most chunk bytes; end_of_stream on the last one (with a Content-Length),
//     or on an empty call after the last chunk (chunked encoding, as Envoy's HTTP/1 codec);
//   - while the filter answers Pause (StopIterationAndBuffer) the chunks accumulate, each
//     call sees the whole buffer, and nothing of it goes upstream;
//   - Continue releases the buffer upstream; the next call sees only the next chunk;
//   - a buffer past limit, or a local reply, stops the body for good.
type bodyFeeder struct {
	ctx       context.Context
	s         *harness.Stream
	src       io.Reader
	remaining int64 // bytes of a Content-Length body still unread; -1: unknown length
	limit     int64
	chunk     int

	// Only the goroutine reading the body touches these.
	buffered []byte // held while the filter pauses
	out      []byte // released, not yet read upstream
	eos      bool   // end_of_stream was delivered

	mu   sync.Mutex // guards stop, which the ErrorHandler reads from another goroutine
	stop *harness.LocalResponse
}

// untilReleased runs body callbacks until the filter lets a first part of the body go (or
// all of an empty-ending body), sends a local reply, or the buffer passes the limit.
func (f *bodyFeeder) untilReleased() error {
	for !f.eos && len(f.out) == 0 && !f.stopped() {
		if err := f.step(); err != nil {
			return err
		}
	}
	return nil
}

// step reads one chunk from the client and delivers it to the filter.
func (f *bodyFeeder) step() error {
	n := max(f.chunk, 1)
	if f.remaining >= 0 && f.remaining < int64(n) {
		n = int(f.remaining)
	}
	buf := make([]byte, n)
	got, err := io.ReadFull(f.src, buf)
	buf = buf[:got]
	eos := false
	switch {
	case f.remaining >= 0:
		if got < n {
			return fmt.Errorf("%w: %w", errTruncated, err)
		}
		f.remaining -= int64(got)
		eos = f.remaining == 0
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		eos = true
	default:
		return fmt.Errorf("read request body: %w", err)
	}
	f.buffered = append(f.buffered, buf...)
	if int64(len(f.buffered)) > f.limit {
		f.setStop(payloadTooLarge)
		return nil
	}
	// The harness buffers what the filter paused on, as Envoy does: it gets the new bytes only.
	act, err := f.s.RequestBody(f.ctx, buf, eos)
	if err != nil {
		return err
	}
	f.eos = eos
	if lr := f.s.LocalResponse(); lr != nil {
		f.setStop(lr)
		return nil
	}
	if act == harness.ActionContinue {
		f.out, f.buffered = append(f.out, f.buffered...), nil
		return nil
	}
	if eos {
		return errPausedForever
	}
	return nil
}

// Read implements io.Reader for the upstream request: released bytes, then further chunks
// through the filter. A stopped body fails the upstream request (Envoy resets it).
func (f *bodyFeeder) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.stopped() {
			return 0, errStopped
		}
		if f.eos {
			return 0, io.EOF
		}
		if err := f.step(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// Close implements io.Closer; the server closes the client's body itself.
func (f *bodyFeeder) Close() error { return nil }

func (f *bodyFeeder) setStop(lr *harness.LocalResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop == nil {
		f.stop = lr
	}
}

func (f *bodyFeeder) stopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stop != nil
}

func (f *bodyFeeder) status() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.stop.Status)
}

func (f *bodyFeeder) details() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stop.Details
}

// answer writes the reply that stopped the body.
func (f *bodyFeeder) answer(w http.ResponseWriter) {
	f.mu.Lock()
	lr := f.stop
	f.mu.Unlock()
	writeLocal(w, lr)
}
