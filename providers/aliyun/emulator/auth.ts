/**
 * Checks who signed a request and that it is fresh: ACS3-HMAC-SHA256 when an `Authorization: ACS3-...` header is
 * present, else the legacy query signature. Requests older or newer than 15 minutes, and reused nonces, are refused.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { errors } from './api-errors.js';
import {
  ACS3_ALGORITHM, acs3CanonicalRequest, acs3Signature, acs3StringToSign, parseAcs3Authorization, rpcSignature, rpcStringToSign,
  sameSignature, sha256Hex,
} from './signature.js';

/** [unverified] the real gateway's window; 15 minutes is the value commonly quoted. */
const WINDOW_MS = 15 * 60_000;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export interface SignedRequest {
  method: string;
  path: string;
  query: [string, string][];
  /** Form body parameters (legacy clients may send them), already decoded. */
  form: [string, string][];
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Caller {
  accessKeyId: string;
  algorithm: 'ACS3-HMAC-SHA256' | 'HMAC-SHA1';
}

export class Authenticator {
  private readonly nonces = new Map<string, number>();

  constructor(private readonly secrets: ReadonlyMap<string, string>) {}

  verify(req: SignedRequest, now = Date.now()): Caller {
    const authorization = headerValue(req.headers, 'authorization');
    return authorization?.startsWith('ACS3-') ? this.acs3(req, authorization, now) : this.legacy(req, now);
  }

  private acs3(req: SignedRequest, authorization: string, now: number): Caller {
    const auth = parseAcs3Authorization(authorization);
    if (!auth) throw errors.incompleteSignature('The Authorization header is malformed.');
    if (auth.algorithm !== ACS3_ALGORITHM) throw errors.badSignatureMethod();
    const secret = this.secrets.get(auth.accessKeyId);
    if (secret === undefined) throw errors.accessKeyNotFound();
    for (const h of ['host', 'x-acs-date', 'x-acs-signature-nonce']) {
      if (!auth.signedHeaders.includes(h)) throw errors.incompleteSignature(`The header ${h} must be signed.`);
    }
    this.checkTime(headerValue(req.headers, 'x-acs-date'), now);
    const declared = headerValue(req.headers, 'x-acs-content-sha256');
    const canonical = acs3CanonicalRequest({
      method: req.method,
      path: req.path,
      query: req.query,
      headers: req.headers,
      signedHeaders: auth.signedHeaders,
      payloadHash: declared ?? sha256Hex(req.body),
    });
    const stringToSign = acs3StringToSign(canonical);
    if (!sameSignature(acs3Signature(secret, stringToSign), auth.signature)) throw errors.signatureMismatch(stringToSign);
    if (declared !== undefined && declared !== sha256Hex(req.body)) throw errors.signatureMismatch(stringToSign);
    this.useNonce(auth.accessKeyId, headerValue(req.headers, 'x-acs-signature-nonce'), now);
    return { accessKeyId: auth.accessKeyId, algorithm: 'ACS3-HMAC-SHA256' };
  }

  private legacy(req: SignedRequest, now: number): Caller {
    const params = [...req.query, ...req.form];
    const get = (k: string) => params.find(([n]) => n === k)?.[1];
    const signature = get('Signature');
    if (signature === undefined) throw errors.missingSignature();
    const accessKeyId = get('AccessKeyId');
    if (!accessKeyId) throw errors.missingAccessKeyId();
    const secret = this.secrets.get(accessKeyId);
    if (secret === undefined) throw errors.accessKeyNotFound();
    if ((get('SignatureMethod') ?? 'HMAC-SHA1') !== 'HMAC-SHA1') throw errors.badSignatureMethod();
    if ((get('SignatureVersion') ?? '1.0') !== '1.0') throw errors.badSignatureVersion();
    this.checkTime(get('Timestamp'), now);
    const stringToSign = rpcStringToSign(req.method, params);
    if (!sameSignature(rpcSignature(secret, stringToSign), signature)) throw errors.signatureMismatch(stringToSign);
    this.useNonce(accessKeyId, get('SignatureNonce'), now);
    return { accessKeyId, algorithm: 'HMAC-SHA1' };
  }

  private checkTime(value: string | undefined, now: number): void {
    if (value === undefined || !TIMESTAMP.test(value)) throw errors.timestampMalformed();
    const t = Date.parse(value);
    if (Number.isNaN(t)) throw errors.timestampMalformed();
    if (Math.abs(now - t) > WINDOW_MS) throw errors.timestampExpired();
  }

  private useNonce(accessKeyId: string, nonce: string | undefined, now: number): void {
    if (!nonce) throw errors.missingNonce();
    const key = `${accessKeyId}\0${nonce}`;
    const until = this.nonces.get(key);
    if (until !== undefined && until > now) throw errors.nonceUsed();
    this.nonces.set(key, now + 2 * WINDOW_MS);
    if (this.nonces.size > 10_000) for (const [k, t] of this.nonces) if (t <= now) this.nonces.delete(k);
  }
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}
