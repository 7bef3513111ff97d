package jwtverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Public keys from PEM, read with encoding/asn1 alone. crypto/x509 would do it in one call,
// but it links net and net/url (for the names in certificates) and doubles the size of the
// module; a verifier needs three small structures of it. The checks follow x509's own
// (ParsePKIXPublicKey, ParsePKCS1PublicKey), and the tests compare the two on keys and
// certificates that crypto/x509 makes.

var (
	oidRSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECDSA      = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidEd25519    = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidCurveP256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384  = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521  = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	asn1NullBytes = []byte{0x05, 0x00}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type subjectPublicKeyInfo struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

type pkcs1PublicKey struct {
	N *big.Int
	E int
}

// certificate is RFC 5280's Certificate up to the subject's key: the rest is not read
// (no chain is built, no name or date is checked, as before).
type certificate struct {
	TBSCertificate struct {
		Version      int `asn1:"optional,explicit,default:0,tag:0"`
		SerialNumber asn1.RawValue
		Signature    asn1.RawValue
		Issuer       asn1.RawValue
		Validity     asn1.RawValue
		Subject      asn1.RawValue
		PublicKey    asn1.RawValue
	}
}

// parsePublicKeyPEM reads one PEM block: PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY" or a
// "CERTIFICATE" (its subject's key).
func parsePublicKeyPEM(text string) (any, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("more than one PEM block: give one key per entry")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return parsePKIX(block.Bytes)
	case "RSA PUBLIC KEY":
		return parsePKCS1(block.Bytes)
	case "CERTIFICATE":
		var cert certificate
		if _, err := asn1.Unmarshal(block.Bytes, &cert); err != nil {
			return nil, fmt.Errorf("not a certificate: %w", err)
		}
		return parsePKIX(cert.TBSCertificate.PublicKey.FullBytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key (private keys do not belong in a proxy)", block.Type)
	}
}

// parsePKIX reads a SubjectPublicKeyInfo (RFC 5280 4.1.2.7).
func parsePKIX(der []byte) (any, error) {
	var spki subjectPublicKeyInfo
	rest, err := asn1.Unmarshal(der, &spki)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the public key")
	}
	params := spki.Algorithm.Parameters.FullBytes
	data := spki.PublicKey.RightAlign()
	switch oid := spki.Algorithm.Algorithm; {
	case oid.Equal(oidRSA):
		// RFC 3279 2.3.1: the parameters are NULL.
		if !bytes.Equal(params, asn1NullBytes) {
			return nil, errors.New("RSA key missing NULL parameters")
		}
		return parsePKCS1(data)
	case oid.Equal(oidECDSA):
		var curveOID asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(params, &curveOID)
		if err != nil || len(rest) != 0 {
			return nil, errors.New("invalid ECDSA parameters: want a named curve")
		}
		var curve elliptic.Curve
		switch {
		case curveOID.Equal(oidCurveP256):
			curve = elliptic.P256()
		case curveOID.Equal(oidCurveP384):
			curve = elliptic.P384()
		case curveOID.Equal(oidCurveP521):
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported elliptic curve %s", curveOID)
		}
		// Refuses points that are not on the curve (invalid-curve attacks).
		k, err := ecdsa.ParseUncompressedPublicKey(curve, data)
		if err != nil {
			return nil, errors.New("EC point is not an uncompressed point on the curve")
		}
		return k, nil
	case oid.Equal(oidEd25519):
		// RFC 8410 3: the parameters are absent.
		if len(params) != 0 {
			return nil, errors.New("Ed25519 key encoded with illegal parameters")
		}
		if len(data) != ed25519.PublicKeySize {
			return nil, errors.New("wrong Ed25519 public key size")
		}
		return ed25519.PublicKey(bytes.Clone(data)), nil
	default:
		return nil, fmt.Errorf("unsupported public key algorithm %s", oid)
	}
}

// parsePKCS1 reads an RSAPublicKey (RFC 8017 A.1.1).
func parsePKCS1(der []byte) (*rsa.PublicKey, error) {
	var k pkcs1PublicKey
	rest, err := asn1.Unmarshal(der, &k)
	if err != nil {
		return nil, fmt.Errorf("not an RSA public key: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the RSA public key")
	}
	if k.N.Sign() <= 0 || k.E <= 0 {
		return nil, errors.New("RSA public key contains zero or negative value")
	}
	if k.E > 1<<31-1 {
		return nil, errors.New("RSA public key contains large public exponent")
	}
	return &rsa.PublicKey{N: k.N, E: k.E}, nil
}
