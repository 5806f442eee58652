/**
 * `ci emulator aliyun` run as a user runs it (the compiled CLI): it prints its endpoint and data directory but never
 * the secret, serves the real SDK, stops on SIGTERM and SIGINT keeping its data, refuses a second emulator on the same
 * data, starts empty with --reset, and refuses bad flags (and a data directory light hosts cannot use) changing nothing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as $Vpc from '@alicloud/vpc20160428';
import { $OpenApiUtil } from '@alicloud/openapi-core';
import { resetEmulatorData } from '../providers/aliyun/emulator/index.js';
import { CI_BIN, runCli } from './helpers/cli.js';
import { VpcClient } from './helpers/aliyun-emulator.js';
import { labsAvailable } from './helpers/lab.js';

const ACCESS_KEY_ID = 'LTAI5tCliTest';
const SECRET = 'cli-Secret-Value-9f3k2';

interface Running {
  child: ChildProcessWithoutNullStreams;
  out(): string;
  err(): string;
  endpoint: string;
  exited: Promise<number | null>;
}

const children: ChildProcessWithoutNullStreams[] = [];

/** Starts the CLI and waits until it has printed its whole banner, endpoint to the Ctrl-C line (or exits). */
async function startCli(args: string[], env: NodeJS.ProcessEnv): Promise<Running> {
  const child = spawn(process.execPath, [CI_BIN, 'emulator', 'aliyun', '--listen', '127.0.0.1:0', ...args], {
    env: { ...process.env, FORCE_COLOR: '0', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (err += b));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      // The banner's lines may arrive in separate reads: the endpoint alone is not the whole of it.
      const m = /endpoint:\s+(\S+)/.exec(out);
      if (m && out.includes('Ctrl-C stops it')) {
        clearInterval(timer);
        resolve(m[1]);
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`ci emulator aliyun exited ${code}\n${out}\n${err}`));
    });
  });
  return { child, out: () => out, err: () => err, endpoint, exited };
}

const client = (endpoint: string, secret = SECRET) =>
  new VpcClient(new $OpenApiUtil.Config({ accessKeyId: ACCESS_KEY_ID, accessKeySecret: secret, endpoint, protocol: 'http', readTimeout: 10_000 }));

