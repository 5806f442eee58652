import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { labsAvailable, openTestLab, type TestLab } from './helpers/lab.js';
import { connectSsh, type SshSession } from '../providers/ssh/session.js';
import { LocalLab } from '../providers/local/lab.js';
import type { LocalHostError } from '../providers/local/errors.js';
import { HostUnreachableError } from '../engine/kernel/errors.js';
import { RemoteTimeoutError, SshAuthError, SshConnectionLostError } from '../providers/ssh/errors.js';

const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
const pidAlive = (pid: number) => existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

interface RecordedHost {
  hostKey: string;
  proc?: { pid: number };
  netns: string;
  veth: string;
}
const readLab = (dir: string) =>
  JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8')) as { id: string; bridge: string; hosts: Record<string, RecordedHost> };

describe.skipIf(!labsAvailable())('local light hosts', () => {
  let t: TestLab;
  const sessions = new Map<string, SshSession>();
  const names = ['h1', 'h2', 'h3'];

  beforeAll(async () => {
    t = await openTestLab();
    await Promise.all(names.map((n) => t.lab.addHost(n, 'light')));
    for (const n of names) sessions.set(n, await connectSsh(t.lab.sshTarget(n), { pinnedHostKey: t.lab.host(n)!.hostKey }));
  });

  afterAll(async () => {
    for (const s of sessions.values()) await s.close().catch(() => undefined);
    await t?.cleanup();
  });

  it('gives every host its own name, address and host key, reachable over SSH as root', async () => {
    const hosts = t.lab.hosts();
    expect(hosts.map((h) => h.name)).toEqual(names);
    expect(new Set(hosts.map((h) => h.ip)).size).toBe(3);
    expect(new Set(hosts.map((h) => h.hostKey)).size).toBe(3);
    for (const h of hosts) {
      expect(h.ip.startsWith(t.lab.subnet.gateway.replace(/\.1$/, '.'))).toBe(true);
      const s = sessions.get(h.name)!;
      expect(s.hostKey).toBe(h.hostKey);
      const r = await s.execChecked('hostname; id -u');
      expect(r.stdout).toBe(`${h.hostname}\n0\n`);
    }
    // Made at once (each host's own part outside the lab's lock): the file still records every host's key and process.
    const onDisk = readLab(t.lab.dir).hosts;
    for (const h of hosts) {
      expect(onDisk[h.name].hostKey).toBe(h.hostKey);
      expect(pidAlive(onDisk[h.name].proc!.pid)).toBe(true);
    }
  });

  it('keeps files written on one host away from the others and from this machine', async () => {
    const marker = `ci-isolation-${randomBytes(4).toString('hex')}`;
    const h1 = sessions.get('h1')!;
    for (const dir of ['/etc', '/root', '/tmp', '/var/lib', '/usr/local/bin']) {
      await h1.execChecked(`echo hi > ${dir}/${marker}`);
      expect((await h1.execChecked(`cat ${dir}/${marker}`)).stdout).toBe('hi\n');
      expect(existsSync(`${dir}/${marker}`)).toBe(false);
      for (const other of ['h2', 'h3']) {
        const r = await sessions.get(other)!.exec(`test -e ${dir}/${marker}`);
        expect(r.code).toBe(1);
      }
    }
  });

  it('lets hosts of one lab reach each other on the lab bridge', async () => {
    const h2 = t.lab.host('h2')!;
    const r = await sessions.get('h1')!.execChecked(`bash -c 'exec 3<>/dev/tcp/${h2.ip}/22; head -c 7 <&3'`, { timeoutMs: 5000 });
    expect(r.stdout).toBe('SSH-2.0');
  });

  it('returns a running host as is when it is added again, also from a second lab handle', async () => {
    const before = readLab(t.lab.dir).hosts.h1.proc!.pid;
    const again = await t.lab.addHost('h1', 'light');
    expect(again).toEqual(t.lab.host('h1'));
    const reopened = await LocalLab.open(t.lab.dir);
    expect(reopened.hosts()).toEqual(t.lab.hosts());
    await reopened.addHost('h2', 'light');
    expect(readLab(t.lab.dir).hosts.h1.proc!.pid).toBe(before);
  });

  it('fails commands while the link is cut and recovers once it is restored', async () => {
    const s = sessions.get('h3')!;
    await t.lab.cutLink('h3');
    try {
      const err = await s.exec('echo up', { timeoutMs: 1500 }).catch((e: unknown) => e);
      expect(err instanceof RemoteTimeoutError || err instanceof SshConnectionLostError).toBe(true);
      const fresh = await connectSsh(t.lab.sshTarget('h3'), { attempts: 2, timeoutMs: 700, retryBaseMs: 10 }).catch((e: unknown) => e);
      expect(fresh).toBeInstanceOf(HostUnreachableError);
    } finally {
      await t.lab.restoreLink('h3');
    }
    const r = await s.execChecked('echo up', { timeoutMs: 20_000 });
    expect(r.stdout).toBe('up\n');
  });

  it('limits bandwidth with shapeLink and lifts the limit again', async () => {
    const s = sessions.get('h2')!;
    const data = randomBytes(128 * 1024);
    await t.lab.shapeLink('h2', 800);
    const t0 = Date.now();
    await s.upload(data, '/root/shaped.bin');
    expect(Date.now() - t0).toBeGreaterThan(800);
    await t.lab.shapeLink('h2', 0);
    const ns = readLab(t.lab.dir).hosts.h2.netns;
    expect(execFileSync('tc', ['-n', ns, 'qdisc', 'show', 'dev', 'eth0'], { encoding: 'utf8' })).not.toContain('tbf');
    const t1 = Date.now();
    await s.upload(data, '/root/unshaped.bin');
    expect(Date.now() - t1).toBeLessThan(800);
  });

  it('removes a single host with everything it had', async () => {
    await t.lab.addHost('extra', 'light');
    const rec = readLab(t.lab.dir).hosts.extra;
    await t.lab.removeHost('extra');
    expect(t.lab.host('extra')).toBeUndefined();
    expect(pidAlive(rec.proc!.pid)).toBe(false);
    expect(netnsList()).not.toContain(rec.netns);
    expect(existsSync(join(t.lab.dir, 'hosts', 'extra'))).toBe(false);
    await t.lab.removeHost('extra');
  });


  it('refuses a host of an unknown kind before recording it, so the lab still opens afterwards', async () => {
    const err = await t.lab.addHost('oddkind', 'node' as 'light').catch((e: unknown) => e);
    expect((err as LocalHostError).code).toBe('LOCAL_HOST_KIND_INVALID');
    expect((err as Error).message).toBe('invalid kind "node" for local host "oddkind"');
    expect((err as LocalHostError).hint).toBe('use one of: light, systemd');
    expect(readLab(t.lab.dir).hosts.oddkind).toBeUndefined();
    expect(netnsList()).not.toContain(`ci-${t.lab.id}-oddkind`);
    const again = await LocalLab.open(t.lab.dir);
    expect(again.hosts().map((h) => h.name).sort()).toEqual(names);
  });
  it('a removal asked while the host is being made waits for it, then removes everything it had', async () => {
    const id = readLab(t.lab.dir).id;
    // This lab's sshds only (its own subnet): other test files make and remove hosts of their own meanwhile.
    const listen = `ListenAddress=${t.lab.subnet.gateway.replace(/\.1$/, '.')}`;
    const labSshds = () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(listen) && l.includes('/usr/sbin/sshd -D')).length;
    const before = labSshds();
    expect(before).toBeGreaterThan(0);
    // Asked while the host's own part (files, key, links, sshd) is made outside the lab's lock.
    const adding = t.lab.addHost('gone', 'light');
    const removing = t.lab.removeHost('gone');
    await adding;
    await removing;
    expect(t.lab.host('gone')).toBeUndefined();
    expect(readLab(t.lab.dir).hosts.gone).toBeUndefined();
    expect(netnsList()).not.toContain(`ci-${id}-gone`);
    expect(existsSync(join(t.lab.dir, 'hosts', 'gone'))).toBe(false);
    expect(labSshds()).toBe(before);
  });

  it('gives a host made at the address of a removed one the same MAC, so neighbour caches stay right', async () => {
    const mac = (ns: string) => /link\/ether (\S+)/.exec(execFileSync('ip', ['-n', ns, 'link', 'show', 'eth0'], { encoding: 'utf8' }))![1];
    await t.lab.addHost('first', 'light');
    const before = { ip: t.lab.host('first')!.ip, mac: mac(readLab(t.lab.dir).hosts.first.netns) };
    await t.lab.removeHost('first');
    await t.lab.addHost('second', 'light');
    try {
      expect(t.lab.host('second')!.ip).toBe(before.ip);
      expect(mac(readLab(t.lab.dir).hosts.second.netns)).toBe(before.mac);
      const others = t.lab.hosts().filter((h) => h.name !== 'second');
      expect(new Set(others.map((h) => mac(readLab(t.lab.dir).hosts[h.name].netns)))).not.toContain(before.mac);
    } finally {
      await t.lab.removeHost('second');
    }
  });

  it('removes a host that starts but never lets us in, with everything it had, before reporting the failure', async () => {
    // The host's own sshd configuration (its layer over this machine's /etc) refuses root.
    const confDir = join(t.lab.dir, 'hosts', 'locked', 'upper', 'etc', 'ssh', 'sshd_config.d');
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, 'deny.conf'), 'DenyUsers root\n');
    const id = readLab(t.lab.dir).id;
    const err = await t.lab.addHost('locked', 'light').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshAuthError);
    expect(t.lab.host('locked')).toBeUndefined();
    expect(readLab(t.lab.dir).hosts.locked).toBeUndefined();
    expect(netnsList()).not.toContain(`ci-${id}-locked`);
    expect(existsSync(join(t.lab.dir, 'hosts', 'locked'))).toBe(false);
    const procs = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(procs).not.toContain(join(t.lab.dir, 'hosts', 'locked'));
  });

  it('destroy leaves no namespace, process, link, mount or directory behind, and can run twice', async () => {
    const recorded = readLab(t.lab.dir);
    const pids = Object.values(recorded.hosts).map((h) => h.proc!.pid);
    expect(pids.every(pidAlive)).toBe(true);
    for (const s of sessions.values()) await s.close();
    sessions.clear();
    await t.lab.destroy();
    await t.lab.destroy();
    expect(netnsList()).not.toContain(`ci-${recorded.id}-`);
    expect(pids.filter(pidAlive)).toEqual([]);
    expect(existsSync(`/sys/class/net/${recorded.bridge}`)).toBe(false);
    for (const h of Object.values(recorded.hosts)) expect(existsSync(`/sys/class/net/${h.veth}`)).toBe(false);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(t.lab.dir);
    expect(existsSync(t.lab.dir)).toBe(false);
  });
});

