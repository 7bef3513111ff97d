"""Mints OpenID Connect back-channel logout tokens with PyJWT (Debian's
python3-jwt and python3-cryptography), for revocationsource's tests: an
independent implementation of JWS, JWK and the claims, so that the tests do
not check our verifier against tokens it made itself.

Reads {"now": unix, "iss": ..., "aud": ...} on stdin and writes
{"jwks": ..., "rotated_jwks": ..., "tokens": {name: token}}: the OP's JWK Set
(an RSA and a P-256 key), the set after a key rotation (adds k3), and one
token per case of backchannel_test.go.
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

EVENT = "http://schemas.openid.net/event/backchannel-logout"

req = json.load(sys.stdin)
now, iss, aud = req["now"], req["iss"], req["aud"]

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # in the JWKS after rotation


def jwk(alg_cls, key, kid, alg):
    d = json.loads(alg_cls.to_jwk(key.public_key()))
    d.update(kid=kid, use="sig", alg=alg)
    return d


jwks = {"keys": [jwk(RSAAlgorithm, rsa_key, "k1", "RS256"), jwk(ECAlgorithm, ec_key, "k2", "ES256"),
                 # an encryption key, as OPs publish beside their signing keys: never used to verify
                 dict(jwk(RSAAlgorithm, other_rsa, "enc", "RSA-OAEP"), use="enc")]}
rotated_jwks = {"keys": jwks["keys"] + [jwk(RSAAlgorithm, rotated, "k3", "RS256")]}

n = [0]


def claims(**over):
    n[0] += 1
    c = {"iss": iss, "aud": aud, "iat": now, "exp": now + 120, "jti": "logout-%d" % n[0],
         "sid": "sid-%d" % n[0], "events": {EVENT: {}}}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def sign(c, key=rsa_key, alg="RS256", kid="k1", typ="logout+jwt"):
    headers = {"kid": kid, "typ": typ}
    return jwt.encode(c, key, algorithm=alg, headers=headers)


tokens = {
    "sid": sign(claims(sid="08a5019c-17e1-4977-8f42-65a12843ea02", sub="248289761001")),
    "sub only": sign(claims(sid=None, sub="user-17", iat=now - 10)),
    "ES256": sign(claims(sid="sid-es256"), key=ec_key, alg="ES256", kid="k2"),
    "typ JWT": sign(claims(sid="sid-typ-jwt"), typ="JWT"),
    "no typ": sign(claims(sid="sid-no-typ"), typ=None),
    "typ application/logout+jwt": sign(claims(sid="sid-typ-app"), typ="application/logout+jwt"),
    "aud list": sign(claims(sid="sid-aud-list", aud=["other-client", aud])),
    "without exp": sign(claims(sid="sid-no-exp", exp=None)),
    "iat within the leeway ahead": sign(claims(sid="sid-ahead", iat=now + 20)),
    "other claims ignored": sign(claims(sid="sid-extra", extra={"a": [1, 2]}, nbf=now - 5)),
    "replayed": sign(claims(sid="sid-replayed")),
    "rotated key": sign(claims(sid="sid-rotated"), key=rotated, kid="k3"),
    # Refused.
    "bad signature": sign(claims(sid="sid-bad-sig"), key=other_rsa),
    "unknown kid": sign(claims(sid="sid-unknown-kid"), key=other_rsa, kid="nope"),
    "alg none": jwt.encode(claims(sid="sid-none"), None, algorithm="none", headers={"typ": "logout+jwt"}),
    "HS256": jwt.encode(claims(sid="sid-hs"), "a-shared-secret-of-thirty-two-by", algorithm="HS256", headers={"typ": "logout+jwt"}),
    "missing events": sign(claims(sid="sid-no-events", events=None)),
    "events without the logout event": sign(claims(sid="sid-other-event", events={"http://schemas.openid.net/event/other": {}})),
    "events member not an object": sign(claims(sid="sid-event-str", events={EVENT: "yes"})),
    "events not an object": sign(claims(sid="sid-events-list", events=[EVENT])),
    "nonce present": sign(claims(sid="sid-nonce", nonce="n-0S6_WzA2Mj")),
    "wrong aud": sign(claims(sid="sid-wrong-aud", aud="another-client")),
    "missing aud": sign(claims(sid="sid-no-aud", aud=None)),
    "wrong iss": sign(claims(sid="sid-wrong-iss", iss="https://evil.example")),
    "missing iss": sign(claims(sid="sid-no-iss", iss=None)),
    "old iat": sign(claims(sid="sid-old", iat=now - 3600, exp=now + 3600)),
    "iat in the future": sign(claims(sid="sid-future", iat=now + 3600, exp=now + 7200)),
    "missing iat": sign(claims(sid="sid-no-iat", iat=None)),
    "expired": sign(claims(sid="sid-expired", iat=now - 100, exp=now - 60)),
    "missing jti": sign(claims(sid="sid-no-jti", jti=None)),
    "neither sid nor sub": sign(claims(sid=None)),
    "sid not a string": sign(claims(sid=12345)),
    "sub not a string": sign(claims(sid=None, sub=17)),
    "typ at+jwt": sign(claims(sid="sid-at-jwt"), typ="at+jwt"),
}
json.dump({"jwks": jwks, "rotated_jwks": rotated_jwks, "tokens": tokens}, sys.stdout)
