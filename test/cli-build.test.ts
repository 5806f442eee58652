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
  it('several broken lines: each on its own line with its hint, then how many; exit 1, store unchanged', async () => {
    const { ctx, home, env } = setup({ Kubefile: 'FROM scratch\nEXPOSE 80\nENV 1X=y\nRUN echo ok\nARG =oops\n' });
    const before = indexOf(home);
    const r = await runCli(['build', '-t', 'x:y', ctx], { env });
    expect(r.code).toBe(1);
    const file = join(ctx, 'Kubefile');
    expect(r.stderr.split('\n')).toEqual([
      `error: ${file}:2: unknown instruction "EXPOSE"`,
      'hint: use one of FROM, COPY, ADD, RUN, CMD, ENV, ARG, LABEL, APP, APPCMDS, LAUNCH, CMDS',
      `error: ${file}:3: ENV: "1X" is not a valid variable name`,
      `error: ${file}:5: ARG: "" is not a valid argument name (letters, digits and _, not starting with a digit)`,
      `error: 3 errors in ${file}; nothing was built`,
      '',
    ]);
    expect(r.stdout).toBe('');
    expect(indexOf(home)).toBe(before);
  });

  it('build --label/--annotation/--platform, images -q, inspect --format, rmi --force', async () => {
    const { ctx, home, env } = setup({ Kubefile: 'FROM scratch\nLABEL team=infra\nCOPY f /f\nRUN echo "$ARCH" > arch\n', f: 'x' });
    const b = await runCli(
      ['build', '-q', '-t', 'demo:v1', '--label', 'team=ops', '--label', 'tier=gold', '--annotation', 'org.opencontainers.image.source=https://example.com/demo', '--platform', 'linux/arm64', ctx],
      { env },
    );
    expect(b.code, b.stderr).toBe(0);
    const digest = b.stdout.trim();
    expect((await runCli(['inspect', '--format', 'digest', 'demo:v1'], { env })).stdout).toBe(`${digest}\n`);
    const json = JSON.parse((await runCli(['inspect', 'demo:v1'], { env })).stdout);
    expect(json.labels).toEqual({ team: 'ops', tier: 'gold' });
    const layers = await runCli(['inspect', '--format', 'layers', 'demo:v1'], { env });
    expect(layers.stdout).toBe(json.layers.map((l: { digest: string }) => `${l.digest}\n`).join(''));
    const manifest = JSON.parse(readFileSync(join(home, 'images/blobs/sha256', digest.slice(7)), 'utf8'));
    expect(manifest.annotations).toEqual({ 'org.opencontainers.image.source': 'https://example.com/demo' });
    const config = JSON.parse(readFileSync(join(home, 'images/blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    expect([config.os, config.architecture]).toEqual(['linux', 'arm64']);

    const badFormat = await runCli(['inspect', '--format', 'yaml', 'demo:v1'], { env });
    expect(badFormat.code).toBe(64);
    expect(badFormat.stderr).toMatch(/argument 'yaml' is invalid\. Allowed choices are json, digest, layers\./);
    const badPlatform = await runCli(['build', '-t', 'demo:v2', '--platform', 'arm64', ctx], { env });
    expect(badPlatform.code).toBe(64);
    expect(badPlatform.stderr).toMatch(/^error: --platform "arm64" is not os\/arch\[\/variant\]\nhint: e\.g\. --platform linux\/amd64/);

    expect((await runCli(['tag', 'demo:v1', 'demo:stable'], { env })).code).toBe(0);
    const other = await runCli(['build', '-q', '-t', 'other:v1', '--label', 'x=1', ctx], { env });
    const ids = await runCli(['images', '-q'], { env });
    expect(ids.stdout.split('\n').filter(Boolean).sort()).toEqual([digest.slice(7, 19), other.stdout.trim().slice(7, 19)].sort());

    const id = digest.slice(7, 19);
    const refused = await runCli(['rmi', id], { env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `error: image ${id} has 2 names (demo:stable, demo:v1); removing it by ID would remove them all\n` +
        `hint: remove the names one at a time (\`ci rmi demo:stable\`), or all of them with \`ci rmi --force ${id}\`\n`,
    );
    const forced = await runCli(['rmi', '--force', id], { env });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/^Untagged: demo:stable\nUntagged: demo:v1\nDeleted: /);
    expect((await runCli(['images', '-q'], { env })).stdout).toBe(`${other.stdout.trim().slice(7, 19)}\n`);
  });
});