describe.skipIf(!labsAvailable())('local labs across processes', () => {
  it('gives two labs opened at once different subnets and bridges', async () => {
    const [a, b] = await Promise.all([openTestLab(), openTestLab()]);
    try {
      expect(a.lab.subnet.cidr).not.toBe(b.lab.subnet.cidr);
      expect(a.lab.id).not.toBe(b.lab.id);
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });

  it('refuses to open a lab without root, saying so', () => {
    const labModule = new URL('../dist/providers/local/lab.js', import.meta.url).href;
    const dir = join(tmpdir(), `ci-nonroot-${randomBytes(4).toString('hex')}`);
    const script = `const { LocalLab } = await import(${JSON.stringify(labModule)});
      try { await LocalLab.open(${JSON.stringify(dir)}); console.log('opened'); }
      catch (e) { console.log(e.code + ': ' + e.message); }`;
    const out = execFileSync('runuser', ['-u', 'nobody', '--', process.execPath, '--input-type=module', '-e', script], {
      encoding: 'utf8',
      cwd: tmpdir(),
      timeout: 30_000,
    });
    expect(out).toMatch(/^LOCAL_NOT_ROOT: provider LOCAL needs root.*uid 65534/);
    expect(existsSync(dir)).toBe(false);
  });

  it('keeps hosts running after the process that created them exits', async () => {
    const t = await openTestLab();
    try {
      // The compiled module (built by the test global setup) runs in a separate Node process.
      const labModule = new URL('../dist/providers/local/lab.js', import.meta.url).href;
      const script = `const { LocalLab } = await import(${JSON.stringify(labModule)});
        const lab = await LocalLab.open(${JSON.stringify(t.lab.dir)});
        await lab.addHost('survivor', 'light');`;
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'pipe', timeout: 60_000 });
      const again = await LocalLab.open(t.lab.dir);
      const host = again.host('survivor')!;
      const pid = readLab(t.lab.dir).hosts.survivor.proc!.pid;
      expect(pidAlive(pid)).toBe(true);
      const s = await connectSsh(again.sshTarget('survivor'), { pinnedHostKey: host.hostKey, attempts: 1 });
      expect((await s.execChecked('hostname')).stdout).toBe('survivor\n');
      await s.close();
      await again.destroy();
      expect(pidAlive(pid)).toBe(false);
    } finally {
      await t.cleanup();
    }
  });
});

