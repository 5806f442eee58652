/**
 * Hostile images through the `ci` a user runs: an image that breaks the layer rules is refused when it enters the
 * store (load, pull, build FROM it, merge into it) and, if it got into the store some other way, before any plan is
 * shown or any host made. Every refusal names the image, the layer and the entry, exits 1 and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ImageStore } from '../engine/image/store.js';
import { saveImages } from '../engine/image/archive.js';
import { HOSTILE, type HostileCase } from './helpers/hostile-cases.js';
import { injectImage, rawLayer } from './helpers/raw-layers.js';
import { makeHome, type E2eHome, describeRun } from './helpers/e2e.js';
import { requireTools, startRegistry, type RunningRegistry } from './helpers/registry.js';
import { removeDir, tempDir } from './helpers/tmp.js';

const layersOf = (c: HostileCase) => c.layers.map((l) => rawLayer(l, { globalPax: c.globalPax }));
const refName = (i: number) => `hostile-${i}:v1`;

function expectRefusal(r: { code: number; stdout: string; stderr: string }, c: HostileCase, image: string, args: string[]): void {
  expect(r.code, describeRun(args, r)).toBe(1);
  expect(r.stderr).toContain(`image ${image}`);
  expect(r.stderr).toContain(`layer ${c.layer} (`);
  if (c.entry !== undefined) expect(r.stderr).toContain(JSON.stringify(c.entry));
  expect(r.stderr).toMatch(c.reason);
  expect(r.stderr).toMatch(/^hint: nothing was written/m);
  expect(r.stderr).not.toMatch(/internal error/);
}

const blobs = (home: string) => {
  const d = join(home, 'images', 'blobs', 'sha256');
  return existsSync(d) ? readdirSync(d).sort() : [];
};

describe('hostile images are refused everywhere they can enter or be used', () => {
  let home: E2eHome;
  let clean: E2eHome;

  beforeAll(async () => {
    home = makeHome('ci-hostile-');
    clean = makeHome('ci-hostile-load-');
    const store = new ImageStore(home.dir);
    for (const [i, c] of HOSTILE.entries()) await injectImage(store, refName(i), layersOf(c));
    for (const [i] of HOSTILE.entries()) await saveImages(store, [refName(i)], join(home.dir, `hostile-${i}.tar`));
  }, 120_000);

  afterAll(() => {
    removeDir(home.dir);
    removeDir(clean.dir);
  });

  for (const [i, c] of HOSTILE.entries()) {
    it(`${c.name}: refused by ci load, ci plan and ci apply`, async () => {
      const before = blobs(clean.dir);
      const load = ['load', '-i', join(home.dir, `hostile-${i}.tar`)];
      const l = await clean.ci(load);
      expectRefusal(l, c, `${refName(i)} in ${join(home.dir, `hostile-${i}.tar`)}`, load);
      expect(blobs(clean.dir)).toEqual(before);
      expect((await clean.ci(['images', '--json'])).stdout).not.toContain('hostile');

      const cluster = `hostile-${i}`;
      const file = join(home.dir, `Clusterfile-${i}`);
      writeFileSync(
        file,
        `apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: ${cluster}}\nspec:\n  image: ${refName(i)}\n  provider: LOCAL\n  hosts:\n    - {count: 1, roles: [master]}\n`,
      );
      for (const args of [['plan', '-f', file], ['apply', '-f', file, '--auto-approve']]) {
        const r = await home.ci(args);
        expectRefusal(r, c, refName(i), args);
        expect(existsSync(home.labDir(cluster)), 'no local host was made').toBe(false);
        expect(home.readState(cluster)).toBeUndefined();
      }
    });
  }

  it('refuses to build FROM a hostile base, before any step runs', async () => {
    const ctx = tempDir('ci-hostile-ctx-');
    try {
      writeFileSync(join(ctx, 'Kubefile'), `FROM ${refName(3)}\nRUN touch /tmp/cloudimage-build-ran-${process.pid}\n`);
      const args = ['build', '-t', 'built-on-hostile:v1', ctx];
      const r = await home.ci(args);
      expectRefusal(r, HOSTILE[3], refName(3), args);
      expect(existsSync(`/tmp/cloudimage-build-ran-${process.pid}`)).toBe(false);
      expect((await home.ci(['images', '--json'])).stdout).not.toContain('built-on-hostile');
    } finally {
      removeDir(ctx);
    }
  });

  it('refuses to merge two images that are each fine but together write through a symlink', async () => {
    const store = new ImageStore(home.dir);
    await injectImage(store, 'part-a:v1', [rawLayer([{ path: 'evil', type: 'SymbolicLink', linkpath: '/etc' }])]);
    await injectImage(store, 'part-b:v1', [rawLayer([{ path: 'evil/cloudimage-canary', content: 'pwned' }])]);
    const args = ['merge', 'part-a:v1', 'part-b:v1', '-t', 'merged:v1'];
    const r = await home.ci(args);
    expect(r.code, describeRun(args, r)).toBe(1);
    expect(r.stderr).toMatch(/image merged:v1: layer 2 \(\w+\), entry "evil\/cloudimage-canary": it is reached through "evil", a symlink to "\/etc"/);
    expect((await home.ci(['images', '--json'])).stdout).not.toContain('merged');
  });
});

describe('a hostile image in a registry', () => {
  let registry: RunningRegistry;
  let pushHome: E2eHome;
  let pullHome: E2eHome;

  beforeAll(async () => {
    requireTools();
    registry = await startRegistry();
    pushHome = makeHome('ci-hostile-push-');
    pullHome = makeHome('ci-hostile-pull-');
    await injectImage(new ImageStore(pushHome.dir), `${registry.host}/hostile:v1`, layersOf(HOSTILE[6]));
    await pushHome.ciOk(['push', '--insecure', `${registry.host}/hostile:v1`]);
  }, 60_000);

  afterAll(async () => {
    await registry?.stop();
    if (pushHome) removeDir(pushHome.dir);
    if (pullHome) removeDir(pullHome.dir);
  });

  it('is refused by ci pull, which names it and keeps none of what it fetched', async () => {
    const args = ['pull', '--insecure', `${registry.host}/hostile:v1`];
    const r = await pullHome.ci(args);
    expectRefusal(r, HOSTILE[6], `${registry.host}/hostile:v1`, args);
    expect(blobs(pullHome.dir)).toEqual([]);
    expect((await pullHome.ci(['images', '--json'])).stdout.trim()).toBe('[]');
  });
});
