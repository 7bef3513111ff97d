package revocationsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// Defaults of JWKSKeys.
const (
	DefaultJWKSMaxAge      = time.Hour
	DefaultJWKSMinInterval = 30 * time.Second
	defaultJWKSMaxBytes    = 1 << 20
)

// JWKSKeys is a KeySource over the OP's JWK Set, in a file or at a URL (its
// jwks_uri). The set is read on first use, read again once it is MaxAge
// old, and at most once per MinInterval when a token names a key it lacks
// (the OP rotated its keys). A failed read keeps the keys held.
type JWKSKeys struct {
	File string // one of File and URL
	URL  string
	// Algorithms the OP may sign logout tokens with; keys for others are
	// left out of the set. RS*, PS*, ES* and EdDSA; HS* needs a shared
	// secret, not a JWKS.
	Algorithms  []string
	Client      *http.Client // nil: a client with a 10 s timeout
	MaxAge      time.Duration
	MinInterval time.Duration
	MaxBytes    int64 // 0: 1 MiB
	Now         func() time.Time

	mu    sync.Mutex
	ks    *jwtverify.KeySet
	at    time.Time // when ks was read
	tried time.Time // the last attempt to read
}

// CheckJWKSAlgorithms reports whether algs can verify logout tokens
// against a JWKS.
func CheckJWKSAlgorithms(algs []string) error {
	if len(algs) == 0 {
		return errors.New("no algorithm")
	}
	for _, a := range algs {
		if _, ok := familyKeys[a]; !ok {
			return fmt.Errorf("%q: want RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA (HS* needs a shared secret, not a JWKS; none is never allowed)", a)
		}
	}
	return nil
}

// familyKeys says which JWK (kty, crv) an algorithm verifies with.
var familyKeys = map[string][2]string{
	"RS256": {"RSA", ""}, "RS384": {"RSA", ""}, "RS512": {"RSA", ""},
	"PS256": {"RSA", ""}, "PS384": {"RSA", ""}, "PS512": {"RSA", ""},
	"ES256": {"EC", "P-256"}, "ES384": {"EC", "P-384"}, "ES512": {"EC", "P-521"},
	"EdDSA": {"OKP", "Ed25519"},
}

func (j *JWKSKeys) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

// KeySet implements KeySource.
func (j *JWKSKeys) KeySet(ctx context.Context) (*jwtverify.KeySet, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	maxAge := j.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultJWKSMaxAge
	}
	if j.ks != nil && j.now().Sub(j.at) < maxAge {
		return j.ks, nil
	}
	if j.ks != nil && j.now().Sub(j.tried) < j.minInterval() {
		return j.ks, nil // a read failed a moment ago: keep the keys held
	}
	if err := j.readLocked(ctx); err != nil && j.ks == nil {
		return nil, err
	}
	return j.ks, nil
}

// Refresh implements KeySource: a new read, unless the last attempt was
// less than MinInterval ago.
func (j *JWKSKeys) Refresh(ctx context.Context) (*jwtverify.KeySet, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.tried.IsZero() && j.now().Sub(j.tried) < j.minInterval() {
		return j.ks, false, nil
	}
	if err := j.readLocked(ctx); err != nil {
		return j.ks, false, err
	}
	return j.ks, true, nil
}

func (j *JWKSKeys) minInterval() time.Duration {
	if j.MinInterval <= 0 {
		return DefaultJWKSMinInterval
	}
	return j.MinInterval
}

func (j *JWKSKeys) readLocked(ctx context.Context) error {
	j.tried = j.now()
	raw, err := j.fetch(ctx)
	if err != nil {
		return err
	}
	ks, err := KeySetFromJWKS(raw, j.Algorithms)
	if err != nil {
		return fmt.Errorf("%s: %w", j.where(), err)
	}
	j.ks, j.at = ks, j.now()
	return nil
}

func (j *JWKSKeys) where() string {
	if j.URL != "" {
		return j.URL
	}
	return j.File
}

func (j *JWKSKeys) fetch(ctx context.Context) ([]byte, error) {
	limit := j.MaxBytes
	if limit <= 0 {
		limit = defaultJWKSMaxBytes
	}
	var r io.Reader
	if j.URL == "" {
		f, err := os.Open(j.File)
		if err != nil {
			return nil, fmt.Errorf("read the JWKS: %w", err)
		}
		defer f.Close()
		r = f
	} else {
		c := j.Client
		if c == nil {
			c = &http.Client{Timeout: 10 * time.Second}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.URL, nil)
		if err != nil {
			return nil, fmt.Errorf("fetch the JWKS: %w", err)
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch the JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch the JWKS from %s: status %d", j.URL, resp.StatusCode)
		}
		r = resp.Body
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read the JWKS from %s: %w", j.where(), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the JWKS at %s is over %d bytes", j.where(), limit)
	}
	return b, nil
}

// KeySetFromJWKS builds the key set of a JWKS for algs. Keys that none of
// algs can use (another key type, an encryption key, an alg pinned to an
// algorithm not allowed) are left out, so an OP's JWKS that also publishes
// keys for other purposes is read; a JWKS with no usable key is an error.
func KeySetFromJWKS(raw []byte, algs []string) (*jwtverify.KeySet, error) {
	if err := CheckJWKSAlgorithms(algs); err != nil {
		return nil, err
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Keys == nil {
		return nil, errors.New(`not a JWKS document: want {"keys": [...]}`)
	}
	var kept []json.RawMessage
	for _, k := range doc.Keys {
		var m struct{ Kty, Crv, Alg, Use string }
		if json.Unmarshal(k, &m) != nil {
			kept = append(kept, k) // jwtverify names what is wrong with it
			continue
		}
		if m.Use != "" && m.Use != "sig" {
			continue
		}
		for _, a := range algs {
			if fk := familyKeys[a]; fk[0] == m.Kty && (fk[1] == "" || fk[1] == m.Crv) && (m.Alg == "" || m.Alg == a) {
				kept = append(kept, k)
				break
			}
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("no key in the JWKS for %s", strings.Join(algs, ", "))
	}
	doc2, _ := json.Marshal(map[string][]json.RawMessage{"keys": kept})
	// Allow only the algorithms some kept key serves: jwtverify refuses an
	// algorithm without a key of its family.
	var usable []string
	for _, a := range algs {
		fk := familyKeys[a]
		for _, k := range kept {
			var m struct{ Kty, Crv, Alg string }
			if json.Unmarshal(k, &m) == nil && fk[0] == m.Kty && (fk[1] == "" || fk[1] == m.Crv) && (m.Alg == "" || m.Alg == a) {
				usable = append(usable, a)
				break
			}
		}
	}
	return jwtverify.NewKeySet(jwtverify.Keys{Algorithms: usable, JWKS: doc2})
}
