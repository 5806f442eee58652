import { afterAll, beforeEach, describe, expect, test } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalStateBackend, createState, type ClusterState } from '../state/index.js';
import { FileKeySource, stateKeys } from '../state/keys.js';
import { StateError } from '../engine/kernel/errors.js';
import { clearSecrets, redact } from '../engine/kernel/redact.js';

const root = mkdtempSync(join(tmpdir(), 'ci-seal-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
let dir: string;
beforeEach(() => {
  dir = join(root, `t${n++}`);
  mkdirSync(dir);
});

const TOKEN = 'join-token-7f3a9c1e5b';
const OTHER = 'second-output-value-42';

/** A home with its own key directory and a state file in it. */
function home(name: string) {
  const h = join(dir, name);
  const keys = stateKeys(h);
  const path = join(h, 'clusters', 'demo', 'state.json');
  return { dir: h, keys, path, backend: new LocalStateBackend(path, { keys }) };
}

function withOutputs(outputs: Record<string, string>): ClusterState {
  const s = createState('demo', 'BAREMETAL');
  s.outputs = { ...outputs };
  s.hosts['10.0.0.2'] = { key: '10.0.0.2', ip: '10.0.0.2', roles: ['master'], ssh: { user: 'root', port: 22 }, layers: [], hooks: {}, status: 'active' };
  return s;
}

const fileOf = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const errorOf = async (p: Promise<unknown>): Promise<StateError> => {
  const err = await p.then(() => undefined, (e) => e);
  expect(err).toBeInstanceOf(StateError);
  return err as StateError;
};

describe('a state changed while it is being written', () => {
  test('is stored as one moment of it: the hosts and the other fields as they were together, never a mix', async () => {
    const real = stateKeys(join(dir, 'h'));
    const state = withOutputs({ TOKEN });
    // The writer goes on recording while the backend waits for its key, as the executor does during a write.
    const keys = Object.assign(Object.create(real) as FileKeySource, {
      sealingKey: async () => {
        state.hosts['10.0.0.2'].status = 'leaving';
        state.pending = { 'create-host:x': { clientToken: 't-1' } };
        state.outputs = { ...state.outputs, OTHER };
        return real.sealingKey();
      },
    });
    const path = join(dir, 'h', 'clusters', 'demo', 'state.json');
    const w = await new LocalStateBackend(path, { keys }).write(state);
    expect(w.serial).toBe(1);
    const doc = fileOf(path);
    expect(doc.serial).toBe(1);
    expect(doc.hosts['10.0.0.2'].status).toBe('leaving');
    expect(doc.pending).toEqual({ 'create-host:x': { clientToken: 't-1' } });
    const back = await new LocalStateBackend(path, { keys: real }).read();
    expect(back!.outputs).toEqual({ TOKEN, OTHER });
    // The state given is not changed by the write (its serial is the caller's to take from the answer).
    expect(state.serial).toBe(0);
  });
});

describe('hook outputs sealed at rest', () => {
  test('are sealed in the file and its backup with a fresh IV on every write, opened on read; the key is 0600 in a 0700 directory', async () => {
    const a = home('a');
    const w1 = await a.backend.write(withOutputs({ TOKEN }));
    const first = fileOf(a.path).sealedOutputs;
    await a.backend.write({ ...w1, outputs: { TOKEN, OTHER } });
    for (const p of [a.path, `${a.path}.backup`]) {
      const text = readFileSync(p, 'utf8');
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain('join-token');
      const doc = JSON.parse(text);
      expect(doc.version).toBe(2);
      expect(doc.outputs).toBeUndefined();
      expect(doc.sealedOutputs).toMatchObject({ alg: 'AES-256-GCM', keyId: expect.stringMatching(/^[0-9a-f]{16}$/) });
      // The rest of the state stays readable.
      expect(doc.hosts['10.0.0.2'].ip).toBe('10.0.0.2');
    }
    expect(readFileSync(a.path, 'utf8')).not.toContain(OTHER);
    // The backup is a complete copy of the latest write; each write seals afresh.
    const [now, copy] = [fileOf(a.path).sealedOutputs, fileOf(`${a.path}.backup`).sealedOutputs];
    expect(copy).toEqual(now);
    expect(now.iv).not.toBe(first.iv);
    expect(now.keyId).toBe(first.keyId);

    const read = await a.backend.read();
    expect(read!.outputs).toEqual({ TOKEN, OTHER });
    expect(read!.version).toBe(2);

    const keyFile = join(a.dir, 'keys', 'state.key');
    expect(statSync(join(a.dir, 'keys')).mode & 0o777).toBe(0o700);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(a.dir, 'keys'))).toEqual(['state.key']);
    expect((await a.keys.sealingKey()).id).toBe(now.keyId);
    // The same outputs sealed twice never give the same bytes.
    await a.backend.write({ ...read!, outputs: { TOKEN, OTHER } });
    expect(fileOf(a.path).sealedOutputs.data).not.toBe(now.data);
  });

  test('outputs opened from a state are masked wherever text is redacted', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({ TOKEN }));
    clearSecrets();
    expect(redact(`token ${TOKEN}`)).toContain(TOKEN);
    await new LocalStateBackend(a.path, { keys: stateKeys(a.dir) }).read();
    expect(redact(`token ${TOKEN}`)).toBe('token ******');
  });

  test('a state without outputs needs no key and makes none', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({}));
    expect(existsSync(join(a.dir, 'keys'))).toBe(false);
    expect(fileOf(a.path).sealedOutputs).toBeUndefined();
    expect((await new LocalStateBackend(a.path, { keys: stateKeys(join(dir, 'elsewhere')) }).read())!.outputs).toEqual({});
  });

  test('a changed byte of ciphertext, tag or IV, or a sealed box moved into another state, is refused', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({ TOKEN }));
    const good = readFileSync(a.path, 'utf8');
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[0] ^= 1;
      return bytes.toString('base64');
    };
    for (const field of ['data', 'tag', 'iv'] as const) {
      const doc = JSON.parse(good);
      doc.sealedOutputs[field] = flip(doc.sealedOutputs[field]);
      writeFileSync(a.path, JSON.stringify(doc));
      const err = await errorOf(a.backend.read());
      expect(err.code).toBe('STATE_INVALID');
      expect(err.message).toBe(`state ${a.path}: its sealed hook outputs do not authenticate with key ${doc.sealedOutputs.keyId}: the file was altered or damaged`);
      expect(err.hint).toBe(`put its backup back with \`ci state restore --state ${a.path}\` (the damaged file is moved aside, not deleted)`);
    }
    // Outputs are bound to the state's lineage: the box of one cluster does not open inside another.
    const other = withOutputs({ TOKEN: 'other-cluster-token' });
    const b = new LocalStateBackend(join(dir, 'b', 'state.json'), { keys: a.keys });
    await b.write(other);
    const moved = fileOf(b.path);
    moved.sealedOutputs = JSON.parse(good).sealedOutputs;
    writeFileSync(b.path, JSON.stringify(moved));
    expect((await errorOf(b.read())).message).toMatch(/do not authenticate/);
    // An unknown algorithm is named, not guessed at.
    const doc = JSON.parse(good);
    doc.sealedOutputs.alg = 'XCHACHA20-POLY1305';
    writeFileSync(a.path, JSON.stringify(doc));
    expect((await errorOf(a.backend.read())).message).toBe(`state ${a.path} has hook outputs sealed with XCHACHA20-POLY1305, which this ci cannot open`);
    const missingField = JSON.parse(good);
    delete missingField.sealedOutputs.tag;
    writeFileSync(a.path, JSON.stringify(missingField));
    expect((await errorOf(a.backend.read())).message).toBe(`state ${a.path} has a damaged sealedOutputs field`);
  });

  test('a state sealed with a key that is not here is refused, naming the key and where it is expected; a copied key file opens it', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({ TOKEN }));
    const keyId = fileOf(a.path).sealedOutputs.keyId;
    const stateText = readFileSync(a.path, 'utf8');

    // A machine with no key at all.
    const b = home('b');
    mkdirSync(join(b.path, '..'), { recursive: true });
    writeFileSync(b.path, stateText);
    let err = await errorOf(b.backend.read());
    expect(err.message).toBe(`state ${b.path} has hook outputs sealed with key ${keyId}, which is not in ${join(b.dir, 'keys')}`);
    expect(err.hint).toBe(`copy the key file from the machine that wrote the state ($CI_HOME/keys/state.key there) to ${join(b.dir, 'keys', 'state.key')}, with mode 0600`);
    expect(err.message + err.hint).not.toContain(TOKEN);

    // A machine with a key of its own: the wrong one.
    const c = home('c');
    await new LocalStateBackend(join(c.dir, 'clusters', 'mine', 'state.json'), { keys: c.keys }).write(withOutputs({ MINE: 'c-own-output' }));
    mkdirSync(join(c.path, '..'), { recursive: true });
    writeFileSync(c.path, stateText);
    err = await errorOf(c.backend.read());
    expect(err.message).toBe(`state ${c.path} has hook outputs sealed with key ${keyId}, which is not in ${join(c.dir, 'keys')}`);
    expect(err.hint).toContain(`to ${join(c.dir, 'keys', `${keyId}.key`)}, with mode 0600`);

    // Copied in beside the machine's own key: opens, and later writes stay sealed with it, so both machines can read.
    copyFileSync(join(a.dir, 'keys', 'state.key'), join(c.dir, 'keys', `${keyId}.key`));
    const c2 = new LocalStateBackend(c.path, { keys: stateKeys(c.dir) });
    const opened = await c2.read();
    expect(opened!.outputs).toEqual({ TOKEN });
    await c2.write({ ...opened!, outputs: { TOKEN, OTHER } });
    expect(fileOf(c.path).sealedOutputs.keyId).toBe(keyId);
    expect((await new LocalStateBackend(c.path, { keys: stateKeys(a.dir) }).read())!.outputs).toEqual({ TOKEN, OTHER });

    // Copied in as the only key.
    mkdirSync(join(b.dir, 'keys'), { mode: 0o700 });
    copyFileSync(join(a.dir, 'keys', 'state.key'), join(b.dir, 'keys', 'state.key'));
    expect((await new LocalStateBackend(b.path, { keys: stateKeys(b.dir) }).read())!.outputs).toEqual({ TOKEN });

    // A box that claims another key: that key does not authenticate it.
    const forged = JSON.parse(stateText);
    forged.sealedOutputs.keyId = (await c.keys.sealingKey()).id;
    writeFileSync(c.path, JSON.stringify(forged));
    expect((await errorOf(new LocalStateBackend(c.path, { keys: stateKeys(c.dir) }).read())).message).toMatch(/do not authenticate/);
  });

  test('ci state list and show read hosts without the key; such a reader refuses to write', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({ TOKEN }));
    rmSync(join(a.dir, 'keys'), { recursive: true });
    await errorOf(new LocalStateBackend(a.path, { keys: stateKeys(a.dir) }).read());
    const reader = new LocalStateBackend(a.path, { keys: stateKeys(a.dir), withoutOutputs: true });
    const s = await reader.read();
    expect(Object.keys(s!.hosts)).toEqual(['10.0.0.2']);
    expect(s!.outputs).toEqual({});
    await expect(reader.write(s!)).rejects.toThrow(/was read without its hook outputs and cannot be written/);
    expect(fileOf(a.path).sealedOutputs).toBeDefined();
  });

  test('a version 1 state with outputs in clear is read, and sealed on its next write, backup included', async () => {
    const a = home('a');
    const legacy = { ...withOutputs({ TOKEN }), version: 1, serial: 4 };
    mkdirSync(join(a.path, '..'), { recursive: true });
    writeFileSync(a.path, JSON.stringify(legacy, null, 2), { mode: 0o600 });
    clearSecrets();
    const read = await a.backend.read();
    expect(read!.outputs).toEqual({ TOKEN });
    expect(read!.serial).toBe(4);
    expect(redact(TOKEN)).toBe('******');
    const written = await a.backend.write(read!);
    expect(written.serial).toBe(5);
    for (const p of [a.path, `${a.path}.backup`]) {
      expect(readFileSync(p, 'utf8')).not.toContain(TOKEN);
      expect(fileOf(p).version).toBe(2);
      expect(fileOf(p).sealedOutputs.alg).toBe('AES-256-GCM');
    }
    // The backup is a complete copy of the new write: sealed too.
    expect(fileOf(`${a.path}.backup`).serial).toBe(5);
    const backup = new LocalStateBackend(`${a.path}.backup`, { keys: a.keys });
    expect((await backup.read())!.outputs).toEqual({ TOKEN });
    expect((await a.backend.read())!.outputs).toEqual({ TOKEN });
  });

  test('a version this ci does not know is refused', async () => {
    const a = home('a');
    mkdirSync(join(a.path, '..'), { recursive: true });
    writeFileSync(a.path, JSON.stringify({ ...withOutputs({}), version: 3 }));
    expect((await errorOf(a.backend.read())).message).toBe(`state ${a.path} has format version 3; this ci reads versions 1 and 2`);
  });
});

