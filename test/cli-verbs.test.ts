/**
 * `ci plan --target`, `ci plan --destroy`, `ci apply <destroy plan>`, `ci version` and their exit codes, through the
 * compiled CLI. The hosts are loopback addresses with SSH on port 1, where nothing listens: a plan's probe of a host
 * is refused at once (a warning), and no traffic leaves this machine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';
import { removeDir, tempDir, writeTree } from './helpers/tmp.js';
import { LocalStateBackend, createState, statePathFor } from '../state/index.js';
import { stateKeys } from '../state/keys.js';
import type { Digest } from '../engine/kernel/digest.js';

const PACKAGE = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
const SECRET = 'verbs-pa55-w0rd';
const dir = tempDir('ci-verbs-');
const home = join(dir, 'home');
const env = { CI_HOME: home };
const cf = join(dir, 'Clusterfile');
const statePath = statePathFor('verbs', home);
const NOTE = 'Note: --target given: this plan is partial; run `ci plan` without --target to see what else differs.\n';

beforeAll(async () => {
  writeTree(dir, {
    'ctx/Kubefile': 'FROM scratch\nCMD echo hi\n',
    Clusterfile: `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: verbs}
spec:
  image: verbs:v1
  ssh: {passwd: ${SECRET}, port: 1}
  hosts:
  - {ips: [127.0.0.2], roles: [master]}
  - {ips: [127.0.0.3, 127.0.0.4], roles: [node]}
`,
  });
  const b = await runCli(['build', '-q', '-t', 'verbs:v1', join(dir, 'ctx')], { env });
  expect(b.code, b.stderr).toBe(0);
}, 120_000);
afterAll(() => removeDir(dir));

/** A state as an apply of all three hosts leaves it, written with this home's key. */
async function appliedState() {
  const s = createState('verbs', 'BAREMETAL');
  const img = 'sha256:' + 'a'.repeat(64);
  s.master0 = '127.0.0.2';
  s.outputs = { TOKEN: 'verbs-t0ken' };
  for (const [ip, roles] of [['127.0.0.2', ['master']], ['127.0.0.3', ['node']], ['127.0.0.4', ['node']]] as const) {
    s.hosts[ip] = {
      key: ip, ip, roles: [...roles], ssh: { user: 'root', port: 1 }, layers: [], rootfsImage: img as Digest,
      hooks: { 'init-host': img as Digest, [roles[0] === 'master' ? 'init-master0' : 'join-node']: img as Digest }, status: 'active',
    };
  }
  return new LocalStateBackend(statePath, { keys: stateKeys(home) }).write(s);
}

describe('ci plan --target', () => {
  it('cuts the plan down to the host and what it needs, says it is partial, in text and JSON', async () => {
    const r = await runCli(['plan', '-f', cf, '--target', '127.0.0.3', '--detailed-exitcode'], { env });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toMatch(/^ci will apply cluster verbs with image verbs:v1 \(\w+\), only for 127\.0\.0\.3 and what it needs:\n/);
    expect(r.stdout).toContain('+ host 127.0.0.2 (master)');
    expect(r.stdout).toContain('+ hook init-master0');
    expect(r.stdout).not.toContain('127.0.0.4');
    expect(r.stdout).not.toContain('run CMD');
    expect(r.stdout.endsWith('Plan: 2 to add, 0 to change, 0 to destroy.\n' + NOTE)).toBe(true);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    const json = JSON.parse((await runCli(['plan', '-f', cf, '--target', '127.0.0.3', '--json'], { env })).stdout);
    expect(json.targets).toEqual(['127.0.0.3']);
    expect(json.hosts.map((h: { key: string }) => h.key)).toEqual(['127.0.0.2', '127.0.0.3']);
    // A saved partial plan records its targets.
    const out = join(dir, 'target.plan');
    expect((await runCli(['plan', '-f', cf, '--target', '127.0.0.3', '--target', '127.0.0.4', '--out', out], { env })).code).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).plan.targets).toEqual(['127.0.0.3', '127.0.0.4']);
  });

  it('an unknown host is a usage error naming it (64, never 2), and nothing is made', async () => {
    const r = await runCli(['plan', '-f', cf, '--target', '127.0.0.9', '--detailed-exitcode'], { env });
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      'error: --target 127.0.0.9: no such host in the Clusterfile or the state of cluster verbs\n' +
        'hint: name a host by its key, IP or name; the hosts are 127.0.0.2, 127.0.0.3, 127.0.0.4\n',
    );
    expect(r.stdout).toBe('');
    const a = await runCli(['apply', '-f', cf, '--target', 'nope', '--auto-approve'], { env });
    expect(a.code).toBe(64);
    expect(a.stderr).toContain('error: --target nope: no such host');
    expect(existsSync(statePath)).toBe(false);
  });

  it('is refused with --destroy and with a saved plan, before anything is read', async () => {
    const d = await runCli(['plan', '-f', cf, '--destroy', '--target', '127.0.0.3', '--detailed-exitcode'], { env });
    expect(d.code).toBe(64);
    expect(d.stderr).toMatch(/^error: --target cannot be given with --destroy: a destroy plan removes the whole cluster\nhint: run `ci plan --help`/);
    const a = await runCli(['apply', '-f', cf, '--target', '127.0.0.3', join(dir, 'no-such.plan')], { env });
    expect(a.code).toBe(64);
    expect(a.stderr).toMatch(/^error: --target cannot be given with a saved plan: the plan file records the targets it was made with\nhint: run `ci apply --help`/);
  });
});

