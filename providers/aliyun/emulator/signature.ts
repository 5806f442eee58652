/**
 * The two request signatures of Alibaba Cloud's RPC APIs, computed from what the server received:
 * ACS3-HMAC-SHA256 (header-based, the SDK's default) and the legacy query signature HMAC-SHA1
 * (`SignatureVersion=1.0`, the SDK's `signatureAlgorithm: 'v2'`). Pure functions, no I/O.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** RFC 3986: only A-Z a-z 0-9 - _ . ~ stay literal (encodeURIComponent also spares ! ' ( ) *). */
export function percentEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

/** Query or form text as name/value pairs in arrival order, decoded (`+` is a space, as in forms). */
export function decodePairs(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? '' : part.slice(eq + 1);
    out.push([decodeComponent(k), decodeComponent(v)]);
  }
  return out;
}

function decodeComponent(s: string): string {
  const spaced = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    // A stray '%' is taken literally rather than failing the whole request before it can be answered.
    return spaced;
  }
}

// JS string comparison is UTF-16 code unit order, which is the byte order both algorithms sort by for ASCII keys.
const byKeyThenValue = (a: [string, string], b: [string, string]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0);

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

// ------------------------------------------------------------------------------------------------------------
// ACS3-HMAC-SHA256

export const ACS3_ALGORITHM = 'ACS3-HMAC-SHA256';

export interface Acs3Authorization {
  algorithm: string;
  accessKeyId: string;
  signedHeaders: string[];
  signature: string;
}

/** `ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`; undefined when it is not of that shape. */
export function parseAcs3Authorization(header: string): Acs3Authorization | undefined {
  const m = /^(ACS3-[A-Z0-9-]+)\s+(.*)$/.exec(header.trim());
  if (!m) return undefined;
  const fields = new Map<string, string>();
  for (const part of m[2].split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (!credential || signedHeaders === undefined || !signature) return undefined;
  return {
    algorithm: m[1],
    accessKeyId: credential,
    signedHeaders: signedHeaders.split(';').map((h) => h.trim().toLowerCase()).filter(Boolean),
    signature,
  };
}

export interface Acs3Request {
  method: string;
  /** The path as received, without the query (`/` for RPC APIs). */
  path: string;
  /** Decoded query parameters. */
  query: [string, string][];
  /** Lowercase header name to its value(s) as received. */
  headers: Record<string, string | string[] | undefined>;
  signedHeaders: string[];
  /** Hex SHA-256 of the body, as the client declared it in `x-acs-content-sha256`. */
  payloadHash: string;
}

export function acs3CanonicalRequest(r: Acs3Request): string {
  const uri = (r.path || '/').replace(/\+/g, '%20').replace(/\*/g, '%2A').replace(/%7E/g, '~');
  const query = [...r.query]
    .sort(byKeyThenValue)
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .join('&');
  const names = [...r.signedHeaders].sort();
  const headerLines = names
    .map((name) => {
      const raw = r.headers[name];
      const values = (Array.isArray(raw) ? raw : [raw ?? '']).map((v) => v.trim()).sort();
      return `${name}:${values.join(',')}\n`;
    })
    .join('');
  return [r.method.toUpperCase(), uri, query, headerLines, names.join(';'), r.payloadHash].join('\n');
}

export function acs3StringToSign(canonicalRequest: string): string {
  return `${ACS3_ALGORITHM}\n${sha256Hex(canonicalRequest)}`;
}

export function acs3Signature(secret: string, stringToSign: string): string {
  return createHmac('sha256', secret).update(stringToSign).digest('hex');
}

// ------------------------------------------------------------------------------------------------------------
// Legacy query signature (HMAC-SHA1)

/** Every parameter of the query (and form body) except `Signature`, sorted, percent-encoded twice. */
export function rpcStringToSign(method: string, params: [string, string][]): string {
  const canonical = params
    .filter(([k]) => k !== 'Signature')
    .sort(byKeyThenValue)
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .join('&');
  return `${method.toUpperCase()}&${percentEncode('/')}&${percentEncode(canonical)}`;
}

export function rpcSignature(secret: string, stringToSign: string): string {
  return createHmac('sha1', `${secret}&`).update(stringToSign).digest('base64');
}

/** Constant-time comparison of two signatures as text. */
export function sameSignature(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
