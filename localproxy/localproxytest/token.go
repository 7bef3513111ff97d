package localproxytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
)

// HS256 signs claims with secret under the header {"alg":"HS256","typ":"JWT"}. It is
// hand-rolled (a dozen lines) so the helpers depend on nothing but the standard library.
func HS256(secret string, claims map[string]any) string {
	return Sign(secret, map[string]any{"alg": "HS256", "typ": "JWT"}, claims)
}

// Sign encodes header and claims and appends an HMAC-SHA256 signature with secret, whatever
// the header says: tests use it to forge tokens (alg none, wrong key) as an attacker would.
func Sign(secret string, header, claims map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}
