/**
 * Real registries for tests: Debian's docker-registry (CNCF distribution) on a free loopback port with its own
 * config and storage in a temp dir, optionally behind TLS (openssl-made cert), htpasswd (bcrypt) or token auth
 * (a small JWT-signing token server). Also a counting reverse proxy and a way to write images into a store.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSign, randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar';
import { sha256, type Digest } from '../../engine/kernel/digest.js';
import { MEDIA, type ImageConfig, type Manifest } from '../../engine/image/oci.js';
import { ImageStore } from '../../engine/image/store.js';
import { afterAll } from 'vitest';

/** The real tools these tests drive; missing ones fail the test loudly instead of skipping it. */
export function requireTools(): void {
  for (const tool of ['/usr/bin/docker-registry', 'skopeo', 'openssl', 'python3']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is not installed; the registry tests need docker-registry, skopeo, openssl and python3`);
    }
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(join(tmpdir(), `${prefix}-`));
}

/** A self-signed certificate for 127.0.0.1 (and localhost). */
export function makeCert(dir: string, name: string, cn = '127.0.0.1'): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', key, '-out', cert, '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { cert, key };
}

/** bcrypt hash through the system's libcrypt (what htpasswd -B produces). */
export function bcrypt(password: string): string {
  const script = 'import crypt,sys; print(crypt.crypt(sys.stdin.read(), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1<<5)))';
  return execFileSync('python3', ['-W', 'ignore', '-c', script], { input: password }).toString().trim();
}

export interface RunningRegistry {
  /** host:port to put in image references. */
  host: string;
  port: number;
  dir: string;
  storage: string;
  caFile?: string;
  pid: number;
  stop(): Promise<void>;
  /** Path of a blob's data file in the registry's storage, for corrupting it. */
  blobDataPath(d: Digest): string;
}

export interface RegistryOptions {
  tls?: boolean;
  htpasswd?: Record<string, string>;
  token?: { realm: string; service: string; issuer: string; certFile: string };
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const dir = await tempDir('ci-registry');
  const storage = join(dir, 'storage');
  await fs.mkdir(storage);
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  let caFile: string | undefined;
  if (opts.tls) {
    const { cert, key } = makeCert(dir, 'registry');
    caFile = cert;
    lines.push('  tls:', `    certificate: ${cert}`, `    key: ${key}`);
  }
  if (opts.htpasswd) {
    const file = join(dir, 'htpasswd');
    await fs.writeFile(file, Object.entries(opts.htpasswd).map(([u, p]) => `${u}:${bcrypt(p)}\n`).join(''));
    lines.push('auth:', '  htpasswd:', '    realm: test-realm', `    path: ${file}`);
  } else if (opts.token) {
    const t = opts.token;
    lines.push('auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.certFile}`);
  }
  const config = join(dir, 'config.yml');
  await fs.writeFile(config, lines.join('\n') + '\n');
  const log = await fs.open(join(dir, 'registry.log'), 'w');
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', log.fd, log.fd] });
  await log.close();
  const pid = child.pid!;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
    }
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, join(dir, 'registry.log'));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    dir,
    storage,
    caFile,
    pid,
    stop,
    blobDataPath: (d) => {
      const hex = d.slice(7);
      return join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
  };
}

