// Package rsatest makes RSA keys that crypto/rsa.GenerateKey does not: a public exponent of
// 3. The benchmarks use one to measure what an RSA verification costs besides its
// exponentiation (see docs/benchmarks.md): the same verification with e = 3 takes 4 modular
// multiplications where e = 65537 takes 19, so the two times give the cost of one
// multiplication and of everything else. For tests and benchmarks only.
package rsatest

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
)

// KeyE3 generates an RSA key of bits bits (a multiple of 2) with public exponent 3.
func KeyE3(bits int) (*rsa.PrivateKey, error) {
	three := big.NewInt(3)
	prime := func() (*big.Int, error) {
		for {
			p, err := rand.Prime(rand.Reader, bits/2)
			if err != nil {
				return nil, err
			}
			// e = 3 must be invertible modulo p-1: p ≢ 1 (mod 3).
			if new(big.Int).Mod(p, three).Int64() == 2 {
				return p, nil
			}
		}
	}
	for range 100 {
		p, err := prime()
		if err != nil {
			return nil, err
		}
		q, err := prime()
		if err != nil {
			return nil, err
		}
		n := new(big.Int).Mul(p, q)
		if p.Cmp(q) == 0 || n.BitLen() != bits {
			continue
		}
		one := big.NewInt(1)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(three, phi)
		if d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 3}, D: d, Primes: []*big.Int{p, q}}
		if err := k.Validate(); err != nil {
			return nil, err
		}
		k.Precompute()
		return k, nil
	}
	return nil, errors.New("rsatest: no key after 100 tries")
}
