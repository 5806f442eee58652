/**
 * Registry logins. Kept in `$CI_HOME/auth.json` (mode 0600) in the same `auths` shape docker uses, so the
 * file is familiar; `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) is read as a fallback so an
 * operator who already ran `docker login` need not log in twice. Every secret in a file read is registered as a secret.
 */
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ciHome } from '../kernel/home.js';
import { writeFileAtomic } from '../kernel/fsutil.js';
import { registerSecret } from '../kernel/redact.js';
import { RegistryError } from '../kernel/errors.js';
import type { TlsOptions } from './http.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface LoginEntry {
  /** base64("user:password"), as docker writes it. */
  auth: string;
  /** TLS settings given at login, reused by later pulls (for example by `ci apply`). */
  insecure?: boolean;
  caFile?: string;
}

interface AuthFile {
  auths: Record<string, LoginEntry>;
}

export function authFilePath(home = ciHome()): string {
  return join(home, 'auth.json');
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG || join(homedir(), '.docker'), 'config.json');
}

async function readAuthFile(path: string): Promise<AuthFile> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err: any) {
    if (err?.code === 'ENOENT') return { auths: {} };
    throw err;
  }
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RegistryError('REGISTRY_AUTH_FILE', `${path} is not valid JSON`, {
      source: 'user',
      hint: `fix or delete ${path}, then run \`ci login\` again`,
    });
  }
  const file: AuthFile = { ...parsed, auths: parsed?.auths && typeof parsed.auths === 'object' ? parsed.auths : {} };
  registerFileSecrets(file);
  return file;
}

/** Masks a password and the base64 `user:password` form docker files and Basic headers carry. */
export function registerCredentials(creds: Credentials): void {
  registerSecret(creds.password);
  registerSecret(Buffer.from(`${creds.username}:${creds.password}`).toString('base64'));
}

/**
 * Every secret an auth file holds, for every registry in it, is masked as soon as the file is read: the entry used
 * is not always the one a message might quote, and docker's files may hold passwords and tokens beside `auth`.
 */
function registerFileSecrets(file: AuthFile): void {
  for (const entry of Object.values(file.auths)) {
    if (!entry || typeof entry !== 'object') continue;
    const e = entry as Partial<LoginEntry> & Record<string, unknown>;
    if (typeof e.auth === 'string') {
      registerSecret(e.auth);
      decodeAuth(e.auth);
    }
    for (const field of ['password', 'identitytoken', 'registrytoken']) {
      if (typeof e[field] === 'string') registerSecret(e[field] as string);
    }
  }
}

export function decodeAuth(auth: string): Credentials | undefined {
  registerSecret(auth);
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i <= 0) return undefined;
  const creds = { username: text.slice(0, i), password: text.slice(i + 1) };
  registerCredentials(creds);
  return creds;
}

/** Docker keys entries by host, sometimes with a scheme or the Hub's legacy URL. */
function dockerKeysFor(registry: string): string[] {
  const keys = [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`];
  if (registry === 'docker.io' || registry === 'registry-1.docker.io') keys.push('https://index.docker.io/v1/');
  return keys;
}

export interface StoredLogin {
  credentials?: Credentials;
  tls: TlsOptions;
  /** Where the credentials came from, for messages. */
  source?: string;
}

export async function lookupLogin(registry: string, opts: { home?: string; env?: NodeJS.ProcessEnv } = {}): Promise<StoredLogin> {
  const own = await readAuthFile(authFilePath(opts.home));
  const entry = own.auths[registry];
  if (entry) {
    return {
      credentials: entry.auth ? decodeAuth(entry.auth) : undefined,
      tls: { insecure: entry.insecure, caFile: entry.caFile },
      source: authFilePath(opts.home),
    };
  }
  const dockerPath = dockerConfigPath(opts.env);
  let docker: AuthFile;
  try {
    docker = await readAuthFile(dockerPath);
  } catch {
    // A broken docker config is docker's business; it must not stop our own commands.
    return { tls: {} };
  }
  for (const key of dockerKeysFor(registry)) {
    const e = docker.auths[key] as (LoginEntry & { username?: unknown; password?: unknown }) | undefined;
    const credentials = e?.auth
      ? decodeAuth(e.auth)
      : typeof e?.username === 'string' && typeof e?.password === 'string'
        ? { username: e.username, password: e.password }
        : undefined;
    if (credentials) {
      registerCredentials(credentials);
      return { credentials, tls: {}, source: dockerPath };
    }
  }
  return { tls: {} };
}

export async function saveLogin(registry: string, creds: Credentials, tls: TlsOptions = {}, home?: string): Promise<string> {
  registerCredentials(creds);
  const path = authFilePath(home);
  const file = await readAuthFile(path);
  const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
  const entry: LoginEntry = { auth };
  if (tls.insecure) entry.insecure = true;
  if (tls.caFile) entry.caFile = tls.caFile;
  file.auths[registry] = entry;
  await writeFileAtomic(path, JSON.stringify(file, null, 2) + '\n', 0o600);
  return path;
}

/** Returns false when there was no login to remove. */
export async function removeLogin(registry: string, home?: string): Promise<boolean> {
  const path = authFilePath(home);
  const file = await readAuthFile(path);
  if (!file.auths[registry]) return false;
  delete file.auths[registry];
  await writeFileAtomic(path, JSON.stringify(file, null, 2) + '\n', 0o600);
  return true;
}