async function waitForPort(port: number, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${readFileSync(logFile, 'utf8')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not listen on ${port}: ${readFileSync(logFile, 'utf8')}`);
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  /** Token requests seen, with the user (or '' for anonymous) and scopes asked for. */
  requests: { user: string; scopes: string[] }[];
  stop(): Promise<void>;
}

/**
 * Issues registry tokens (RS256 JWTs with the signing cert in x5c) to users with the right password;
 * anonymous callers get a token that grants nothing.
 */
export async function startTokenServer(users: Record<string, string>): Promise<TokenServer> {
  const dir = await tempDir('ci-token');
  const { cert, key } = makeCert(dir, 'token', 'token-signer');
  const keyPem = readFileSync(key, 'utf8');
  const certB64 = readFileSync(cert, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const service = 'test-registry';
  const issuer = 'test-token-issuer';
  const requests: TokenServer['requests'] = [];
  const b64url = (v: object | Buffer) => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))).toString('base64url');
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    let user = '';
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (users[name] === undefined || users[name] !== rest.join(':')) {
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const scopes = u.searchParams.getAll('scope');
    requests.push({ user, scopes });
    const access = user
      ? scopes.map((s) => {
          const first = s.indexOf(':');
          const last = s.lastIndexOf(':');
          return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
        })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certB64] };
    const claims = { iss: issuer, sub: user, aud: u.searchParams.get('service') ?? service, exp: now + 600, nbf: now - 30, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(header)}.${b64url(claims)}`;
    const sig = createSign('RSA-SHA256').update(signingInput).sign(keyPem);
    const token = `${signingInput}.${b64url(sig)}`;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 600, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile: cert,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface CountingProxy {
  host: string;
  requests: { method: string; path: string }[];
  stop(): Promise<void>;
}

/**
 * A plain-HTTP reverse proxy that records every request (the registry builds its URLs from our Host header);
 * `flaky` makes the first matching requests fail with 503.
 */
export async function startCountingProxy(
  targetPort: number,
  flaky?: { match: (method: string, path: string) => boolean; times: number },
): Promise<CountingProxy> {
  const requests: CountingProxy['requests'] = [];
  let failures = flaky?.times ?? 0;
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '' });
    if (failures > 0 && flaky!.match(req.method ?? '', req.url ?? '')) {
      // Answer a made-up outage, as a registry behind a load balancer sometimes does.
      failures--;
      req.resume();
      res.writeHead(503, { 'Content-Type': 'text/plain' }).end('unavailable');
      return;
    }
    const up = http.request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Runs skopeo with a permissive policy (tests only) and returns stdout. */
export function skopeo(args: string[]): string {
  return execFileSync('skopeo', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }).toString();
}

export interface TestImageSpec {
  /** One entry per layer: file path -> content. */
  layers: Record<string, string | Buffer>[];
  cmds?: string[];
  env?: string[];
}

/** Writes an image straight into a store: real gzip tar layers, an OCI config with our metadata, a manifest. */
export async function makeImage(store: ImageStore, ref: string, spec: TestImageSpec): Promise<{ digest: Digest; layers: Digest[] }> {
  await store.init();
  const work = await tempDir('ci-layer');
  try {
    const layers: { digest: Digest; size: number; diffId: Digest }[] = [];
    for (const [i, files] of spec.layers.entries()) {
      const root = join(work, String(i));
      await fs.mkdir(root);
      for (const [path, content] of Object.entries(files)) {
        await fs.mkdir(join(root, path, '..'), { recursive: true });
        await fs.writeFile(join(root, path), content);
      }
      const out = join(work, `${i}.tar.gz`);
      await tar.c({ gzip: true, cwd: root, file: out, portable: true, mtime: new Date(0) }, Object.keys(files));
      const gz = await fs.readFile(out);
      const { digest, size } = await store.putBlob(gz);
      layers.push({ digest, size, diffId: sha256(gunzipSync(gz)) });
    }
    const createdBy = spec.layers.map((files) => `COPY ${Object.keys(files).join(' ')}`);
    const cmds = (spec.cmds ?? []).map((cmd) => ({ cmd, identity: sha256(cmd + layers.map((l) => l.digest).join('')) }));
    const config: ImageConfig = {
      architecture: 'amd64',
      os: 'linux',
      config: { Env: spec.env },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: createdBy.map((c) => ({ created_by: c })),
      cloudimage: { version: 1, layers: createdBy.map((c) => ({ createdBy: c })), cmds },
    };
    const cfg = await store.putBlob(JSON.stringify(config));
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: cfg.digest, size: cfg.size },
      layers: layers.map((l) => ({ mediaType: MEDIA.layerGzip, digest: l.digest, size: l.size })),
      annotations: { 'io.cloudimage.test': 'true' },
    };
    const desc = await store.putManifest(manifest);
    await store.tag(ref, desc);
    return { digest: desc.digest, layers: layers.map((l) => l.digest) };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Cleanups run when the test file ends (latest first), and fresh stores that go with them. */
export function storeScope(): { defer: (fn: () => Promise<unknown>) => void; freshStore: () => Promise<ImageStore> } {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });
  const defer = (fn: () => Promise<unknown>) => void cleanups.push(fn);
  return {
    defer,
    async freshStore() {
      const home = await tempDir('ci-home');
      defer(() => fs.rm(home, { recursive: true, force: true }));
      const store = new ImageStore(home);
      await store.init();
      return store;
    },
  };
}
