/**
 * The README's main command exactly as a new user types it on this machine: `sudo npm run demo` from the repository
 * root, as root, with CI_HOME unset, so the default home (root's ~/.cloudimage) holds everything; then the README's
 * destroy command, after which nothing of the cluster may remain. The commands are read from the README itself.
 *
 * This is the one test that uses the real default home. It refuses to run when that home already holds the demo's
 * cluster, and afterwards removes only what it created: the whole home if there was none, else the cluster's
 * directory, its lab and the image tag it added.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labsAvailable } from './helpers/lab.js';
import {
  claimsFor, etcdctl, etcdMembers, labFootprint, leftovers, mountsMentioning, procsMentioning, type LabFootprint,
} from './helpers/e2e.js';
import { ImageStore } from '../engine/image/store.js';
import { LocalLab } from '../providers/local/lab.js';
import type { ClusterState } from '../state/model.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const DEFAULT_HOME = '/root/.cloudimage';
const CLUSTER = 'etcd-demo';
const IMAGE = 'etcd-example:v1';
const CLUSTER_DIR = join(DEFAULT_HOME, 'clusters', CLUSTER);
const LAB_DIR = join(DEFAULT_HOME, 'local', CLUSTER);

/** The README line (in a shell block) that starts with `prefix`, without its trailing comment. */
function readmeCommand(prefix: string): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const lines = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1].split('\n'));
  const line = lines.find((l) => l.startsWith(prefix));
  if (!line) throw new Error(`README.md has no shell line starting with "${prefix}"`);
  return line.replace(/\s+#.*$/, '').trim();
}

/** Runs one README line with sh from the repository root, as a user's shell would; never throws. */
function runLine(line: string, env: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', line], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    child.on('error', (err) => resolve({ code: -1, out: `${out}${err.message}` }));
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

describe.skipIf(!labsAvailable())('the README demo, as a new user runs it', () => {
  const demo = readmeCommand('sudo npm run demo');
  const destroy = readmeCommand('sudo node dist/engine/cli/bin.js destroy');
  // What a login shell of root has: HOME is root's, and no CI_HOME.
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: '/root', FORCE_COLOR: '0' };
  delete env.CI_HOME;
  let ours = false;
  let homeExisted = false;
  let imageExisted = false;
  let fp: LabFootprint | undefined;

  beforeAll(async () => {
    if (existsSync(CLUSTER_DIR) || existsSync(LAB_DIR)) {
      throw new Error(
        `${DEFAULT_HOME} already holds the demo's cluster ${CLUSTER} (${existsSync(CLUSTER_DIR) ? CLUSTER_DIR : LAB_DIR}); ` +
          `this test runs the demo in that home and leaves clusters it did not make alone. Remove it first: ${destroy}`,
      );
    }
    if (!existsSync('/usr/bin/sudo')) throw new Error('sudo is not installed, so the README\'s `sudo npm run demo` cannot run: run scripts/setup.sh');
    homeExisted = existsSync(DEFAULT_HOME);
    imageExisted = homeExisted && !!(await new ImageStore(DEFAULT_HOME).find(IMAGE));
    ours = true;
  });

  afterAll(async () => {
    if (!ours) return;
    if (existsSync(LAB_DIR)) {
      await runLine(destroy, env);
      try {
        await LocalLab.remove(LAB_DIR);
      } catch (err) {
        process.stderr.write(`cleanup: could not remove ${LAB_DIR}: ${(err as Error).message}\n`);
      }
    }
    if (!homeExisted) {
      rmSync(DEFAULT_HOME, { recursive: true, force: true });
      return;
    }
    rmSync(CLUSTER_DIR, { recursive: true, force: true });
    rmSync(LAB_DIR, { recursive: true, force: true });
    if (!imageExisted) await new ImageStore(DEFAULT_HOME).untag(IMAGE).catch(() => undefined);
  }, 300_000);

  it('`sudo npm run demo` makes a healthy 3-member etcd cluster in the default home', async () => {
    expect(demo).toBe('sudo npm run demo');
    const r = await runLine(demo, env);
    expect(r.code, r.out).toBe(0);
    expect(r.out.match(/is healthy/g), r.out).toHaveLength(3);
    const state = JSON.parse(readFileSync(join(CLUSTER_DIR, 'state.json'), 'utf8')) as ClusterState;
    const endpoint = `http://${state.hosts[`${CLUSTER}-master-1`].ip}:2379`;
    expect(etcdMembers(endpoint)).toHaveLength(3);
    expect(etcdctl(endpoint, ['endpoint', 'health', '--cluster']).match(/is healthy/g)).toHaveLength(3);
    fp = await labFootprint(LAB_DIR);
    expect(fp.netns).toHaveLength(3);
  }, 300_000);

  it('the README\'s destroy command leaves no namespace, link, mount or process of the cluster', async (ctx) => {
    if (!fp) ctx.skip();
    const r = await runLine(destroy, env);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('Destroy complete!');
    expect(await leftovers(fp!)).toEqual({ netns: [], links: [], procs: [], dir: false });
    expect(mountsMentioning(LAB_DIR)).toEqual([]);
    expect(procsMentioning(LAB_DIR)).toEqual([]);
    expect(claimsFor(LAB_DIR)).toEqual([]);
    const statePath = join(CLUSTER_DIR, 'state.json');
    const hosts = existsSync(statePath) ? Object.keys((JSON.parse(readFileSync(statePath, 'utf8')) as ClusterState).hosts) : [];
    expect(hosts, 'no hosts in state').toEqual([]);
  }, 300_000);
});
