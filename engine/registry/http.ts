/**
 * The registry client's one way onto the wire: node:http(s) with per-registry TLS settings, so `--ca-file`
 * and `--insecure` (plain HTTP) work without a global agent. Network failures that a retry may cure become
 * TransientError; TLS failures become a RegistryError that says which flag to use.
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { RegistryError, TransientError } from '../kernel/errors.js';

export interface TlsOptions {
  /** Extra CA certificates (PEM file) trusted in addition to the system ones. */
  caFile?: string;
  /** Talk plain HTTP: for lab registries without TLS. */
  insecure?: boolean;
}

export type Body = Buffer | string | (() => Readable);

export interface HttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  /** A factory for streams, so the request can be sent again after an auth challenge or a retry. */
  body?: Body;
  timeoutMs?: number;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  url: string;
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_SOCKET']);

export class HttpTransport {
  private readonly agent: http.Agent;
  readonly scheme: 'http' | 'https';

  constructor(readonly registry: string, readonly tls: TlsOptions = {}) {
    this.scheme = tls.insecure ? 'http' : 'https';
    if (this.scheme === 'https') {
      const ca = systemRoots();
      if (tls.caFile) {
        try {
          // Added to, not instead of, the system roots: a private CA must not untrust public registries.
          ca.push(readFileSync(tls.caFile, 'utf8'));
        } catch (err: any) {
          throw new RegistryError('REGISTRY_CA_FILE', `cannot read CA file ${tls.caFile}: ${err?.code ?? err?.message}`, {
            source: 'user',
            hint: 'pass --ca-file with the PEM certificate of the CA that signed the registry certificate',
          });
        }
      }
      this.agent = new https.Agent({ keepAlive: true, ca, maxSockets: 8 });
    } else {
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    }
  }

  baseUrl(): string {
    return `${this.scheme}://${this.registry}`;
  }

  close(): void {
    this.agent.destroy();
  }

  request(req: HttpRequest): Promise<HttpResponse> {
    const url = new URL(req.url);
    const lib = url.protocol === 'https:' ? https : http;
    // Token realms may live on another host or scheme; only our own registry uses our agent.
    const sameOrigin = url.protocol === `${this.scheme}:` && url.host === this.registry;
    const agent = sameOrigin ? this.agent : url.protocol === 'https:' && this.tls.caFile ? this.agent : undefined;
    return new Promise<HttpResponse>((resolve, reject) => {
      const headers: Record<string, string> = { 'User-Agent': 'cloudimage', ...req.headers };
      const body = req.body;
      if (typeof body === 'string' || Buffer.isBuffer(body)) headers['Content-Length'] = String(Buffer.byteLength(body));
      else if (body === undefined && ['PUT', 'POST', 'PATCH'].includes(req.method)) headers['Content-Length'] = '0';
      const r = lib.request(
        url,
        { method: req.method, headers, agent: agent as any, timeout: req.timeoutMs ?? 60_000 },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url: url.toString() }),
      );
      r.on('timeout', () => r.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
      r.on('error', (err) => reject(this.networkError(err, url)));
      if (typeof body === 'function') {
        const src = body();
        src.on('error', (err) => r.destroy(err));
        src.pipe(r);
      } else {
        r.end(body);
      }
    });
  }

  private networkError(err: any, url: URL): Error {
    const code: string = err?.code ?? '';
    if (/wrong version number|packet length too long/i.test(err?.message ?? '')) {
      return new RegistryError('REGISTRY_TLS', `${url.host} did not answer in TLS (it may speak plain HTTP)`, {
        hint: `pass --insecure if ${url.host} is a plain-HTTP lab registry`,
        cause: err,
      });
    }
    if (TLS_CODES.has(code) || /certificate|ssl|tls/i.test(err?.message ?? '')) {
      const hint = this.tls.caFile
        ? `check that ${this.tls.caFile} holds the CA that signed the certificate of ${url.host}`
        : `pass --ca-file with the registry's CA certificate, or --insecure if ${url.host} speaks plain HTTP`;
      const why = String(err?.message ?? code).split('\n')[0];
      return new RegistryError('REGISTRY_TLS', `TLS handshake with ${url.host} failed: ${why}`, { hint, cause: err });
    }
    if (TRANSIENT_CODES.has(code)) return new TransientError('REGISTRY_UNREACHABLE', `cannot reach registry ${url.host}: ${code}`, err);
    return new RegistryError('REGISTRY_UNREACHABLE', `request to ${url.host} failed: ${err?.message ?? code}`, { cause: err });
  }
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];
let systemRootsCache: string[] | undefined;

/** The operating system's CA bundle (where operators add corporate CAs) plus Node's bundled roots. */
function systemRoots(): string[] {
  if (!systemRootsCache) {
    systemRootsCache = [...rootCertificates];
    for (const f of SYSTEM_BUNDLES) {
      try {
        systemRootsCache.push(readFileSync(f, 'utf8'));
        break;
      } catch {
        // Not this distribution's layout.
      }
    }
  }
  return [...systemRootsCache];
}

export async function readBody(res: HttpResponse, limit = 4 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.body.destroy();
      throw new RegistryError('REGISTRY_PROTOCOL', `response from ${new URL(res.url).host} is larger than ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Drains a response we do not need, so the keep-alive socket can be reused. */
export async function discard(res: HttpResponse): Promise<void> {
  res.body.resume();
  await new Promise<void>((resolve) => {
    if (res.body.readableEnded) return resolve();
    res.body.on('end', resolve);
    res.body.on('error', () => resolve());
    res.body.on('close', resolve);
  });
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