describe('ci plan --destroy', () => {
  it('with no state: nothing to destroy, exit 0 even with --detailed-exitcode', async () => {
    const r = await runCli(['plan', '-f', cf, '--destroy', '--detailed-exitcode'], { env });
    expect(r).toEqual({ code: 0, stdout: 'Nothing to destroy: no hosts or infrastructure of cluster verbs in the state, and no host of it left on this machine.\n', stderr: '' });
    expect(existsSync(statePath)).toBe(false);
    expect(existsSync(`${statePath}.lock`)).toBe(false);
  });

  it('shows the plan ci destroy runs, changes nothing, saves it; a stale one is refused by apply', async () => {
    const written = await appliedState();
    const before = readFileSync(statePath, 'utf8');
    const r = await runCli(['plan', '-f', cf, '--destroy', '--detailed-exitcode'], { env });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toMatch(/^ci will destroy cluster verbs:\n/);
    for (const h of ['127.0.0.2 (master)', '127.0.0.3 (node)', '127.0.0.4 (node)']) expect(r.stdout).toContain(`- host ${h}`);
    expect(r.stdout).toContain('- hook clean');
    expect(r.stdout).toContain('Plan: 0 to add, 0 to change, 3 to destroy.');
    expect(r.stdout + r.stderr).not.toContain('verbs-t0ken');
    const json = JSON.parse((await runCli(['plan', '-f', cf, '--destroy', '--json'], { env })).stdout);
    expect(json).toMatchObject({ operation: 'destroy', lineage: written.lineage, serial: written.serial });
    const out = join(dir, 'destroy.plan');
    const saved = await runCli(['plan', '-f', cf, '--destroy', '--out', out], { env });
    expect(saved.stdout).toContain(`Saved the plan to ${out}; run \`ci apply -f ${cf} ${out}\` to destroy the cluster with exactly these actions.`);
    expect(readFileSync(statePath, 'utf8')).toBe(before);
    expect(existsSync(`${statePath}.lock`)).toBe(false);
    // The state moves on (another write): the saved destroy plan is refused, with the way to a new one.
    await new LocalStateBackend(statePath, { keys: stateKeys(home) }).write((await new LocalStateBackend(statePath, { keys: stateKeys(home) }).read())!);
    const stale = await runCli(['apply', '-f', cf, out], { env });
    expect(stale.code).toBe(1);
    expect(stale.stderr).toBe(
      `error: the state changed since the plan was made (serial ${written.serial} -> ${written.serial + 1})\n` +
        'hint: run `ci plan --destroy` again and review the new plan\n',
    );
    expect(Object.keys(JSON.parse(readFileSync(statePath, 'utf8')).hosts)).toHaveLength(3);
    // So is one made before the Clusterfile changed (its clean-time plugins are steps of the plan).
    await runCli(['plan', '-f', cf, '--destroy', '--out', out], { env });
    const text = readFileSync(cf, 'utf8');
    writeFileSync(cf, text.replace('image: verbs:v1', 'image: verbs:v2'));
    try {
      const changed = await runCli(['apply', '-f', cf, out], { env });
      expect(changed.code).toBe(1);
      expect(changed.stderr).toBe('error: the Clusterfile changed since the plan was made\nhint: run `ci plan --destroy` again and review the new plan\n');
    } finally {
      writeFileSync(cf, text);
    }
    expect(Object.keys(JSON.parse(readFileSync(statePath, 'utf8')).hosts)).toHaveLength(3);
  });
});

describe('ci version', () => {
  it('prints the version as --version does; extra arguments are a usage error', async () => {
    expect(await runCli(['version'], { env })).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: '' });
    expect(await runCli(['--version'], { env })).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: '' });
    const r = await runCli(['version', 'now'], { env });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^error: too many arguments for 'version'/);
  });
});

describe('usage errors of the new verbs exit 64, never 2', () => {
  const cases: [string, string[], RegExp][] = [
    ['state rm without a host', ['state', 'rm', '--detailed-exitcode'], /^error: unknown option '--detailed-exitcode'/],
    ['state rm with no argument', ['state', 'rm'], /^error: missing required argument 'host'\nhint: run `ci state rm --help`/],
    ['--target without its value', ['plan', '--detailed-exitcode', '--target'], /^error: option '--target <host>' argument missing/],
    ['a mistyped --destroy', ['plan', '--destory', '--detailed-exitcode'], /^error: unknown option '--destory'\n\(Did you mean --destroy\?\)/],
  ];
  it.each(cases)('%s', async (_name, args, stderr) => {
    const r = await runCli(args, { env, cwd: dir });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(stderr);
  });
});

// Saved destroy plans that run: see test/e2e-verbs.test.ts (local hosts).

