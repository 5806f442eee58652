import { afterAll, beforeEach, describe, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearSecrets, redact, registerSecret } from '../engine/kernel/redact.js';
import { lookupLogin } from '../engine/registry/credentials.js';

const root = mkdtempSync(join(tmpdir(), 'ci-redact-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(() => clearSecrets());

const secret = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

describe('redaction', () => {
  test('masks the longer of two overlapping secrets whole', () => {
    registerSecret('abc123');
    registerSecret('token-abc123-tail');
    expect(redact('x token-abc123-tail y abc123')).toBe('x ****** y ******');
  });

  test('masks a secret where JSON text escapes it', () => {
    const tricky = `pa"ss\\word-${randomBytes(3).toString('hex')}`;
    registerSecret(tricky);
    const json = JSON.stringify({ value: tricky });
    expect(json).not.toContain(tricky);
    expect(redact(json)).toBe('{"value":"******"}');
  });

  test('masks each line of a multi-line secret, as output is shown line by line', () => {
    const body = randomBytes(48).toString('base64');
    const key = `-----BEGIN OPENSSH PRIVATE KEY-----\n${body.slice(0, 32)}\n${body.slice(32)}\n-----END OPENSSH PRIVATE KEY-----\n`;
    registerSecret(key);
    expect(redact(`[host] ${body.slice(0, 32)}`)).toBe('[host] ******');
    expect(redact(`[host] ${body.slice(32)}`)).toBe('[host] ******');
  });

  test('ignores values too short to be secrets', () => {
    registerSecret('ab');
    expect(redact('ab cd')).toBe('ab cd');
  });
});

describe('registry credentials', () => {
  test("every secret of docker's config.json is masked once it is read, whichever registry was asked for", async () => {
    const [pwA, pwB, token] = [secret('pwa'), secret('pwb'), secret('idtok')];
    const authA = Buffer.from(`alice:${pwA}`).toString('base64');
    const dockerDir = mkdtempSync(join(root, 'docker-'));
    const config = {
      auths: {
        'a.example:5000': { auth: authA },
        'b.example': { username: 'bob', password: pwB },
        'c.example': { identitytoken: token },
      },
    };
    writeFileSync(join(dockerDir, 'config.json'), JSON.stringify(config));
    const home = mkdtempSync(join(root, 'home-'));
    const found = await lookupLogin('b.example', { home, env: { DOCKER_CONFIG: dockerDir } });
    expect(found.credentials).toEqual({ username: 'bob', password: pwB });
    const text = `${pwA} ${authA} ${pwB} ${Buffer.from(`bob:${pwB}`).toString('base64')} ${token}`;
    expect(redact(text)).toBe('****** ****** ****** ****** ******');
  });

  test("ci's own auth.json: the stored login is masked when it is looked up", async () => {
    const pw = secret('own');
    const home = mkdtempSync(join(root, 'home-'));
    writeFileSync(join(home, 'auth.json'), JSON.stringify({ auths: { 'r.example': { auth: Buffer.from(`u:${pw}`).toString('base64') } } }));
    const found = await lookupLogin('r.example', { home, env: { DOCKER_CONFIG: join(root, 'none') } });
    expect(found.credentials?.password).toBe(pw);
    expect(redact(`login ${pw}`)).toBe('login ******');
  });
});

describe("the CLI's standard streams", () => {
  test('mask a registered secret in every write, text or bytes', () => {
    const dist = fileURLToPath(new URL('../dist/engine/', import.meta.url));
    const s = secret('stream');
    const script = `
      import { registerSecret } from ${JSON.stringify(join(dist, 'kernel', 'redact.js'))};
      import { redactStandardStreams } from ${JSON.stringify(join(dist, 'cli/output.js'))};
      redactStandardStreams();
      registerSecret(process.env.S);
      process.stdout.write('out ' + process.env.S + '\\n');
      process.stdout.write(Buffer.from('bytes ' + process.env.S + '\\n'));
      process.stderr.write('err ' + process.env.S + '\\n', () => {});
      console.log('log', process.env.S);
      process.stdout.write(Buffer.from([0xff, 0xfe, 0x0a]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, S: s } });
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString('latin1')).toBe('out ******\nbytes ******\nlog ******\n\xff\xfe\n');
    expect(r.stderr.toString()).toBe('err ******\n');
  });
});
