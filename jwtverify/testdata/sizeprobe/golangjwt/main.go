// Command golangjwt is a size probe: the same work as ../jwtverify with golang-jwt and
// crypto/x509, as the filter does it before jwtverify (docs/verifier.md, "Module size").
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"

	"github.com/golang-jwt/jwt/v5"
)

type config struct {
	Algorithms []string        `json:"algorithms"`
	Secret     string          `json:"secret"`
	PEM        []string        `json:"pem"`
	JWKS       json.RawMessage `json:"jwks"`
	Audiences  []string        `json:"audiences"`
}

type claims struct {
	jwt.RegisteredClaims
	Type *string `json:"type"`
}

func main() {}

func init() {
	var cfg config
	if err := json.Unmarshal([]byte(os.Getenv("JWT_CONFIG")), &cfg); err != nil {
		println(err.Error())
		return
	}
	var keys []jwt.VerificationKey
	if cfg.Secret != "" {
		keys = append(keys, []byte(cfg.Secret))
	}
	for _, p := range cfg.PEM {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			continue
		}
		var k any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				k = cert.PublicKey
			}
		}
		if err != nil {
			println(err.Error())
			return
		}
		keys = append(keys, k)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	_ = json.Unmarshal(cfg.JWKS, &set)
	opts := []jwt.ParserOption{jwt.WithValidMethods(cfg.Algorithms), jwt.WithStrictDecoding(), jwt.WithIssuedAt()}
	if len(cfg.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.Audiences...))
	}
	var c claims
	_, err := jwt.NewParser(opts...).ParseWithClaims(os.Getenv("TOKEN"), &c, func(*jwt.Token) (any, error) {
		return jwt.VerificationKeySet{Keys: keys}, nil
	})
	println(err == nil, c.ID, c.Subject, len(set.Keys))
}
