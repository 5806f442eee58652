import { describe, it, expect, beforeAll } from 'vitest';
import { ImageStore } from '../engine/image/store.js';
import { pushImage } from '../engine/registry/push.js';
import { pullImage } from '../engine/registry/pull.js';
import { login } from '../engine/registry/login.js';
import { RegistryError } from '../engine/kernel/errors.js';
import { makeImage, requireTools, startRegistry, startTokenServer, type RunningRegistry, type TokenServer, storeScope } from './helpers/registry.js';

const noWait = { attempts: 2, baseMs: 1, capMs: 5 };
const { defer, freshStore } = storeScope();

describe('registry with bearer-token auth', () => {
  let tokens: TokenServer;
  let reg: RunningRegistry;
  let store: ImageStore;
  const alice = { username: 'alice', password: 'token-pass-42' };

  beforeAll(async () => {
    requireTools();
    tokens = await startTokenServer({ alice: alice.password });
    defer(() => tokens.stop());
    reg = await startRegistry({ token: tokens });
    defer(() => reg.stop());
    store = await freshStore();
  });

  it('logs in through the token service, pushes, mounts and pulls with scoped tokens', async () => {
    await login(reg.host, alice, { insecure: true }, store.home);
    expect(tokens.requests.at(-1)?.user).toBe('alice');

    const ref = `${reg.host}/team/app:v1`;
    const made = await makeImage(store, ref, { layers: [{ 'a.txt': 'token a' }, { 'b.txt': 'token b' }], cmds: ['echo ok'] });
    const pushed = await pushImage(store, ref, { home: store.home, retry: noWait });
    expect(pushed.uploaded).toHaveLength(3);
    expect(tokens.requests.some((r) => r.user === 'alice' && r.scopes.includes('repository:team/app:pull,push'))).toBe(true);

    const moved = await pushImage(store, ref, { destination: `${reg.host}/other/app:v1`, home: store.home, retry: noWait });
    expect(moved.mounted).toHaveLength(3);
    expect(
      tokens.requests.some((r) => r.scopes.includes('repository:other/app:pull,push') && r.scopes.includes('repository:team/app:pull')),
    ).toBe(true);

    const dst = await freshStore();
    const pulled = await pullImage(dst, `${reg.host}/other/app:v1`, { insecure: true, credentials: alice, home: dst.home, retry: noWait });
    expect(pulled.digest).toBe(made.digest);
    expect(pulled.config.cloudimage?.cmds.map((c) => c.cmd)).toEqual(['echo ok']);
  });

  it('names the registry when the token service rejects the password', async () => {
    const err = await login(reg.host, { username: 'alice', password: 'nope-nope' }, { insecure: true }, store.home).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(err.message).toContain(reg.host);
    const dst = await freshStore();
    const pull = await pullImage(dst, `${reg.host}/team/app:v1`, {
      insecure: true,
      credentials: { username: 'alice', password: 'nope-nope' },
      home: dst.home,
      retry: noWait,
    }).catch((e) => e);
    expect(pull.code).toBe('REGISTRY_UNAUTHORIZED');
    expect(await dst.list()).toEqual([]);
  });

  it('tells an anonymous client it has no access', async () => {
    const dst = await freshStore();
    const err = await pullImage(dst, `${reg.host}/team/app:v1`, { insecure: true, home: dst.home, retry: noWait }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe('REGISTRY_DENIED');
    expect(err.message).toContain(reg.host);
    expect(err.hint).toContain('ci login');
  });
});
