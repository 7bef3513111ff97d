// Package credentials finds the tokens a request carries, in two ways that must not be
// confused.
//
// Discovery (Scan's Candidates) is for revocation. It does not try to parse the request the
// way any one application framework does; it looks for a superset of what any framework
// might accept. Every credential-bearing part of the request (every Authorization header and
// the configured header, every cookie, the whole request target with its query, and a JSON or
// form body when bodies are inspected) is read raw and in each of its decoded forms
// (percent-decoding once and twice, cookie backslash and octal escapes, JSON string escapes),
// and every run of characters that can appear in a JWS compact token ([A-Za-z0-9-_+/=.]) is
// cut at its dots. A JWT's payload is always a whole interior segment of such a run: the
// header and payload are signed byte for byte, so an attacker holding a revoked token can
// wrap it, quote it, pad or garble its signature, or surround it with any whitespace an app
// splits on, but cannot touch the bytes between its first and last dot. Each interior
// segment (and, for runs of more than three segments, the span between the first and last
// dot, which is what PyJWT decodes) is a candidate payload; Peek decodes it as leniently as
// PyJWT does. A revoked jti in ANY candidate denies the request, whichever token the
// application would have picked and whether or not its signature checks out. Parser
// differentials between the proxy and the app therefore cannot turn a revoked token into
// an admitted one.
//
// Selection (Scan's Access and Refresh) is for validation. It reproduces exactly what
// flask-jwt-extended (4.4, werkzeug 2.2) reads for an access-token route and for a
// refresh-token route, in the configured location order, with flask's messages for a
// missing or malformed credential. Where the app could read a request differently from this
// package (a repeated credential with different values, a name that only matches after
// trimming, percent-decoding or case folding, control or non-ASCII bytes inside a credential,
// several Cookie headers), selection refuses to guess: Scan reports the request as
// Ambiguous, and the filter answers 422.
//
// A Scanner is reused by one VM for every request and allocates nothing once its buffers
// have grown to the largest request seen (known.go's copies of token header values included:
// a value seen again is found by comparing it, which gives what reading it gave); the strings
// it returns are valid until the next Scan.
package credentials
