// Mints JWTs with jose (npm) for auth/interop_test.go, so that the Go
// verifier is tested against tokens that golang-jwt did not sign.
//
// The request is JSON, read from the first argument or else from stdin:
//
//   {
//     "hmacSecret": "at least 32 bytes, UTF-8",
//     "claims": {"iss": "...", "aud": "...", "sub": "...", "exp": "1h"},
//     "tokens": [
//       {"name": "RS256", "alg": "RS256", "kid": "rs256"},
//       {"name": "expired", "alg": "ES256", "kid": "es256", "exp": "-1h", "iat": "-2h"},
//       {"name": "alg none", "alg": "none"}
//     ]
//   }
//
// A token's iss, aud, sub, exp, nbf and iat replace the defaults in claims;
// exp, nbf and iat are jose's relative times ("1h", "-1h") or epoch seconds.
// HS256, HS384 and HS512 are signed with hmacSecret. Every other algorithm is
// signed with a key pair generated for the token's kid, so a kid names one
// key of one algorithm. "none" is an unsecured JWT (jose's UnsecuredJWT),
// whose header holds only the alg.
//
// The response, on stdout, is JSON:
//
//   {
//     "jose": "6.2.18",
//     "node": "v20.20.2",
//     "tokens": {"RS256": "eyJ..."},
//     "keys": [{"kid": "rs256", "alg": "RS256", "spki": "-----BEGIN PUBLIC KEY-----\n..."}]
//   }
//
// keys holds each generated public key as PEM SPKI, from jose's exportSPKI.
// Any error is printed on stderr, and the exit status is 1.

import { readFileSync } from 'node:fs';
import { webcrypto } from 'node:crypto';

// jose 6 uses the global Web Crypto API, which Node.js 18 has only behind a
// flag; Debian 12's nodejs is 18.
if (globalThis.crypto?.subtle === undefined) {
  Object.defineProperty(globalThis, 'crypto', { value: webcrypto, configurable: true });
}
const { SignJWT, UnsecuredJWT, exportSPKI, generateKeyPair } = await import('jose');

const HMAC = new Set(['HS256', 'HS384', 'HS512']);
const ASYMMETRIC = new Set([
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
]);
const MIN_HMAC_SECRET = 32;

/** readRequest returns the parsed request from argv[2] or from stdin. */
function readRequest() {
  const text = process.argv[2] ?? readFileSync(0, 'utf8');
  return JSON.parse(text);
}

/** generateKeys returns a key pair for each kid of an asymmetric token. */
async function generateKeys(tokens) {
  const algs = new Map();
  for (const t of tokens) {
    if (!ASYMMETRIC.has(t.alg)) continue;
    if (typeof t.kid !== 'string' || t.kid === '') {
      throw new Error(`token ${t.name}: ${t.alg} needs a kid`);
    }
    if (algs.has(t.kid) && algs.get(t.kid) !== t.alg) {
      throw new Error(`kid ${t.kid} is used for both ${algs.get(t.kid)} and ${t.alg}`);
    }
    algs.set(t.kid, t.alg);
  }
  const pairs = await Promise.all(
    [...algs].map(async ([kid, alg]) => {
      const options = alg === 'EdDSA' ? { crv: 'Ed25519' } : {};
      return [kid, { alg, ...(await generateKeyPair(alg, options)) }];
    }),
  );
  return new Map(pairs);
}

/** setClaims applies the claims to a SignJWT or UnsecuredJWT builder. */
function setClaims(builder, claims) {
  if (claims.iss !== undefined) builder.setIssuer(claims.iss);
  if (claims.aud !== undefined) builder.setAudience(claims.aud);
  if (claims.sub !== undefined) builder.setSubject(claims.sub);
  if (claims.exp !== undefined) builder.setExpirationTime(claims.exp);
  if (claims.nbf !== undefined) builder.setNotBefore(claims.nbf);
  builder.setIssuedAt(claims.iat);
  return builder;
}

/** mint returns one token, signed as t says. */
async function mint(t, defaults, secret, keys) {
  const claims = { ...defaults };
  for (const name of ['iss', 'aud', 'sub', 'exp', 'nbf', 'iat']) {
    if (t[name] !== undefined) claims[name] = t[name];
  }
  if (t.alg === 'none') {
    return setClaims(new UnsecuredJWT(), claims).encode();
  }
  const header = { alg: t.alg, typ: 'JWT' };
  if (t.kid !== undefined) header.kid = t.kid;
  let key;
  if (HMAC.has(t.alg)) {
    key = secret;
  } else if (ASYMMETRIC.has(t.alg)) {
    key = keys.get(t.kid).privateKey;
  } else {
    throw new Error(`token ${t.name}: unsupported alg ${t.alg}`);
  }
  return setClaims(new SignJWT(), claims).setProtectedHeader(header).sign(key);
}

const request = readRequest();
const tokens = request.tokens ?? [];
const secret = new TextEncoder().encode(request.hmacSecret ?? '');
if (tokens.some((t) => HMAC.has(t.alg)) && secret.length < MIN_HMAC_SECRET) {
  throw new Error(`hmacSecret must be at least ${MIN_HMAC_SECRET} bytes`);
}
const keys = await generateKeys(tokens);
const response = {
  jose: JSON.parse(readFileSync(new URL('./node_modules/jose/package.json', import.meta.url), 'utf8')).version,
  node: process.version,
  tokens: {},
  keys: [],
};
for (const t of tokens) {
  if (typeof t.name !== 'string' || t.name in response.tokens) {
    throw new Error(`token names must be distinct strings: ${JSON.stringify(t.name)}`);
  }
  response.tokens[t.name] = await mint(t, request.claims ?? {}, secret, keys);
}
for (const [kid, { alg, publicKey }] of keys) {
  response.keys.push({ kid, alg, spki: await exportSPKI(publicKey) });
}
process.stdout.write(JSON.stringify(response) + '\n');
