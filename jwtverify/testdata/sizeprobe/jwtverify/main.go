// Command jwtverify is a size probe: a module that configures keys from JSON and verifies a
// token with package jwtverify, and nothing else (docs/verifier.md, "Module size").
package main

import (
	"encoding/json"
	"os"

	"github.com/jtiguard/jtiguard/jwtverify"
)

type config struct {
	Algorithms []string        `json:"algorithms"`
	Secret     string          `json:"secret"`
	PEM        []string        `json:"pem"`
	JWKS       json.RawMessage `json:"jwks"`
	Audiences  []string        `json:"audiences"`
}

func main() {}

// init does what the filter does with keys and tokens; the input comes from the environment so
// the linker keeps every path.
func init() {
	var cfg config
	if err := json.Unmarshal([]byte(os.Getenv("JWT_CONFIG")), &cfg); err != nil {
		println(err.Error())
		return
	}
	keys := jwtverify.Keys{Algorithms: cfg.Algorithms, JWKS: cfg.JWKS}
	if cfg.Secret != "" {
		keys.HMAC = []jwtverify.HMACKey{{Secret: []byte(cfg.Secret)}}
	}
	for _, p := range cfg.PEM {
		keys.PEM = append(keys.PEM, jwtverify.PEMKey{PEM: p})
	}
	ks, err := jwtverify.NewKeySet(keys)
	if err != nil {
		println(err.Error())
		return
	}
	v, err := jwtverify.New(ks, jwtverify.Options{Audiences: cfg.Audiences})
	if err != nil {
		println(err.Error())
		return
	}
	var c jwtverify.Claims
	err = v.Verify(os.Getenv("TOKEN"), &c)
	println(err == nil, string(c.JTI), string(c.Sub), c.ValidUntil.Unix())
}
