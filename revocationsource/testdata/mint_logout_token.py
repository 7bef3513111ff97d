"""A stand-in for an OpenID provider, to try revocation-source's back-channel
logout endpoint without one (docs/revocation-source.md runs it): prints a
logout token (OpenID Connect Back-Channel Logout 1.0 §2.4) signed with PyJWT,
and writes the provider's JWK Set for --backchannel-jwks-file.

The RSA key is kept in --key (created on first use, mode 0600), so that the
tokens of several runs verify with one JWKS. Needs Debian's python3-jwt and
python3-cryptography.
"""
import argparse
import json
import os
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--iss", required=True, help="the provider's issuer")
p.add_argument("--aud", required=True, help="the relying party's client_id")
p.add_argument("--sid", help="the session logged out")
p.add_argument("--sub", help="the subject logged out (without --sid: all its sessions)")
p.add_argument("--key", default="op-key.pem", help="the provider's private key (PEM)")
p.add_argument("--jwks", default="op-jwks.json", help="where to write the provider's JWK Set")
a = p.parse_args()
if not a.sid and not a.sub:
    p.error("give --sid or --sub (or both)")

if os.path.exists(a.key):
    with open(a.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
else:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fd = os.open(a.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update(kid="op-1", use="sig", alg="RS256")
with open(a.jwks, "w") as f:
    json.dump({"keys": [jwk]}, f)

now = int(time.time())
claims = {"iss": a.iss, "aud": a.aud, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4()),
          "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
if a.sid:
    claims["sid"] = a.sid
if a.sub:
    claims["sub"] = a.sub
print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "op-1", "typ": "logout+jwt"}))
