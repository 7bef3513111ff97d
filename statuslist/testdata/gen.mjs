// gen.mjs: the independent side of statuslist's tests. It makes Status List Tokens with the
// npm implementations of draft-ietf-oauth-status-list (@sd-jwt/jwt-status-list and
// @owf/token-status-list, each with its own StatusList class) and signs them with jose, and it
// decodes lists with them, so the Go code is checked against code it shares nothing with.
//
// Usage: node gen.mjs < request.json > response.json
//
// Request: {"make": [case...], "decode": [{"impl", "bits", "lst"}...]}
//   case: {"impl": "sd-jwt" | "owf", "alg": "ES256" | "ES384" | "EdDSA" | "RS256" | "PS256",
//          "bits": 1|2|4|8, "size": n, "set": [[index, status]...] (all others 0),
//          "claims": {sub, iat, exp?, ttl?, ...} (copied into the payload),
//          "header": {...} (merged into the protected header after the library set typ)}
// Response: {"jwks": {"keys": [public JWKs, kid = alg]}, "tokens": [compact JWS...],
//            "decoded": [[status...]...]}
import { createHeaderAndPayload as sdCreate, StatusList as SdList, getListFromStatusListJWT as sdRead } from '@sd-jwt/jwt-status-list';
import { createHeaderAndPayload as owfCreate, StatusList as OwfList, getListFromStatusListJWT as owfRead } from '@owf/token-status-list';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

const impls = {
  'sd-jwt': { List: SdList, create: sdCreate, read: sdRead },
  owf: { List: OwfList, create: owfCreate, read: owfRead },
};

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const keys = {};
async function keyFor(alg) {
  if (!keys[alg]) {
    const opts = alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048, extractable: true } : { extractable: true };
    const { publicKey, privateKey } = await generateKeyPair(alg, opts);
    const jwk = await exportJWK(publicKey);
    keys[alg] = { privateKey, jwk: { ...jwk, kid: alg, alg, use: 'sig' } };
  }
  return keys[alg];
}

const tokens = [];
for (const c of req.make ?? []) {
  const impl = impls[c.impl];
  if (!impl) throw new Error(`unknown impl ${c.impl}`);
  const statuses = new Array(c.size).fill(0);
  for (const [i, v] of c.set ?? []) statuses[i] = v;
  const list = new impl.List(statuses, c.bits);
  const { header, payload } = impl.create(list, { ...c.claims }, { alg: c.alg, kid: c.alg });
  Object.assign(header, c.header ?? {});
  const { privateKey } = await keyFor(c.alg);
  tokens.push(await new SignJWT(payload).setProtectedHeader(header).sign(privateKey));
}

const decoded = [];
for (const d of req.decode ?? []) {
  const impl = impls[d.impl];
  // Both libraries read the list from a JWT's payload; only the payload is looked at.
  const payload = Buffer.from(JSON.stringify({ status_list: { bits: d.bits, lst: d.lst } })).toString('base64url');
  decoded.push(impl.read(`e30.${payload}.`).statusList);
}

process.stdout.write(JSON.stringify({ jwks: { keys: Object.values(keys).map((k) => k.jwk) }, tokens, decoded }));
