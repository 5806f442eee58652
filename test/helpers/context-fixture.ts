/**
 * Build contexts described inline: files with modes and owners, directories with modes, symlinks, copies of
 * files of this machine, and tar archives (plain or compressed, with chosen owners, or written byte by byte).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { rawTar, type RawEntry } from './raw-layers.js';

export type FixtureNode =
  | string
  | { file: string; mode?: number; owner?: [number, number] }
  | { dir: true; mode?: number; owner?: [number, number] }
  | { symlink: string }
  | { host: string; mode?: number }
  | {
      tar: Fixture;
      compress?: 'gzip' | 'xz' | 'bzip2';
      /** Owner of every entry (numeric); the archive is made with the system's tar. */
      owner?: [number, number];
      /** Archive the directory itself as `./` (with `rootMode`), not only what is inside. */
      root?: boolean;
      rootMode?: number;
    }
  | { rawTar: RawEntry[]; gzip?: boolean }
  | { gzipOf: string };

export type Fixture = Record<string, FixtureNode>;

/** Writes `fixture` under `root`; directory modes are set last, deepest first, so they never block writing. */
export function writeFixture(root: string, fixture: Fixture): void {
  const modes: [string, number][] = [];
  mkdirSync(root, { recursive: true });
  for (const [rel, spec] of Object.entries(fixture).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true });
    if (typeof spec === 'string') writeFileSync(p, spec);
    else if ('file' in spec) {
      writeFileSync(p, spec.file);
      if (spec.owner) chownSync(p, ...spec.owner);
      if (spec.mode !== undefined) chmodSync(p, spec.mode);
    } else if ('dir' in spec) {
      mkdirSync(p, { recursive: true });
      if (spec.owner) chownSync(p, ...spec.owner);
      if (spec.mode !== undefined) modes.push([p, spec.mode]);
    } else if ('symlink' in spec) {
      symlinkSync(spec.symlink, p);
      lchownSync(p, 0, 0);
    } else if ('host' in spec) {
      copyFileSync(spec.host, p);
      if (spec.mode !== undefined) chmodSync(p, spec.mode);
    } else if ('gzipOf' in spec) {
      writeFileSync(p, execFileSync('gzip', ['-n', '-c'], { input: spec.gzipOf }));
    } else if ('rawTar' in spec) {
      const tar = rawTar(spec.rawTar);
      writeFileSync(p, spec.gzip ? execFileSync('gzip', ['-n', '-c'], { input: tar }) : tar);
    } else {
      const staging = mkdtempSync(join(tmpdir(), 'ci-fixture-tar-'));
      try {
        writeFixture(staging, spec.tar);
        if (spec.rootMode !== undefined) chmodSync(staging, spec.rootMode);
        const flag = spec.compress === 'gzip' ? ['-z'] : spec.compress === 'xz' ? ['-J'] : spec.compress === 'bzip2' ? ['-j'] : [];
        const owner = spec.owner ? [`--owner=${spec.owner[0]}`, `--group=${spec.owner[1]}`, '--numeric-owner'] : ['--numeric-owner'];
        const names = spec.root ? ['.'] : readdirSync(staging).sort();
        execFileSync('tar', [...flag, '--sort=name', '--mtime=@0', ...owner, '-C', staging, '-cf', p, ...names]);
      } finally {
        rmSync(staging, { recursive: true, force: true });
      }
    }
  }
  for (const [p, mode] of modes.reverse()) chmodSync(p, mode);
}
