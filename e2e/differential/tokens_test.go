package differential

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A token is named by a placeholder in the shapes, so shapes can be printed without a token:
//
//	R   revoked: its jti is on the list
//	D   a valid decoy (not revoked)
//	Rc  revoked by its subject's cutoff (string sub, issued before the cutoff)
//	Ri  revoked by its subject's cutoff, integer sub (identity=user.id)
//	Rj  revoked jti, integer sub
//
// Each exists as an access and a refresh token; a shape on the /refresh route gets the
// refresh ones.
var tokenNames = []string{"R", "D", "Rc", "Ri", "Rj"}

type tokenSpec struct {
	name     string
	jti      string
	identity any
	iatAgo   time.Duration
}

// revokedList is what the suite publishes: the revoked jtis and subject cutoffs.
type revokedList struct {
	jtis    map[string]bool
	cutoffs map[string]int64 // sub (decimal for integers) → tokens issued before are revoked
}

// tokens holds the minted tokens by kind ("access", "refresh") and name, and the jti of
// each, to name what the app authenticated.
type tokens struct {
	byKind map[string]map[string]string
	names  map[string]string // jti → "R (access)" ...
	list   revokedList
}

func specs(kind string) []tokenSpec {
	return []tokenSpec{
		{"R", "rev-" + kind, "alice", 5 * time.Second},
		{"D", "ok-" + kind, "alice", 5 * time.Second},
		{"Rc", "cut-" + kind, "mallory", 10 * time.Minute},
		{"Ri", "intcut-" + kind, 4242, 10 * time.Minute},
		{"Rj", "revint-" + kind, 7, 5 * time.Second},
	}
}

// mintTokens mints every token with the app's own functions. Each is re-minted (with a
// nonce claim) until its signature holds both '-' and '_', so that the standard-alphabet
// spelling changes both and every run classifies it alike.
func mintTokens(ctx context.Context, a *app, now time.Time) (*tokens, error) {
	ts := &tokens{byKind: map[string]map[string]string{}, names: map[string]string{},
		list: revokedList{jtis: map[string]bool{}, cutoffs: map[string]int64{
			"mallory": now.Add(-time.Minute).Unix(),
			"4242":    now.Add(-time.Minute).Unix(),
		}}}
	for _, kind := range []string{"access", "refresh"} {
		ts.byKind[kind] = map[string]string{}
		for _, s := range specs(kind) {
			var tok string
			for nonce := 0; ; nonce++ {
				t, err := a.mint(ctx, kind, s.identity, map[string]any{"jti": s.jti,
					"iat": now.Add(-s.iatAgo).Unix(), "exp": now.Add(time.Hour).Unix(), "n": nonce})
				if err != nil {
					return nil, err
				}
				if sig := t[strings.LastIndexByte(t, '.')+1:]; strings.Contains(sig, "-") && strings.Contains(sig, "_") {
					tok = t
					break
				}
				if nonce > 500 {
					return nil, fmt.Errorf("no signature with both - and _ after 500 tries")
				}
			}
			ts.byKind[kind][s.name] = tok
			ts.names[s.jti] = s.name + " (" + kind + ")"
			if s.name == "R" || s.name == "Rj" {
				ts.list.jtis[s.jti] = true
			}
		}
	}
	return ts, nil
}

// revoked reports whether the app authenticated a token the list revokes.
func (l revokedList) revoked(jti, sub string, iat int64) bool {
	if l.jtis[jti] {
		return true
	}
	before, ok := l.cutoffs[sub]
	return ok && iat < before
}

var placeholder = regexp.MustCompile(`\{(R|D|Rc|Ri|Rj)(?:\|([a-z0-9]+))?\}`)

// materialize replaces the placeholders of s with the tokens of kind, spelled as asked.
func (ts *tokens) materialize(s, kind string) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		return spell(ts.byKind[kind][sub[1]], sub[2])
	})
}

// spellings: other writings of a token that some parser may read as the same token. Those
// touching only the signature segment keep it valid for PyJWT, whose base64 decoding adds
// missing padding and drops characters outside the alphabet; Go's strict decoding refuses
// them. The rest are encodings of a location (cookie quoting, percent-encoding, JSON
// escapes) that the app's parser undoes.
var spellings = map[string]string{
	"":        "as issued",
	"pad1":    "signature + '='",
	"pad2":    "signature + '=='",
	"std":     "signature in the standard alphabet (+ /)",
	"stdpct":  "signature in the standard alphabet, percent-encoded (%2B %2F)",
	"junk":    "'*' and '!' inside the signature",
	"sp":      "signature + a space",
	"nl":      "signature + a newline",
	"u2000":   "signature + U+2000 (UTF-8)",
	"q20":     "signature + %20",
	"qu2000":  "signature + %E2%80%80",
	"q0a":     "signature + %0A",
	"pct":     "every byte percent-encoded",
	"pctdot":  "dots percent-encoded",
	"qoct":    "quoted, one character as an octal escape",
	"qbs":     "quoted, one character backslash-escaped",
	"jsonesc": "dots as \\u002e",
	"lower":   "lower-cased (not a token)",
}

func spell(tok, how string) string {
	dot := strings.LastIndexByte(tok, '.')
	head, sig := tok[:dot+1], tok[dot+1:]
	switch how {
	case "":
		return tok
	case "pad1":
		return tok + "="
	case "pad2":
		return tok + "=="
	case "std":
		return head + strings.NewReplacer("-", "+", "_", "/").Replace(sig)
	case "stdpct":
		return head + strings.NewReplacer("-", "%2B", "_", "%2F").Replace(sig)
	case "junk":
		return head + sig[:10] + "*" + sig[10:20] + "!" + sig[20:]
	case "sp":
		return tok + " "
	case "nl":
		return tok + "\n"
	case "u2000":
		return tok + "\u2000"
	case "q20":
		return tok + "%20"
	case "qu2000":
		return tok + "%E2%80%80"
	case "q0a":
		return tok + "%0A"
	case "pct":
		var b strings.Builder
		for i := 0; i < len(tok); i++ {
			fmt.Fprintf(&b, "%%%02X", tok[i])
		}
		return b.String()
	case "pctdot":
		return strings.ReplaceAll(tok, ".", "%2E")
	case "qoct":
		return `"` + tok[:5] + `\` + strconv.FormatInt(int64(tok[5]), 8) + tok[6:] + `"`
	case "qbs":
		return `"` + tok[:5] + `\` + tok[5:] + `"`
	case "jsonesc":
		return strings.ReplaceAll(tok, ".", `\u002e`)
	case "lower":
		return strings.ToLower(tok)
	}
	panic("unknown spelling " + how)
}
