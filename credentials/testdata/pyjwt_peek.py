"""Reference for Peek: what PyJWT (Debian's python3-jwt) reads from a payload segment.

Reads JSON lines {"payload": str} and writes {"ok": bool, "claims": {...}} with the jti, sub,
iss and iat members PyJWT's decode would hand to the application (json.loads keeps the last of
repeated names), or ok=false when PyJWT cannot decode the segment to a JSON object.
"""
import json
import sys

from jwt.utils import base64url_decode

for line in sys.stdin:
    seg = json.loads(line)["payload"].encode("latin-1")
    out = {"ok": False}
    try:
        claims = json.loads(base64url_decode(seg))
        if isinstance(claims, dict):
            out = {"ok": True, "claims": {}}
            for k in ("jti", "sub", "iss", "iat"):
                if k in claims:
                    v = claims[k]
                    if isinstance(v, bool) or v is None:
                        continue
                    if isinstance(v, float) and k != "iat":
                        continue  # a float identifier: no issuer makes one (docs: Peek keeps the JSON text)
                    if isinstance(v, (int, float, str)):
                        out["claims"][k] = v
    except Exception:
        pass
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
