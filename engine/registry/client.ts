/**
 * A client for one registry speaking the OCI distribution API. Knows auth (anonymous, basic, bearer token),
 * manifests, blob HEAD/GET, and blob uploads (cross-repository mount, monolithic, chunked). Retries are the
 * callers' choice: anything a retry may cure is thrown as TransientError.
 */
import type { Readable } from 'node:stream';
import { RegistryError, TransientError } from '../kernel/errors.js';
import { registerSecret } from '../kernel/redact.js';
import type { Digest } from '../kernel/digest.js';
import { MEDIA } from '../image/oci.js';
import { HttpTransport, discard, header, readBody, type Body, type HttpResponse, type TlsOptions } from './http.js';
import { parseChallenge, scopeKey, type Challenge } from './auth.js';
import { lookupLogin, registerCredentials, type Credentials } from './credentials.js';

export interface ClientOptions extends TlsOptions {
  /** Explicit credentials; otherwise the stored login (or docker's) is used. */
  credentials?: Credentials;
  /** Where stored logins live (defaults to $CI_HOME). */
  home?: string;
  /** Blobs larger than this are uploaded in PATCH chunks of this size. */
  chunkSize?: number;
}

export const MANIFEST_ACCEPT = [MEDIA.manifest, MEDIA.index, MEDIA.dockerManifest, 'application/vnd.docker.distribution.manifest.list.v2+json'];

export const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  /** Digest the registry claims (Docker-Content-Digest), checked by the caller against the bytes. */
  claimedDigest?: string;
}

export type UploadResult = 'mounted' | 'uploaded';

export class RegistryClient {
  readonly transport: HttpTransport;
  readonly chunkSize: number;
  private challenge?: Challenge;
  private readonly tokens = new Map<string, string>();

  constructor(
    readonly registry: string,
    private readonly credentials: Credentials | undefined,
    tls: TlsOptions,
    chunkSize = DEFAULT_CHUNK_SIZE,
  ) {
    this.transport = new HttpTransport(registry, tls);
    this.chunkSize = chunkSize;
    if (credentials) registerCredentials(credentials);
  }

  /** A client with the stored login and TLS settings for `registry`, overridden by explicit options. */
  static async open(registry: string, opts: ClientOptions = {}): Promise<RegistryClient> {
    const stored = await lookupLogin(registry, { home: opts.home });
    const tls: TlsOptions = {
      insecure: opts.insecure ?? stored.tls.insecure,
      caFile: opts.caFile ?? stored.tls.caFile,
    };
    return new RegistryClient(registry, opts.credentials ?? stored.credentials, tls, opts.chunkSize);
  }

  close(): void {
    this.transport.close();
  }

  get username(): string | undefined {
    return this.credentials?.username;
  }

  private url(path: string): string {
    return path.startsWith('http://') || path.startsWith('https://') ? path : `${this.transport.baseUrl()}${path}`;
  }

  /** GET /v2/: learns how the registry wants us to authenticate, and checks the credentials work. */
  async ping(scopes: string[] = []): Promise<void> {
    const res = await this.send({ method: 'GET', path: '/v2/', scopes });
    await discard(res);
    if (res.status !== 200) throw await this.unexpected(res, 'checking the API version');
  }

  private async learnChallenge(): Promise<Challenge> {
    if (this.challenge) return this.challenge;
    const res = await this.transport.request({ method: 'GET', url: this.url('/v2/') });
    await discard(res);
    if (res.status === 401) this.challenge = parseChallenge(header(res, 'www-authenticate'));
    else if (res.status === 200) this.challenge = { scheme: 'none', params: {} };
    else if (res.status >= 500) throw new TransientError('REGISTRY_UNAVAILABLE', `registry ${this.registry} answered ${res.status} to /v2/`);
    else if (res.status === 404)
      throw new RegistryError('REGISTRY_PROTOCOL', `${this.url('/v2/')} is not an OCI distribution registry (status 404)`, {
        status: 404,
        hint: 'check the registry host and port in the image reference',
      });
    else this.challenge = { scheme: 'none', params: {} };
    return this.challenge;
  }

  private async authorization(scopes: string[], fresh: boolean): Promise<string | undefined> {
    const ch = await this.learnChallenge();
    if (ch.scheme === 'basic') {
      if (!this.credentials) throw this.unauthorized();
      return 'Basic ' + Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64');
    }
    if (ch.scheme !== 'bearer') return undefined;
    const key = scopeKey(scopes);
    if (!fresh) {
      const cached = this.tokens.get(key);
      if (cached) return `Bearer ${cached}`;
    }
    const token = await this.fetchToken(ch, scopes);
    this.tokens.set(key, token);
    return `Bearer ${token}`;
  }

