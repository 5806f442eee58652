/** The flags of `ci emulator aliyun` as typed options, the refusals of bad ones, and the fault draws. */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../engine/kernel/errors.js';
import { Faults } from '../providers/aliyun/emulator/faults.js';
import { parseEmulatorFlags, parseFaults } from '../providers/aliyun/emulator/options.js';

const usage = (fn: () => unknown): UsageError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('no UsageError');
};

describe('emulator flags', () => {
  it('gives typed options with defaults, the access key from the environment when no flag names it', () => {
    const o = parseEmulatorFlags({}, { CI_HOME: '/srv/ci', ALIBABA_CLOUD_ACCESS_KEY_ID: 'AK', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'SK' });
    expect(o).toEqual({
      host: '127.0.0.1',
      port: 18080,
      accessKeyId: 'AK',
      accessKeySecret: 'SK',
      dataDir: '/srv/ci/emulators/aliyun',
      latency: 'realistic',
      faults: undefined,
      stock: undefined,
      reset: false,
      instanceKind: 'light',
    });
    const f = parseEmulatorFlags(
      { listen: '[::1]:0', accessKeyId: 'id', accessKeySecret: 'secret', latency: 'fast', data: 'rel/dir', reset: true, instanceKind: 'systemd', faults: 'throttling=0.3,5xx=0.05,timeout-once=RunInstances,CreateVpc,nostock=0,stock=3,seed=9,retry-after=2000' },
      {},
    );
    expect(f).toMatchObject({ host: '::1', port: 0, latency: 'fast', reset: true, instanceKind: 'systemd', stock: 3 });
    expect(f.dataDir).toBe(`${process.cwd()}/rel/dir`);
    expect(f.faults).toEqual({ throttling: 0.3, serverError: 0.05, timeoutOnce: ['RunInstances', 'CreateVpc'], noStock: 0, seed: 9, retryAfterMs: 2000 });
  });

  it('refuses bad values, naming the flag', () => {
    const env = { ALIBABA_CLOUD_ACCESS_KEY_ID: 'AK', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'SK' };
    expect(usage(() => parseEmulatorFlags({}, {})).message).toContain('access key id');
    expect(usage(() => parseEmulatorFlags({ accessKeyId: 'x' }, {})).hint).toContain('--access-key-secret');
    expect(usage(() => parseEmulatorFlags({ listen: '18080' }, env)).message).toContain('--listen must be HOST:PORT');
    expect(usage(() => parseEmulatorFlags({ listen: 'localhost:70000' }, env)).message).toContain('--listen');
    expect(usage(() => parseEmulatorFlags({ latency: 'slow' }, env)).message).toBe('--latency must be fast or realistic, not "slow"');
    expect(usage(() => parseEmulatorFlags({ instanceKind: 'vm' }, env)).message).toContain('--instance-kind');
    expect(usage(() => parseFaults('throttling=1.5')).message).toContain('throttling must be a share between 0 and 1');
    expect(usage(() => parseFaults('5xx=')).message).toContain('5xx');
    expect(usage(() => parseFaults('latency=3')).message).toContain('unknown key "latency"');
    expect(usage(() => parseFaults('nostock=0.1,RunInstances')).message).toContain('"RunInstances" is not KEY=VALUE');
    expect(usage(() => parseFaults('timeout-once=run instances')).message).toContain('action names');
    expect(usage(() => parseFaults('seed=-1')).message).toContain('seed must be a whole number');
  });
});

describe('fault draws', () => {
  it('repeat for a seed and keep to their shares', () => {
    const sequence = (seed: number) => {
      const f = new Faults({ throttling: 0.25, serverError: 0.2, noStock: 0.5 }, seed);
      return Array.from({ length: 2000 }, () => [f.before()?.apiCode ?? 'ok', f.noStock()].join(' '));
    };
    const a = sequence(1);
    expect(sequence(1)).toEqual(a);
    expect(sequence(2)).not.toEqual(a);
    const share = (p: (s: string) => boolean) => a.filter(p).length / a.length;
    expect(share((s) => s.startsWith('Throttling.User'))).toBeGreaterThan(0.2);
    expect(share((s) => s.startsWith('Throttling.User'))).toBeLessThan(0.3);
    expect(share((s) => /^(ServiceUnavailable|InternalError)/.test(s))).toBeGreaterThan(0.75 * 0.2 - 0.04);
    expect(share((s) => /^(ServiceUnavailable|InternalError)/.test(s))).toBeLessThan(0.75 * 0.2 + 0.04);
    expect(share((s) => s.endsWith('true'))).toBeGreaterThan(0.45);
    expect(share((s) => s.endsWith('true'))).toBeLessThan(0.55);
  });

  it('hold back the first call of each listed action only', () => {
    const f = new Faults({ timeoutOnce: ['RunInstances'] }, 1);
    expect(f.takeTimeout('CreateVpc')).toBe(false);
    expect(f.takeTimeout('RunInstances')).toBe(true);
    expect(f.takeTimeout('RunInstances')).toBe(false);
  });
});
