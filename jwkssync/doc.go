// Package jwkssync keeps a remote JWKS (jwt.remote_jwks) in shared data and turns it, with
// the configuration's inline keys, into the verifier's key set on every worker VM.
//
// It follows blocklistsync's design: one VM at a time holds a lease in shared data and
// fetches the JWKS through proxy_http_call on its tick; it checks every key as strictly as an
// inline JWKS (jwtverify.NewKeySet, key by key) and publishes the keys it accepts under the
// prefix, beside a small generation record. Every VM reads that record on its tick and reads
// and rebuilds the key set only when it names another build. The request path never parses a
// JWKS and never calls the host for it: a token that names a key this VM does not hold asks,
// through a flag the next tick writes into the lease record, for an early fetch, at most once
// per MissGap for the whole proxy.
//
// The last good key set is kept on every failure. Until a first one arrives, tokens the
// inline keys cannot verify follow fail_mode (see Verdict). docs/jwks.md says it all for
// operators.
package jwkssync
