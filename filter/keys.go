package filter

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// buildKeySet turns the jwt section's keys into a jwtverify.KeySet, which files them by
// family so a token only ever meets keys of its own algorithm's family (no algorithm
// confusion, no "none").
func buildKeySet(j *JWTConfig, getenv func(string) string) (*jwtverify.KeySet, error) {
	keys, errs := inlineKeys(j, getenv)
	ks, err := jwtverify.NewKeySet(keys)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ks, nil
}

// inlineKeys gathers the jwt section's keys, secrets resolved.
func inlineKeys(j *JWTConfig, getenv func(string) string) (jwtverify.Keys, []error) {
	keys := jwtverify.Keys{Algorithms: j.Algorithms, JWKS: j.JWKS}
	var errs []error
	for i, s := range j.HMACSecrets {
		secret, err := s.resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("hmac_secrets[%d]: %w", i, err))
			continue
		}
		keys.HMAC = append(keys.HMAC, jwtverify.HMACKey{KID: s.KID, Secret: secret})
	}
	for _, p := range j.PublicKeys {
		keys.PEM = append(keys.PEM, jwtverify.PEMKey{KID: p.KID, PEM: p.PEM})
	}
	return keys, errs
}

func (s HMACSecret) resolve(getenv func(string) string) ([]byte, error) {
	set := 0
	for _, v := range []string{s.Secret, s.SecretBase64, s.SecretEnv} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("give exactly one of secret, secret_base64, secret_env")
	}
	var secret []byte
	switch {
	case s.Secret != "":
		secret = []byte(s.Secret)
	case s.SecretBase64 != "":
		b, err := base64.StdEncoding.DecodeString(s.SecretBase64)
		if err != nil {
			return nil, fmt.Errorf("secret_base64: %w", err)
		}
		secret = b
	default:
		v := getenv(s.SecretEnv)
		if v == "" {
			return nil, fmt.Errorf("secret_env: environment variable %q is empty or not set in the VM", s.SecretEnv)
		}
		secret = []byte(v)
	}
	if len(secret) == 0 {
		return nil, errors.New("secret is empty")
	}
	return secret, nil
}