describe.skipIf(!labsAvailable())('local systemd host', () => {
  let t: TestLab;
  let s: SshSession | undefined;

  beforeAll(async () => {
    t = await openTestLab();
    const host = await t.lab.addHost('sys1', 'systemd');
    s = await connectSsh(t.lab.sshTarget('sys1'), { pinnedHostKey: host.hostKey });
  });

  afterAll(async () => {
    await s?.close().catch(() => undefined);
    await t?.cleanup();
  });

  it('boots systemd to running (or degraded) under its own hostname', async () => {
    const r = await s!.exec('systemctl is-system-running --wait', { timeoutMs: 60_000 });
    expect(['running', 'degraded']).toContain(r.stdout.trim());
    expect((await s!.execChecked('hostname')).stdout.trim()).toBe('sys1');
  });

  it('starts a unit installed over SSH', async () => {
    await s!.upload(
      Buffer.from('[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n'),
      '/etc/systemd/system/ci-demo.service',
    );
    await s!.execChecked('systemctl daemon-reload && systemctl enable --now ci-demo.service');
    expect((await s!.exec('systemctl is-active ci-demo.service')).stdout.trim()).toBe('active');
    expect(existsSync('/etc/systemd/system/ci-demo.service')).toBe(false);
  });

  it('powers the container off on destroy', async () => {
    const recorded = readLab(t.lab.dir);
    const pid = recorded.hosts.sys1.proc!.pid;
    await s!.close();
    s = undefined;
    await t.cleanup();
    expect(pidAlive(pid)).toBe(false);
    expect(netnsList()).not.toContain(`ci-${recorded.id}-`);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(t.lab.dir);
  });
});

