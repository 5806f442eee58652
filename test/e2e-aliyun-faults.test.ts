/**
 * Provider ALI_CLOUD when things go wrong, through the `ci` a user runs, against the emulator: throttling, 5xx answers
 * and an ambiguous RunInstances timeout, ten runs in a row, with never an instance too many; an apply killed while
 * instances are being made, rerun, making no second batch; and a zone out of stock, which is not retried.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labsAvailable } from './helpers/lab.js';
import { CI_BIN } from './helpers/cli.js';
import { cleanupHome, describeRun, makeHome, waitFor, type E2eHome } from './helpers/e2e.js';
import { startTestEmulator, type TestEmulator } from './helpers/aliyun-emulator.js';
import { clusterfile, emulatorEnv, EMPTY, inventory } from './helpers/aliyun-e2e.js';

const EXAMPLE = fileURLToPath(new URL('../examples/etcd', import.meta.url));
const LONG = 600_000;

describe.skipIf(!labsAvailable())('provider ALI_CLOUD when the API misbehaves', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let f: string;

  beforeAll(async () => {
    emu = await startTestEmulator({ faults: { throttling: 0.3, serverError: 0.05, timeoutOnce: ['RunInstances'], retryAfterMs: 50, seed: 7 } });
    home = makeHome('ci-e2e-aliyun-faults-');
    env = emulatorEnv(emu);
    const built = await home.ci(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    expect(built.code, describeRun(['build'], built)).toBe(0);
    f = join(home.dir, 'Clusterfile');
    writeFileSync(f, clusterfile('faulty', emu.endpoint, 2, ', timeoutSeconds: 5'));
  }, 300_000);

  afterAll(async () => {
    if (home) {
      await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('throttling, 5xx answers and an ambiguous RunInstances timeout: exactly the desired instances, ten runs in a row', async () => {
    for (let run = 1; run <= 10; run++) {
      const apply = await home.ci(['apply', '-f', f, '--auto-approve'], { env });
      expect(apply.code, `run ${run}: ${describeRun(['apply'], apply)}`).toBe(0);
      const names = (await inventory(emu)).instances.filter((i) => i.status !== 'Stopping').map((i) => i.hostName).sort();
      expect(names, `run ${run}`).toEqual(['faulty-master-1', 'faulty-node-1', 'faulty-node-2']);
      const plan = await home.ci(['plan', '-f', f, '--detailed-exitcode'], { env });
      expect(plan.code, `run ${run}: ${describeRun(['plan'], plan)}`).toBe(0);
      const destroy = await home.ci(['destroy', '-f', f, '--auto-approve'], { env });
      expect(destroy.code, `run ${run}: ${describeRun(['destroy'], destroy)}`).toBe(0);
      expect(await inventory(emu), `run ${run}`).toEqual(EMPTY);
    }
    // The faults did happen: throttled and failed answers were retried.
    const refused = emu.events.filter((e) => e.type === 'request' && (e.status ?? 200) >= 400);
    expect(refused.some((e) => e.code === 'Throttling.User')).toBe(true);
    expect(refused.some((e) => e.code === 'ServiceUnavailable' || e.code === 'InternalError')).toBe(true);
    // The first RunInstances was performed but its answer never came in time; its retry, with the same ClientToken,
    // made nothing more: three instances a run, thirty in all.
    expect(emu.events.some((e) => e.type === 'request' && e.action === 'RunInstances' && e.message.includes('timeout-once'))).toBe(true);
    expect(emu.events.filter((e) => e.type === 'instance' && e.change === 'host-up')).toHaveLength(30);
  }, 1_800_000);
});

describe.skipIf(!labsAvailable())('provider ALI_CLOUD when an apply is killed while instances are being made', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let f: string;

  beforeAll(async () => {
    emu = await startTestEmulator({ latency: 'realistic' });
    home = makeHome('ci-e2e-aliyun-kill-');
    env = emulatorEnv(emu);
    const built = await home.ci(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    expect(built.code).toBe(0);
    f = join(home.dir, 'Clusterfile');
    writeFileSync(f, clusterfile('killed', emu.endpoint, 2));
  }, 300_000);

  afterAll(async () => {
    if (home) {
      await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('the rerun replays the same ClientToken: no second batch of instances', async () => {
    const child = spawn(process.execPath, [CI_BIN, 'apply', '-f', f, '--auto-approve'], { env: { ...process.env, ...env, CI_HOME: home.dir }, stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    // Killed once both groups' RunInstances were accepted, while the instances are still starting.
    await waitFor(() => emu.events.filter((e) => e.type === 'request' && e.action === 'RunInstances' && e.status === 200).length >= 2, 'both RunInstances to be accepted', 120_000, 50);
    child.kill('SIGKILL');
    await exited;
    const tokens = home.readState('killed')!.pending ?? {};
    expect(Object.keys(tokens).sort()).toEqual(['create-host:killed-master', 'create-host:killed-node']);
    const made = (await inventory(emu)).instances.map((i) => i.id).sort();
    expect(made).toHaveLength(3);
    // The lock of the killed apply names a process of this machine that is gone: the rerun takes it over, saying so.
    const lock = JSON.parse(readFileSync(`${home.statePath('killed')}.lock`, 'utf8')) as { id: string; pid: number };
    const rerun = await home.ci(['apply', '-f', f, '--auto-approve'], { env });
    expect(rerun.code, describeRun(['apply'], rerun)).toBe(0);
    expect(rerun.stdout).toContain(`warning: took over the lock on ${home.statePath('killed')} of `);
    expect(rerun.stdout).toContain(`(pid ${lock.pid}, apply since `);
    const after = await inventory(emu);
    expect(after.instances.map((i) => i.id).sort()).toEqual(made);
    expect(home.readState('killed')!.pending).toBeUndefined();
    await home.ci(['plan', '-f', f, '--detailed-exitcode'], { env }).then((r) => expect(r.code, describeRun(['plan'], r)).toBe(0));
  }, LONG);
});

describe.skipIf(!labsAvailable())('provider ALI_CLOUD when the zone has no stock', () => {
  let emu: TestEmulator;
  let home: E2eHome;
  let env: NodeJS.ProcessEnv;
  let f: string;

  beforeAll(async () => {
    emu = await startTestEmulator({ faults: { noStock: 1 } });
    home = makeHome('ci-e2e-aliyun-nostock-');
    env = emulatorEnv(emu);
    const built = await home.ci(['build', '-t', 'etcd-example:v1', EXAMPLE], { env });
    expect(built.code, describeRun(['build'], built)).toBe(0);
    f = join(home.dir, 'Clusterfile');
    writeFileSync(f, clusterfile('nostock', emu.endpoint, 2));
  }, 300_000);

  afterAll(async () => {
    if (home) {
      await home.ci(['destroy', '-f', f, '--auto-approve'], { env }).catch(() => undefined);
      await cleanupHome(home);
    }
    await emu?.cleanup();
  }, 600_000);

  it('stops at once, naming the group, the API action and the code; destroy then leaves nothing', async () => {
    const apply = await home.ci(['apply', '-f', f, '--auto-approve'], { env });
    expect(apply.code, describeRun(['apply'], apply)).toBe(1);
    const said = apply.stdout + apply.stderr;
    expect(said).toContain('instances of group node (nostock-node-1, nostock-node-2): RunInstances failed with OperationDenied.NoStock');
    expect(said).toContain('instance of group master (nostock-master-1): RunInstances failed with OperationDenied.NoStock');
    // Not retried: one RunInstances a group.
    expect(emu.events.filter((e) => e.type === 'request' && e.action === 'RunInstances')).toHaveLength(2);
    expect(said).not.toContain(emu.accessKeySecret);
    expect((await inventory(emu)).instances).toEqual([]);
    const destroy = await home.ci(['destroy', '-f', f, '--auto-approve'], { env });
    expect(destroy.code, describeRun(['destroy'], destroy)).toBe(0);
    expect(await inventory(emu)).toEqual(EMPTY);
  }, LONG);
});
