// Package adminclient talks to a running revocation source's admin API
// (docs/revocation-source.md, "Admin API"): revoke and unrevoke, list by
// pages, status. It is what `revocation-source revoke|unrevoke|list|status`
// uses, and it tells a refusal by the server (APIError) from a server that
// could not be reached (ErrUnreachable), so that scripts can tell them apart.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnreachable wraps every failure to get an HTTP answer: a refused
	// connection, a DNS failure, a timeout, a reset.
	ErrUnreachable = errors.New("revocation source unreachable")
	// ErrBadURL is returned for a base URL that cannot be used.
	ErrBadURL = errors.New("bad URL")
)

// APIError is an answer other than 200: the server (or something in front
// of it) said no.
type APIError struct {
	Status  int
	Message string // the server's "error" member, or the start of the body
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("answered %d: %s", e.Status, msg)
}

// maxAnswer bounds what the client reads: a list page of 1000 items is
// well under 1 MiB.
const maxAnswer = 4 << 20

// Client is one source's admin API.
type Client struct {
	// BaseURL is the source, e.g. http://127.0.0.1:8081.
	BaseURL string
	// Token is the admin bearer token.
	Token string
	// HTTP is the client used (nil: http.DefaultClient).
	HTTP *http.Client
	// Timeout bounds each request (0: 10 s).
	Timeout time.Duration
}

// ListQuery selects a page of List. The zero value is the first page of
// everything, DefaultListLimit items.
type ListQuery struct {
	Limit     int
	Cursor    string
	JTIPrefix string
	Sub       string
	Iss       *string // nil: any issuer; "": no issuer
	Only      string  // "", "entries" or "cutoffs"
}

// Revoke revokes a jti (req.JTI) or adds a subject cutoff (req.Sub) and
// returns the list's new version.
func (c *Client) Revoke(ctx context.Context, req rs.AdminRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	var out struct {
		Version string `json:"version"`
	}
	err = c.do(ctx, http.MethodPost, rs.AdminPath, nil, body, &out)
	return out.Version, versioned(err, out.Version)
}

// Unrevoke removes a jti's revocation or a subject's cutoff (req.JTI or
// req.Sub, with req.Iss) and returns the list's new version.
func (c *Client) Unrevoke(ctx context.Context, req rs.AdminRequest) (string, error) {
	q := url.Values{}
	if req.JTI != "" {
		q.Set("jti", req.JTI)
	}
	if req.Sub != "" {
		q.Set("sub", req.Sub)
	}
	if req.Iss != "" {
		q.Set("iss", req.Iss)
	}
	var out struct {
		Version string `json:"version"`
	}
	err := c.do(ctx, http.MethodDelete, rs.AdminPath, q, nil, &out)
	return out.Version, versioned(err, out.Version)
}

// List returns one page.
func (c *Client) List(ctx context.Context, lq ListQuery) (rs.AdminList, error) {
	q := url.Values{}
	if lq.Limit > 0 {
		q.Set("limit", strconv.Itoa(lq.Limit))
	}
	for k, v := range map[string]string{"cursor": lq.Cursor, "jti_prefix": lq.JTIPrefix, "sub": lq.Sub, "only": lq.Only} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if lq.Iss != nil {
		q.Set("iss", *lq.Iss)
	}
	var page rs.AdminList
	err := c.do(ctx, http.MethodGet, rs.AdminPath, q, nil, &page)
	return page, versioned(err, page.Version)
}

// Status returns the source's version, counts and readiness.
func (c *Client) Status(ctx context.Context) (rs.AdminStatus, error) {
	var st rs.AdminStatus
	err := c.do(ctx, http.MethodGet, rs.AdminStatusPath, nil, nil, &st)
	return st, versioned(err, st.Version)
}

// versioned refuses a 200 whose JSON lacks the version every admin answer
// carries: something else answered at the URL.
func versioned(err error, version string) error {
	if err == nil && version == "" {
		return &APIError{Status: http.StatusOK, Message: "answer without a version: is the URL a revocation source?"}
	}
	return err
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) error {
	base, err := url.Parse(strings.TrimRight(c.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("%w: %q is not an http:// or https:// URL", ErrBadURL, c.BaseURL)
	}
	u := *base
	u.Path = strings.TrimRight(base.Path, "/") + path
	u.RawQuery = q.Encode()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", ErrUnreachable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &APIError{Status: resp.StatusCode, Message: errorMessage(b)}
	}
	if len(b) > maxAnswer {
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("answer larger than %d bytes", maxAnswer)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &APIError{Status: resp.StatusCode, Message: "answer is not the admin API's JSON (is the URL a revocation source?): " + snippet(b)}
	}
	return nil
}

// errorMessage is the "error" member of a JSON error, or the body's start.
func errorMessage(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	return snippet(b)
}

// snippet is the start of a body, printable, for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
