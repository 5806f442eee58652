/**
 * The architecture, checked on the source: imports run one way, from the CLI down to the kernel; the planner
 * imports no I/O; the executor and the CLI reach providers only through their contract and registry; providers
 * never import the engine above them; only the CLI prints. A new edge that breaks a rule fails here, naming it.
 */
import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

type Layer =
  | 'kernel' | 'state' | 'ssh' | 'contract' | 'registry' | 'provider' | 'emulator'
  | 'image' | 'oci-registry' | 'clusterfile' | 'config' | 'planner' | 'plans' | 'executor' | 'cli';

/** Where a source file belongs; the first match wins. */
const LAYERS: [RegExp, Layer][] = [
  [/^engine\/kernel\//, 'kernel'],
  [/^state\//, 'state'],
  [/^providers\/ssh\//, 'ssh'],
  [/^providers\/contract\.ts$/, 'contract'],
  [/^providers\/registry\.ts$/, 'registry'],
  [/^providers\/[^/]+\/emulator\//, 'emulator'],
  [/^providers\/[^/]+\//, 'provider'],
  [/^engine\/image\//, 'image'],
  [/^engine\/registry\//, 'oci-registry'],
  [/^engine\/clusterfile\//, 'clusterfile'],
  [/^engine\/config\//, 'config'],
  [/^plans\/(planner|actions|image-info|plugin-steps|action-table|target|host-order)\.ts$|^plans\/render\//, 'planner'],
  [/^plans\//, 'plans'],
  [/^engine\/executor\//, 'executor'],
  [/^engine\/cli\//, 'cli'],
];

/** What each layer may import (besides itself, node builtins and npm packages; the planner is stricter, below). */
const MAY_IMPORT: Record<Layer, Layer[]> = {
  kernel: [],
  state: ['kernel'],
  ssh: ['kernel'],
  contract: ['kernel', 'ssh'],
  provider: ['kernel', 'ssh', 'contract'],
  // The emulator makes its instances as local hosts, as provider LOCAL does.
  emulator: ['kernel', 'ssh', 'contract', 'provider'],
  registry: ['kernel', 'contract', 'provider'],
  image: ['kernel'],
  'oci-registry': ['kernel', 'image'],
  clusterfile: ['kernel', 'contract', 'registry', 'image'],
  // The per-cluster config layer: the Clusterfile's Configs applied to an image's files.
  config: ['kernel', 'image', 'clusterfile'],
  planner: ['kernel', 'state', 'contract', 'clusterfile', 'image'],
  plans: ['kernel', 'state', 'contract', 'registry', 'clusterfile', 'config', 'image', 'planner'],
  executor: ['kernel', 'state', 'ssh', 'contract', 'registry', 'clusterfile', 'config', 'image', 'oci-registry', 'planner', 'plans'],
  cli: ['kernel', 'state', 'ssh', 'contract', 'registry', 'emulator', 'clusterfile', 'config', 'image', 'oci-registry', 'planner', 'plans', 'executor'],
};

/** Modules through which code reaches disks, networks or processes: the planner uses none, not even for types. */
const IO_MODULES = /^(node:)?(fs|fs\/promises|child_process|net|http|https|dgram|dns|tls|os|readline|worker_threads)$|^(ssh2|proper-lockfile|tar|etcd3)$|^@alicloud\//;

function layerOf(file: string): Layer | undefined {
  return LAYERS.find(([re]) => re.test(file))?.[1];
}

/** A provider's own folder: `providers/local/lab.ts` -> `local`. */
const providerDir = (file: string) => /^providers\/([^/]+)\//.exec(file)?.[1];

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
  line: number;
}

const SOURCES = execFileSync('git', ['ls-files', 'engine', 'plans', 'state', 'providers'], { cwd: ROOT, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));

function importsOf(file: string): Edge[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const out: Edge[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[3] ?? m[4];
    const line = text.slice(0, m.index).split('\n').length;
    const typeOnly = !!m[2];
    if (spec.startsWith('.')) {
      const to = relative(ROOT, normalize(join(ROOT, dirname(file), spec))).replace(/\.js$/, '.ts');
      out.push({ from: file, to, typeOnly, line });
    } else out.push({ from: file, to: spec, typeOnly, line });
  }
  return out;
}

const EDGES = SOURCES.flatMap(importsOf);

describe('the architecture', () => {
  test('every source file belongs to a layer', () => {
    expect(SOURCES.filter((f) => !layerOf(f))).toEqual([]);
    expect(SOURCES.length).toBeGreaterThan(100);
  });

  test('imports run one way, from the CLI down to the kernel', () => {
    const bad = EDGES.filter((e) => !e.to.startsWith('node:') && e.to.includes('/') && SOURCES.includes(e.to)).flatMap((e) => {
      const from = layerOf(e.from)!;
      const to = layerOf(e.to)!;
      if (from === to) {
        // Providers keep to their own folder: one provider never reaches into another.
        if (from === 'provider' && providerDir(e.from) !== providerDir(e.to)) return [`${e.from}:${e.line} -> ${e.to} (another provider)`];
        return [];
      }
      return MAY_IMPORT[from].includes(to) ? [] : [`${e.from}:${e.line} -> ${e.to} (${from} may not import ${to})`];
    });
    expect(bad).toEqual([]);
  });

  test('the executor and the CLI never import a concrete provider', () => {
    const bad = EDGES.filter((e) => ['executor', 'cli'].includes(layerOf(e.from)!) && SOURCES.includes(e.to) && layerOf(e.to) === 'provider');
    expect(bad.map((e) => `${e.from}:${e.line} -> ${e.to}`)).toEqual([]);
  });

  test('the planner imports no I/O, and from the layers below only types', () => {
    const planner = EDGES.filter((e) => layerOf(e.from) === 'planner');
    expect(planner.length).toBeGreaterThan(5);
    const bad = planner.filter((e) => {
      if (IO_MODULES.test(e.to)) return true;
      if (!SOURCES.includes(e.to)) return false;
      const to = layerOf(e.to)!;
      // Pure helpers of the kernel (digests, errors) may be called; anything else only named as a type.
      if (to === 'planner') return false;
      if (to === 'kernel') return /fsutil|home|retry/.test(e.to);
      return !e.typeOnly;
    });
    expect(bad.map((e) => `${e.from}:${e.line} -> ${e.to}`)).toEqual([]);
  });

  test('only the CLI prints', () => {
    const printing = SOURCES.filter((f) => layerOf(f) !== 'cli').flatMap((f) =>
      readFileSync(join(ROOT, f), 'utf8')
        .split('\n')
        .flatMap((l, i) => (/process\.(stdout|stderr)\.write|console\.(log|error|warn|info|debug)\(/.test(l) ? [`${f}:${i + 1}`] : [])),
    );
    expect(printing).toEqual([]);
  });

  test('the checks can see a forbidden edge (a planner module importing the file system would be caught)', () => {
    expect(IO_MODULES.test('node:fs')).toBe(true);
    expect(MAY_IMPORT.provider.includes('executor')).toBe(false);
    expect(layerOf('providers/local/lab.ts')).toBe('provider');
    expect(layerOf('plans/planner.ts')).toBe('planner');
  });
});