describe('state key files', () => {
  test('a key file other users can read is refused with the fix; a damaged one is named', async () => {
    const a = home('a');
    await a.backend.write(withOutputs({ TOKEN }));
    const keyFile = join(a.dir, 'keys', 'state.key');
    chmodSync(keyFile, 0o644);
    let err = await errorOf(new LocalStateBackend(a.path, { keys: stateKeys(a.dir) }).read());
    expect(err.message).toBe(`the key file ${keyFile} can be read by other users (mode 0644)`);
    expect(err.hint).toBe(`make it private: chmod 600 ${keyFile}`);
    chmodSync(keyFile, 0o600);
    const text = readFileSync(keyFile, 'utf8');
    expect(text).toMatch(/^# cloudimage state key [0-9a-f]{16} \(AES-256\)/);
    writeFileSync(keyFile, text.replace(/\n([A-Za-z0-9+/=]+)\n$/, '\nnot-a-key\n'));
    err = await errorOf(new LocalStateBackend(a.path, { keys: stateKeys(a.dir) }).read());
    expect(err.message).toBe(`${keyFile} is not a cloudimage state key`);
  });

  test('sources making the first key at the same time end up with one key', async () => {
    const keysDir = join(dir, 'keys');
    const made = await Promise.all(Array.from({ length: 8 }, () => new FileKeySource(keysDir).sealingKey()));
    expect(new Set(made.map((k) => k.id)).size).toBe(1);
    expect(readdirSync(keysDir)).toEqual(['state.key']);
    expect((await new FileKeySource(keysDir).sealingKey()).key.equals(made[0].key)).toBe(true);
  });
});
