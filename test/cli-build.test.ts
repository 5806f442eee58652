import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from './helpers/cli.js';
import { removeDir, tempDir, writeTree } from './helpers/tmp.js';

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) removeDir(dirs.pop()!);
});

function setup(tree: Record<string, string>) {
  const ctx = writeTree(tempDir('ci-ctx-'), tree);
  const home = tempDir('ci-home-');
  dirs.push(ctx, home);
  return { ctx, home, env: { CI_HOME: home } };
}

const indexOf = (home: string) => (existsSync(join(home, 'images/index.json')) ? readFileSync(join(home, 'images/index.json'), 'utf8') : '');

describe('ci build / images / inspect / tag / rmi from the command line', () => {
  it('builds, lists, inspects, tags and removes', async () => {
    const { ctx, env } = setup({ Kubefile: 'FROM scratch\nLABEL a=b\nCOPY f /f\nCMD echo hi\n', f: 'x' });
    const b = await runCli(['build', '-t', 'demo:v1', ctx], { env });
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/Successfully built demo:v1 sha256:[0-9a-f]{64}/);
    const inspect = await runCli(['inspect', 'demo:v1'], { env });
    const j = JSON.parse(inspect.stdout);
    expect(Object.keys(j)).toEqual(['name', 'digest', 'layers', 'cmds', 'apps', 'launch', 'env', 'labels']);
    expect(j.layers[0]).toMatchObject({ createdBy: 'COPY f /f' });
    expect(j.cmds[0].cmd).toBe('echo hi');
    expect((await runCli(['tag', 'demo:v1', 'demo:stable'], { env })).code).toBe(0);
    const images = await runCli(['images'], { env });
    expect(images.stdout.split('\n')[0]).toMatch(/^NAME\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(images.stdout).toContain(j.digest.slice(7, 19));
    expect(images.stdout).toMatch(/demo\s+stable/);
    const rmi = await runCli(['rmi', 'demo:v1'], { env });
    expect(rmi.stdout).toContain('Untagged: demo:v1');
    expect(rmi.stdout).not.toContain('Deleted'); // demo:stable still uses every blob
    expect((await runCli(['inspect', j.digest.slice(7, 19)], { env })).code).toBe(0);
  });

  const bad: [string, Record<string, string>, string[], RegExp][] = [
    ['missing Kubefile', { f: 'x' }, [], /^error: .*Kubefile: Kubefile not found\n/],
    ['unknown instruction', { Kubefile: 'FROM scratch\nEXPOSE 80\n' }, [], /^error: .*Kubefile:2: unknown instruction "EXPOSE"\n/],
    ['missing COPY source', { Kubefile: 'FROM scratch\nCOPY nothere /x\n' }, [], /^error: .*Kubefile:2: COPY source "nothere" does not exist/m],
    ['bad ARG', { Kubefile: 'FROM scratch\nARG =oops\n' }, [], /^error: .*Kubefile:2: ARG: "" is not a valid argument name/],
    ['malformed --build-arg', { Kubefile: 'FROM scratch\nARG A\n' }, ['--build-arg', 'novalue'], /^error: --build-arg "novalue" must be name=value/],
  ];
  it.each(bad)('%s: one clear line, non-zero exit, store unchanged', async (_n, tree, extra, re) => {
    const { ctx, home, env } = setup(tree);
    const before = indexOf(home);
    const r = await runCli(['build', '-t', 'x:y', ...extra, ctx], { env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(re);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(indexOf(home)).toBe(before);
  });

  it('inspect of an unknown image says so', async () => {
    const { env } = setup({});
    const r = await runCli(['inspect', 'nope:v1'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: image nope:v1 is not in the local store\nhint: /);
  });
});
