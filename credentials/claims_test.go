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

// TestPeekClaimsNumberForms: a whole number written another way is also its integer text
// (the entry "7" holds for 7.0, 7e0, 70E-1), and a value that is not a number (Python's
// -Infinity) is passed over without losing the members after it.
func TestPeekClaimsNumberForms(t *testing.T) {
	for _, tt := range []struct {
		json string
		want []string
	}{
		{`{"f":7}`, []string{"7"}},
		{`{"f":7.0}`, []string{"7.0", "7"}},
		{`{"f":7e0}`, []string{"7e0", "7"}},
		{`{"f":70E-1}`, []string{"70E-1", "7"}},
		{`{"f":7.5}`, []string{"7.5"}},
		{`{"f":"7.0"}`, []string{"7.0"}},
		{`{"f":-Infinity,"g":1,"f":"s-out"}`, []string{"s-out"}},
		{`{"f":NaN,"f":"x"}`, []string{"x"}},
	} {
		var p Peeked
		p.PeekClaims(base64.RawURLEncoding.EncodeToString([]byte(tt.json)), []string{"f"})
		if got := p.Claims[0].v[:p.Claims[0].n]; !slices.Equal(got, tt.want) {
			t.Errorf("%s: f = %q; want %q", tt.json, got, tt.want)
		}
	}
	var p Peeked
	p.PeekClaims(base64.RawURLEncoding.EncodeToString([]byte(`{"iat":-Infinity,"jti":"after"}`)), nil)
	if p.JTI.n != 1 || p.JTI.v[0] != "after" || !p.IatUnreadable {
		t.Errorf("after -Infinity: jti %q, iat unreadable %v; want the jti read and the iat unreadable", p.JTI.v[:p.JTI.n], p.IatUnreadable)
	}
}