describe.skipIf(!labsAvailable())('ci emulator aliyun', () => {
  const home = mkdtempSync(join(tmpdir(), 'ci-emu-cli-'));
  const data = join(home, 'emulator-data');
  const env = { CI_HOME: home };
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
    await resetEmulatorData(data).catch(() => undefined);
    await resetEmulatorData(join(home, 'emulators', 'aliyun')).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });

  let vpcId: string;

  it('prints where it serves and keeps, never the secret, serves the SDK, and stops on SIGTERM', async () => {
    const r = await startCli(['--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET, '--latency', 'fast', '--data', data, '--faults', 'nostock=0.5,seed=3'], env);
    expect(r.out()).toContain(`data:          ${data}`);
    expect(r.out()).toContain(`access key id: ${ACCESS_KEY_ID}`);
    expect(r.out()).toContain('faults:        nostock 0.5, seed 3');
    vpcId = (await client(r.endpoint).createVpc(new $Vpc.CreateVpcRequest({ regionId: 'cn-hangzhou', cidrBlock: '10.0.0.0/16', vpcName: 'from-cli' }))).body!.vpcId!;
    const refused = await client(r.endpoint, 'wrong').describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: 'cn-hangzhou' })).catch((e: { code: string }) => e.code);
    expect(refused).toBe('SignatureDoesNotMatch');
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
    expect(r.out()).toMatch(/CreateVpc 200/);
    expect(r.out()).toMatch(/DescribeVpcs 400 SignatureDoesNotMatch/);
    expect(r.out()).toContain(`stopped; resources and hosts kept in ${data}`);
    expect(r.out() + r.err()).not.toContain(SECRET);
  });

  it('finds its resources again after a restart, takes the key from the environment, and stops on SIGINT', async () => {
    const r = await startCli(['--data', data], { ...env, ALIBABA_CLOUD_ACCESS_KEY_ID: ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET: SECRET });
    expect(r.out()).toContain('latency:       realistic');
    const vpc = client(r.endpoint);
    const kept = (await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: 'cn-hangzhou' }))).body!.vpcs!.vpc!;
    expect(kept.map((v) => [v.vpcId, v.vpcName, v.status])).toEqual([[vpcId, 'from-cli', 'Available']]);
    // Realistic latency: a new VPC takes a second or two to be Available.
    const fresh = (await vpc.createVpc(new $Vpc.CreateVpcRequest({ regionId: 'cn-hangzhou', cidrBlock: '10.1.0.0/16' }))).body!.vpcId!;
    expect((await vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: 'cn-hangzhou', vpcId: fresh }))).body!.vpcs!.vpc![0].status).toBe('Pending');

    const second = await startCli(['--data', data, '--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET], env).catch((e: Error) => e.message);
    expect(second).toMatch(/exited 1/);
    expect(second).toContain(`error: the data directory ${data} is in use by another emulator (pid ${r.child.pid})`);
    expect(second).not.toContain(SECRET);
    await expect(resetEmulatorData(data)).rejects.toThrow(`in use by another emulator (pid ${r.child.pid})`);
    const elsewhere = join(home, 'other-data');
    const taken = await runCli(['emulator', 'aliyun', '--listen', r.endpoint, '--data', elsewhere, '--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET], { env });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`error: cannot serve on ${r.endpoint}: the address is in use`);
    expect(existsSync(elsewhere)).toBe(false);

    r.child.kill('SIGINT');
    expect(await r.exited).toBe(0);
    expect(r.out() + r.err()).not.toContain(SECRET);
  });

  it('starts empty with --reset, under $CI_HOME by default', async () => {
    const r = await startCli(['--data', data, '--reset', '--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET], env);
    expect((await client(r.endpoint).describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: 'cn-hangzhou' }))).body!.totalCount).toBe(0);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
    const d = await startCli(['--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET], env);
    expect(d.out()).toContain(`data:          ${join(home, 'emulators', 'aliyun')}`);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('refuses bad flags with a usage error and exit code 64, without the secret', async () => {
    const cases: [string[], string][] = [
      [['--latency', 'slow'], 'error: --latency must be fast or realistic, not "slow"'],
      [['--faults', 'throttling=2'], 'error: --faults: throttling must be a share between 0 and 1, not "2"'],
      [['--listen', 'nowhere'], 'error: --listen must be HOST:PORT'],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['emulator', 'aliyun', '--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET, '--data', data, ...flags], { env });
      expect(r.code).toBe(64);
      expect(r.stderr).toContain(message);
      expect(r.stdout + r.stderr).not.toContain(SECRET);
    }
    const inVar = join('/var/tmp', `ci-emu-refused-${process.pid}`, 'data');
    const overlaid = await runCli(['emulator', 'aliyun', '--access-key-id', ACCESS_KEY_ID, '--access-key-secret', SECRET, '--data', inVar], { env });
    expect(overlaid.code).toBe(1);
    expect(overlaid.stderr).toContain(`error: the data directory ${inVar} is inside /var, which light instance hosts overlay`);
    expect(existsSync(dirname(inVar))).toBe(false);
    const noSecret = await runCli(['emulator', 'aliyun', '--access-key-id', ACCESS_KEY_ID], { env: { ...env, ALIBABA_CLOUD_ACCESS_KEY_SECRET: '' } });
    expect(noSecret.code).toBe(64);
    expect(noSecret.stderr).toContain('hint: pass --access-key-secret SECRET (or set ALIBABA_CLOUD_ACCESS_KEY_SECRET)');
  });
});
