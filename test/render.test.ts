import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseClusterfile } from '../engine/clusterfile/parse.js';
import { plan, planDestroy } from '../plans/planner.js';
import { renderPlanJson, renderPlanText, formatBytes } from '../plans/render/index.js';
import { checkPlanFresh, loadPlanFile, savePlanFile } from '../plans/planfile.js';
import { resolveTargets, targetPlan } from '../plans/target.js';
import { desiredInfrastructure } from '../plans/prepare.js';
import { StalePlanError } from '../engine/kernel/errors.js';
import type { ConfigLayerPlan, ImageInfo, Plan } from '../plans/actions.js';
import type { ClusterState } from '../state/model.js';
import { refreshState, type HostAnswer } from '../plans/drift.js';

const GOLDEN = join(import.meta.dirname, 'golden');
const ACCEPT = process.env.CI_ACCEPT === '1';
const SECRET = 'golden-s3cret-pw';

function load(name: string) {
  const dir = join(GOLDEN, name);
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : undefined);
  const yaml = read('desired.yaml');
  const desired = yaml ? parseClusterfile(yaml, 'desired.yaml', { SSH_PASSWORD: SECRET }) : undefined;
  const image = read('image.json') ? (JSON.parse(read('image.json')!) as ImageInfo) : undefined;
  const state = read('state.json') ? (JSON.parse(read('state.json')!) as ClusterState) : undefined;
  const config = read('config.json') ? (JSON.parse(read('config.json')!) as ConfigLayerPlan) : undefined;
  // What the hosts answered a refresh: the plan is then made from the refreshed state, as planCluster does.
  const answers = read('answers.json') ? (JSON.parse(read('answers.json')!) as HostAnswer[]) : undefined;
  // `--target` hosts: the plan is cut down to them, as `ci plan --target` does.
  const targets = read('targets.json') ? (JSON.parse(read('targets.json')!) as string[]) : undefined;
  return { dir, desired, image, state, config, answers, targets };
}

function planFor(name: string): Plan {
  const { desired, image, state, config, answers, targets } = load(name);
  if (!desired) return planDestroy(state!);
  const infra = desiredInfrastructure(desired, { labels: {}, ports: (image as ImageInfo & { ports?: string[] }).ports ?? [] });
  const sizes = new Map(image!.layers.map((l) => [l.digest, l.size]));
  const refreshed = answers && state ? refreshState(state, answers, { depth: 'shallow', sizeOf: (d) => sizes.get(d) }) : undefined;
  const p = plan({ desired, image: image!, state: refreshed?.state ?? state, infra, ...(config ? { config } : {}), ...(refreshed ? { refresh: refreshed.refresh } : {}) });
  return targets ? targetPlan(p, resolveTargets(p, targets)) : p;
}

function golden(dir: string, file: string, actual: string) {
  const path = join(dir, file);
  if (ACCEPT) writeFileSync(path, actual);
  expect(existsSync(path), `${path} is missing: run with CI_ACCEPT=1 to write it`).toBe(true);
  expect(actual).toBe(readFileSync(path, 'utf8'));
}

describe('golden plans', () => {
  for (const name of readdirSync(GOLDEN).sort()) {
    test(name, () => {
      const p = planFor(name);
      const text = renderPlanText(p);
      const json = renderPlanJson(p);
      expect(text + json).not.toContain(SECRET);
      golden(join(GOLDEN, name), 'plan.txt', text);
      golden(join(GOLDEN, name), 'plan.json', json);
    });
  }
});

describe('rendering', () => {
  test('colour only when asked', () => {
    const p = planFor('create');
    expect(renderPlanText(p)).not.toMatch(/\x1b\[/);
    expect(renderPlanText(p, { color: true })).toMatch(/\x1b\[32m\+ host 10\.0\.0\.2/);
  });

  test('byte sizes', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(12_345_678)).toBe('12.3 MB');
    expect(formatBytes(1_500_000_000)).toBe('1.5 GB');
  });
});

describe('saved plans', () => {
  // Made in beforeAll, not when the file is collected: a run that filters these tests out leaves nothing behind.
  let tmp = '';
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ci-planfile-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test('round trip, and refused when state, Clusterfile or image moved on', async () => {
    const { desired, image, state } = load('upgrade');
    const p = plan({ desired: desired!, image: image!, state });
    const file = join(tmp, 'upgrade.plan');
    await savePlanFile(file, p);
    const loaded = await loadPlanFile(file);
    expect(loaded).toEqual(p);
    expect(() => checkPlanFresh(loaded, { state, desired, image })).not.toThrow();
    expect(() => checkPlanFresh(loaded, { state: { ...state!, serial: state!.serial + 1 }, desired, image })).toThrow(StalePlanError);
    expect(() => checkPlanFresh(loaded, { state: { ...state!, serial: state!.serial + 1 }, desired, image })).toThrow(/state changed since the plan was made \(serial 1 -> 2\)/);
    expect(() => checkPlanFresh(loaded, { state: { ...state!, lineage: 'other' }, desired, image })).toThrow(/lineage/);
    expect(() => checkPlanFresh(loaded, { state: undefined, desired, image })).toThrow(StalePlanError);
    const changed = parseClusterfile(readFileSync(join(GOLDEN, 'upgrade', 'desired.yaml'), 'utf8').replace('10.0.0.5]', '10.0.0.5, 10.0.0.9]'), 'x', { SSH_PASSWORD: SECRET });
    expect(() => checkPlanFresh(loaded, { state, desired: changed, image })).toThrow(/Clusterfile changed/);
    expect(() => checkPlanFresh(loaded, { state, desired, image: { ...image!, digest: `sha256:${'0'.repeat(64)}` } })).toThrow(/image etcd-example:v2 changed/);
    // A new password alone does not make the plan stale: secrets are not part of the digest.
    const newPw = parseClusterfile(readFileSync(join(GOLDEN, 'upgrade', 'desired.yaml'), 'utf8'), 'x', { SSH_PASSWORD: 'rotated-pw' });
    expect(() => checkPlanFresh(loaded, { state, desired: newPw, image })).not.toThrow();
  });

  test('a file that is not a plan is refused', async () => {
    const file = join(tmp, 'junk.plan');
    writeFileSync(file, '{"format":"other"}');
    await expect(loadPlanFile(file)).rejects.toThrow(/not a cloudimage plan file/);
    await expect(loadPlanFile(join(tmp, 'missing.plan'))).rejects.toThrow(/no such file/);
  });
});
