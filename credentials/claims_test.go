package credentials

import (
	"encoding/base64"
	"slices"
	"testing"
)

// TestPeekClaims: every string or number value of a named claim is collected, whatever the
// others; objects, arrays, booleans and null are not values a claim entry can name.
func TestPeekClaims(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"jti":"j","sid":"s-1","org":"acme","sid":"s-2","nested":{"sid":"inner"},"org":7,"s\u0069d":"s-3","sid":true,"sid":null,"sid":["a"],"sid":{"x":"y"}}`))
	var p Peeked
	p.PeekClaims(payload, []string{"sid", "org"})
	if got := p.Claims[0].v[:p.Claims[0].n]; !slices.Equal(got, []string{"s-1", "s-2", "s-3"}) {
		t.Errorf("sid values = %q; want every top-level one, escapes decoded", got)
	}
	if got := p.Claims[1].v[:p.Claims[1].n]; !slices.Equal(got, []string{"acme", "7"}) {
		t.Errorf("org values = %q; want the string and the number's text", got)
	}
	if p.JTI.n != 1 || p.JTI.v[0] != "j" {
		t.Errorf("jti = %q", p.JTI.v[:p.JTI.n])
	}
	p.Peek(payload)
	if p.Claims[0].n != 0 {
		t.Error("Peek without names collected claims")
	}
}
