package differential

import (
	"strings"
	"testing"
)

// TestCorpus checks the generator itself, without Python: every shape materializes fully
// (no placeholder left, no unknown spelling), its printable name holds no token, names are
// unique, the random shapes are reproducible from their seed, and each token spelling
// differs from the token (so a spelling test tests something).
func TestCorpus(t *testing.T) {
	fake := &tokens{byKind: map[string]map[string]string{}}
	for _, kind := range []string{"access", "refresh"} {
		fake.byKind[kind] = map[string]string{}
		for _, n := range tokenNames {
			fake.byKind[kind][n] = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.ab-cd_ef" + kind + n + "0123456789abcdefghij"
		}
	}
	shapes := append(corpus(), randomShapes(3, 500)...)
	seen := map[string]bool{}
	for _, s := range shapes {
		key := s.Method + " " + s.Route + " " + s.Name
		if seen[key] {
			t.Errorf("two shapes named %q", key)
		}
		seen[key] = true
		if strings.Contains(s.Name, "eyJ") {
			t.Errorf("shape name holds a token: %q", s.Name)
		}
		raw := string(rawRequest(s, "hcqj", fake))
		if strings.Contains(raw, "{R") || strings.Contains(raw, "{D") {
			t.Errorf("%q: a placeholder is left in the request", s.Name)
		}
		if s.Class == "" || s.Route == "" || s.Method == "" {
			t.Errorf("%q: class, route or method missing", s.Name)
		}
	}
	a, b := randomShapes(9, 50), randomShapes(9, 50)
	for i := range a {
		if a[i].Name != b[i].Name || string(rawRequest(a[i], "h", fake)) != string(rawRequest(b[i], "h", fake)) {
			t.Fatalf("random shape %d differs between two runs of one seed", i)
		}
	}
	tok := fake.byKind["access"]["R"]
	for how := range spellings {
		if how != "" && spell(tok, how) == tok {
			t.Errorf("spelling %q leaves the token unchanged", how)
		}
	}
	if len(shapes) < 400 {
		t.Errorf("corpus has %d shapes; the families above make more", len(shapes))
	}
}