  private async fetchToken(ch: Challenge, scopes: string[]): Promise<string> {
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError('REGISTRY_PROTOCOL', `registry ${this.registry} asked for a bearer token but named no realm`);
    const u = new URL(realm);
    if (ch.params.service) u.searchParams.set('service', ch.params.service);
    for (const s of new Set(scopes)) u.searchParams.append('scope', s);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.credentials) {
      headers.Authorization = 'Basic ' + Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64');
    }
    const res = await this.transport.request({ method: 'GET', url: u.toString(), headers });
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw this.unauthorized();
    }
    if (res.status >= 500) {
      await discard(res);
      throw new TransientError('REGISTRY_UNAVAILABLE', `token service ${u.host} for registry ${this.registry} answered ${res.status}`);
    }
    if (res.status !== 200) {
      await discard(res);
      throw new RegistryError('REGISTRY_PROTOCOL', `token service ${u.host} for registry ${this.registry} answered ${res.status}`, { status: res.status });
    }
    let body: { token?: string; access_token?: string };
    try {
      body = JSON.parse((await readBody(res)).toString('utf8'));
    } catch {
      throw new RegistryError('REGISTRY_PROTOCOL', `token service ${u.host} for registry ${this.registry} sent a body that is not JSON`);
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError('REGISTRY_PROTOCOL', `token service ${u.host} for registry ${this.registry} sent no token`);
    registerSecret(token);
    return token;
  }

  private unauthorized(): RegistryError {
    if (this.credentials) {
      return new RegistryError('REGISTRY_UNAUTHORIZED', `registry ${this.registry} rejected the credentials of user "${this.credentials.username}"`, {
        status: 401,
        source: 'user',
        hint: `check the user name and password, then run \`ci login ${this.registry} -u USER --password-stdin\``,
      });
    }
    return new RegistryError('REGISTRY_UNAUTHORIZED', `registry ${this.registry} requires a login`, {
      status: 401,
      source: 'user',
      hint: `run \`ci login ${this.registry} -u USER --password-stdin\``,
    });
  }

  /**
   * Sends one request with the right Authorization; on 401 refreshes the token (or learns a changed challenge)
   * and sends once more. Bodies are factories so they can be sent twice.
   */
  async send(req: { method: string; path: string; scopes: string[]; headers?: Record<string, string>; body?: Body }): Promise<HttpResponse> {
    let res: HttpResponse | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const auth = await this.authorization(req.scopes, attempt > 0);
      const headers = { ...req.headers };
      if (auth) headers.Authorization = auth;
      res = await this.transport.request({ method: req.method, url: this.url(req.path), headers, body: req.body });
      if (res.status !== 401) break;
      await discard(res);
      const ch = parseChallenge(header(res, 'www-authenticate'));
      if (ch.params.error === 'insufficient_scope') throw this.denied(req.scopes);
      if (attempt === 0 && ch.scheme !== 'none') {
        this.challenge = ch;
        continue;
      }
      throw this.unauthorized();
    }
    const r = res!;
    if (r.status === 403) {
      await discard(r);
      throw this.denied(req.scopes);
    }
    if (r.status === 429 || r.status >= 500) {
      const body = await readBody(r).catch(() => Buffer.alloc(0));
      throw new TransientError('REGISTRY_UNAVAILABLE', `registry ${this.registry} answered ${r.status} to ${req.method}${errorSummary(body)}`);
    }
    return r;
  }

  private denied(scopes: string[]): RegistryError {
    const who = this.credentials ? `user "${this.credentials.username}"` : 'an anonymous client';
    const what = scopes.map((s) => s.replace(/^repository:/, '')).join(', ');
    return new RegistryError('REGISTRY_DENIED', `registry ${this.registry} denied ${who} access to ${what || 'the API'}`, {
      status: 403,
      source: 'user',
      hint: this.credentials ? 'ask the registry owner for access to that repository' : `run \`ci login ${this.registry}\` first`,
    });
  }

  async unexpected(res: HttpResponse, doing: string): Promise<RegistryError> {
    const body = await readBody(res).catch(() => Buffer.alloc(0));
    return new RegistryError('REGISTRY_PROTOCOL', `registry ${this.registry} answered ${res.status} while ${doing}${errorSummary(body)}`, {
      status: res.status,
    });
  }

  async getManifest(repository: string, reference: string, scopes: string[]): Promise<FetchedManifest> {
    const res = await this.send({
      method: 'GET',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes,
      headers: { Accept: MANIFEST_ACCEPT.join(', ') },
    });
    if (res.status === 404) {
      await discard(res);
      throw new RegistryError('REGISTRY_NOT_FOUND', `${this.registry}/${repository}:${reference} was not found in registry ${this.registry}`, {
        status: 404,
        source: 'user',
        hint: 'check the repository name and tag',
      });
    }
    if (res.status !== 200) throw await this.unexpected(res, `fetching manifest ${repository}:${reference}`);
    const bytes = await readBody(res, 8 * 1024 * 1024);
    const mediaType = (header(res, 'content-type') ?? '').split(';')[0].trim() || sniffMediaType(bytes);
    return { bytes, mediaType, claimedDigest: header(res, 'docker-content-digest') };
  }

  async hasBlob(repository: string, digest: Digest, scopes: string[]): Promise<boolean> {
    const res = await this.send({ method: 'HEAD', path: `/v2/${repository}/blobs/${digest}`, scopes });
    await discard(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    // Redirects on HEAD mean the blob exists in some backing store.
    if (res.status >= 300 && res.status < 400) return true;
    throw await this.unexpected(res, `checking blob ${digest}`);
  }

  /** The blob's bytes as a stream; follows redirects to storage backends (without our Authorization). */
  async getBlob(repository: string, digest: Digest, scopes: string[]): Promise<Readable> {
    let res = await this.send({ method: 'GET', path: `/v2/${repository}/blobs/${digest}`, scopes });
    for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 5; hops++) {
      const loc = header(res, 'location');
      await discard(res);
      if (!loc) throw new RegistryError('REGISTRY_PROTOCOL', `registry ${this.registry} redirected blob ${digest} without a location`);
      res = await this.transport.request({ method: 'GET', url: new URL(loc, res.url).toString() });
    }
    if (res.status === 404) {
      await discard(res);
      throw new RegistryError('REGISTRY_NOT_FOUND', `blob ${digest} is missing from ${this.registry}/${repository}`, { status: 404 });
    }
    if (res.status >= 500) {
      await discard(res);
      throw new TransientError('REGISTRY_UNAVAILABLE', `registry ${this.registry} answered ${res.status} for blob ${digest}`);
    }
    if (res.status !== 200) throw await this.unexpected(res, `fetching blob ${digest}`);
    return res.body;
  }

  /**
   * Uploads one blob. With `mountFrom`, first asks the registry to link the blob from another repository
   * (no bytes sent); a registry that cannot mount opens an ordinary upload session instead.
   */
  async uploadBlob(
    repository: string,
    blob: { digest: Digest; size: number; open: (start: number, end: number) => Readable },
    opts: { mountFrom?: string; onBytes?: (n: number) => void } = {},
  ): Promise<UploadResult> {
    const scopes = [`repository:${repository}:pull,push`];
    let path = `/v2/${repository}/blobs/uploads/`;
    if (opts.mountFrom && opts.mountFrom !== repository) {
      scopes.push(`repository:${opts.mountFrom}:pull`);
      path += `?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(opts.mountFrom)}`;
    }
    const start = await this.send({ method: 'POST', path, scopes });
    if (start.status === 201) {
      await discard(start);
      return 'mounted';
    }
    if (start.status !== 202) throw await this.unexpected(start, `starting the upload of blob ${blob.digest}`);
    await discard(start);
    let location = this.location(start);

    if (blob.size > this.chunkSize) {
      for (let offset = 0; offset < blob.size; offset += this.chunkSize) {
        const end = Math.min(offset + this.chunkSize, blob.size);
        const res = await this.send({
          method: 'PATCH',
          path: location,
          scopes,
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Length': String(end - offset),
            'Content-Range': `${offset}-${end - 1}`,
          },
          body: () => blob.open(offset, end),
        });
        if (res.status !== 202) throw await this.unexpected(res, `uploading bytes ${offset}-${end - 1} of blob ${blob.digest}`);
        await discard(res);
        location = this.location(res);
        opts.onBytes?.(end - offset);
      }
      const done = await this.send({ method: 'PUT', path: withDigest(location, blob.digest), scopes });
      if (done.status !== 201) throw await this.unexpected(done, `finishing the upload of blob ${blob.digest}`);
      await discard(done);
      return 'uploaded';
    }

    const res = await this.send({
      method: 'PUT',
      path: withDigest(location, blob.digest),
      scopes,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.size) },
      body: () => blob.open(0, blob.size),
    });
    if (res.status !== 201) throw await this.unexpected(res, `uploading blob ${blob.digest}`);
    await discard(res);
    opts.onBytes?.(blob.size);
    return 'uploaded';
  }

  private location(res: HttpResponse): string {
    const loc = header(res, 'location');
    if (!loc) throw new RegistryError('REGISTRY_PROTOCOL', `registry ${this.registry} opened an upload without a Location header`);
    return new URL(loc, res.url).toString();
  }

  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string | undefined> {
    const res = await this.send({
      method: 'PUT',
      path: `/v2/${repository}/manifests/${reference}`,
      scopes: [`repository:${repository}:pull,push`],
      headers: { 'Content-Type': mediaType },
      body: bytes,
    });
    if (res.status !== 201 && res.status !== 200) throw await this.unexpected(res, `storing manifest ${repository}:${reference}`);
    await discard(res);
    return header(res, 'docker-content-digest');
  }
}

function withDigest(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

function sniffMediaType(bytes: Buffer): string {
  try {
    const m = JSON.parse(bytes.toString('utf8'));
    if (typeof m.mediaType === 'string') return m.mediaType;
    return Array.isArray(m.manifests) ? MEDIA.index : MEDIA.manifest;
  } catch {
    return MEDIA.manifest;
  }
}

/** `: CODE message` from a distribution error body, when there is one. */
function errorSummary(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8'));
    const e = parsed?.errors?.[0];
    if (e?.code) return `: ${e.code}${e.message ? ` ${e.message}` : ''}`;
  } catch {
    // Not a JSON error body.
  }
  return '';
}