describe.skipIf(!labsAvailable())('labs under /root and /home', () => {
  const check = async (lab: LocalLab, name: string) => {
    const s = await connectSsh(lab.sshTarget(name), { pinnedHostKey: lab.host(name)!.hostKey });
    try {
      const r = await s.execChecked(
        `hostname; test -e ${lab.dir}/lab.json && echo lab-visible || echo lab-hidden; ls -A /home | grep -c . || true; cat /root/.ssh/authorized_keys`,
      );
      return r.stdout.split('\n');
    } finally {
      await s.close();
    }
  };

  // /root holds the default home of root (~/.cloudimage); /home those of other users.
  for (const under of ['/root', '/home']) {
    it(`starts light and systemd hosts whose lab is under ${under}, each with its own /root and /home, the lab out of sight`, async () => {
      const t = await openTestLab('ci-lab-', under);
      try {
        await Promise.all([t.lab.addHost('light1', 'light'), t.lab.addHost('sys1', 'systemd')]);
        const operatorKey = readFileSync(`${t.lab.privateKeyPath}.pub`, 'utf8').trim();
        for (const name of ['light1', 'sys1']) {
          const [hostname, lab, homeEntries, key] = await check(t.lab, name);
          expect(hostname).toBe(name);
          expect(lab, `${name} sees the lab directory`).toBe('lab-hidden');
          expect(homeEntries, `${name} sees this machine's /home`).toBe('0');
          expect(key).toBe(operatorKey);
        }
        const recorded = readLab(t.lab.dir);
        await t.cleanup();
        expect(netnsList()).not.toContain(`ci-${recorded.id}-`);
        expect(Object.values(recorded.hosts).map((h) => h.proc!.pid).filter(pidAlive)).toEqual([]);
        expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(t.lab.dir);
        expect(existsSync(t.lab.dir)).toBe(false);
      } finally {
        await t.cleanup();
      }
    });
  }

  it('keeps a lab elsewhere (here /mnt) out of its light hosts\' sight too', async () => {
    const t = await openTestLab('ci-lab-', '/mnt');
    try {
      await t.lab.addHost('light1', 'light');
      const [hostname, lab] = await check(t.lab, 'light1');
      expect(hostname).toBe('light1');
      expect(lab).toBe('lab-hidden');
      expect(existsSync(join(t.lab.dir, 'lab.json'))).toBe(true);
    } finally {
      await t.cleanup();
    }
  });

  it('refuses light hosts in a lab inside a directory they overlay, also through a symlink, creating nothing', async () => {
    const real = mkdtempSync('/var/tmp/ci-lab-');
    const link = join(tmpdir(), `ci-lab-link-${randomBytes(4).toString('hex')}`);
    symlinkSync(real, link);
    let lab: LocalLab | undefined;
    try {
      lab = await LocalLab.open(join(link, 'lab'));
      const err = await lab.addHost('light1', 'light').catch((e: unknown) => e);
      expect((err as Error).message).toBe(`lab directory ${real}/lab is inside /var, which light hosts overlay`);
      expect((err as LocalHostError).hint).toContain('set CI_HOME to a directory outside /etc, /var, /opt, /usr and /srv');
      expect(lab.hosts()).toEqual([]);
      expect(netnsList()).not.toContain(`ci-${lab.id}-`);
    } finally {
      await lab?.destroy();
      rmSync(link, { force: true });
      rmSync(real, { recursive: true, force: true });
    }
  });
});
