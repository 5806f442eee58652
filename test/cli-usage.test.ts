import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, runCliInTerminal } from './helpers/cli.js';
import { removeDir, tempDir, writeTree } from './helpers/tmp.js';
import { useColor } from '../engine/cli/color.js';

const PACKAGE = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
const SECRET = 'pa55-w0rd-xyz';
const SGR = /\x1b\[[0-9;]*m/; // a colour or style escape; cursor movement by readline is not colour

const dir = tempDir('ci-usage-');
const env = { CI_HOME: join(dir, 'home') };
const clusterfile = (spec: string) =>
  `apiVersion: cloudimage.io/v1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n  image: demo:v1\n${spec}  hosts:\n  - {ips: [10.0.0.2], roles: [master]}\n`;

beforeAll(async () => {
  writeTree(dir, { 'ctx/Kubefile': 'FROM scratch\nCMD echo hi\n', Clusterfile: clusterfile('') });
  const b = await runCli(['build', '-q', '-t', 'demo:v1', join(dir, 'ctx')], { env });
  expect(b.code).toBe(0);
});
afterAll(() => removeDir(dir));

describe('exit codes and usage errors', () => {
  it('a mistyped flag with --detailed-exitcode exits 64, not 2 ("changes"), and names the help to read', async () => {
    const r = await runCli(['plan', '-f', join(dir, 'Clusterfile'), '--detailed-exitcod'], { env });
    expect(r.code).toBe(64);
    expect(r.stderr).toBe("error: unknown option '--detailed-exitcod'\n(Did you mean --detailed-exitcode?)\nhint: run `ci plan --help` to see its usage\n");
    expect(r.stdout).toBe('');
    // The hinted command is real.
    const help = await runCli(['plan', '--help'], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--detailed-exitcode');
    // The real flag still gives 2 for changes.
    expect((await runCli(['plan', '-f', join(dir, 'Clusterfile'), '--detailed-exitcode'], { env })).code).toBe(2);
  });

  const usage: [string, string[], RegExp][] = [
    ['unknown command', ['plann'], /^error: unknown command 'plann'\n\(Did you mean plan\?\)\nhint: run `ci --help` to see its commands and options\n$/],
    ['unknown subcommand', ['state', 'lst'], /^error: unknown command 'lst'\n.*\n?hint: run `ci state --help` to see its commands and options\n$/],
    ['missing argument', ['inspect'], /^error: missing required argument 'ref'\nhint: run `ci inspect --help` to see its usage\n$/],
    ['missing required option', ['build', '.'], /^error: required option '-t, --tag <name:tag>' not specified\nhint: run `ci build --help`/],
    ['option without its value', ['plan', '--state'], /^error: option '--state <path>' argument missing\nhint: run `ci plan --help`/],
    ['extra argument', ['plan', 'Clusterfile'], /^error: too many arguments for 'plan'\. Expected 0 arguments but got 1\.\nhint: run `ci plan --help`/],
    ['bad flag value', ['plan', '--max-unavailable', 'x'], /^error: --max-unavailable must be a whole number of at least 1, not "x"\nhint: run `ci plan --help` to see its usage\n$/],
    ['bad duration', ['apply', '--lock-timeout', 'soon', '--auto-approve'], /^error: invalid duration "soon"\nhint: /],
    ['malformed --build-arg', ['build', '-t', 'x:y', '--build-arg', 'novalue', '.'], /^error: --build-arg "novalue" must be name=value\nhint: run `ci build --help` to see its usage\n$/],
    ['bad flag value of a subcommand', ['state', 'list', '--state', '/nonexistent', '--bogus'], /^error: unknown option '--bogus'\nhint: run `ci state list --help` to see its usage\n$/],
    ['no command at all', [], /^Usage: ci \[options\] \[command\]/],
  ];
  it.each(usage)('%s exits 64 with commander\'s message and a hint', async (_name, args, stderr) => {
    const r = await runCli(args, { env, cwd: dir });
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(stderr);
  });

  it('--help and --version exit 0; the version is the package version', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await runCli([flag], { env });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: ci \[options\] \[command\]/);
      expect(r.stdout).toContain('-V, --version');
    }
    for (const flag of ['--version', '-V']) {
      expect(await runCli([flag], { env })).toEqual({ code: 0, stdout: `${PACKAGE.version}\n`, stderr: '' });
    }
  });

  it('other failures exit 1', async () => {
    const r = await runCli(['inspect', 'nope:v1'], { env });
    expect(r.code).toBe(1);
  });
});

describe('Clusterfile errors on the command line', () => {
  const plan = async (text: string) => {
    const file = join(dir, 'Bad');
    writeFileSync(file, text);
    try {
      return await runCli(['plan', '-f', file], { env });
    } finally {
      rmSync(file);
    }
  };

  it('anchors, aliases and merge keys: located, exit 1, the secret never printed', async () => {
    const r = await plan(clusterfile(`  ssh: {passwd: &pw "${SECRET}"}\n  env: [A=1]\n  cmd_args: [*pw]\n  registry: {<<: {p: ${SECRET}}}\n`));
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').slice(0, 3)).toEqual([
      `error: ${join(dir, 'Bad')}:6:17: spec.ssh.passwd: YAML anchors (&name) are not allowed in a Clusterfile: remove the anchor (use \${VAR} to give several fields one value)`,
      `${join(dir, 'Bad')}:8:14: spec.cmd_args[0]: YAML aliases (*name) are not allowed in a Clusterfile: write the value out (use \${VAR} to give several fields one value)`,
      `${join(dir, 'Bad')}:9:14: spec.registry.<<: YAML merge keys (<<) are not allowed in a Clusterfile: write the fields out`,
    ]);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('an alias bomb is refused, not expanded', async () => {
    const levels = Array.from({ length: 12 }, (_, i) => `  l${i + 1}: &l${i + 1} [${Array(12).fill(`*l${i}`).join(', ')}]\n`).join('');
    const r = await plan(clusterfile(`  cmd: &l0 [${Array(12).fill(`"${SECRET}"`).join(', ')}]\n${levels}`));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*Bad:6:8: spec\.cmd: YAML anchors/);
    expect(r.stderr).toContain('and 147 more anchors, aliases or merge keys');
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('a bad spec.image is located', async () => {
    const r = await plan(clusterfile('').replace('image: demo:v1', 'image: Etcd Example:v1'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*Bad:5:10: spec\.image: "Etcd Example:v1" is not a valid image reference/);
  });
});

describe('colour', () => {
  const noColorEnv = { ...env, FORCE_COLOR: undefined, NO_COLOR: undefined, TERM: 'xterm' };
  const planArgs = ['plan', '-f', join(dir, 'Clusterfile')];

  it('a terminal gets colour; NO_COLOR (non-empty) turns it off in plan and in the approval prompt', async () => {
    const coloured = await runCliInTerminal(planArgs, { env: noColorEnv });
    expect(coloured.code).toBe(0);
    expect(coloured.stdout).toContain('+ host 10.0.0.2 (master)');
    expect(coloured.stdout).toMatch(SGR);
    const plain = await runCliInTerminal(planArgs, { env: { ...noColorEnv, NO_COLOR: '1' } });
    expect(plain.stdout).toContain('+ host 10.0.0.2 (master)');
    expect(plain.stdout).not.toMatch(SGR);
    // Set but empty does not count (no-color.org).
    expect((await runCliInTerminal(planArgs, { env: { ...noColorEnv, NO_COLOR: '' } })).stdout).toMatch(SGR);
    // apply shows the plan and asks on the terminal; answered "no", nothing is done.
    const apply = await runCliInTerminal(['apply', '-f', join(dir, 'Clusterfile')], { env: { ...noColorEnv, NO_COLOR: '1' }, input: 'no\n' });
    expect(apply.stdout).toContain('Do you want to apply these actions?');
    expect(apply.stdout).toContain('+ host 10.0.0.2 (master)');
    expect(apply.stdout).not.toMatch(SGR);
    expect(existsSync(join(env.CI_HOME, 'clusters/demo/state.json'))).toBe(false);
  });

  it('a pipe gets no colour unless FORCE_COLOR asks for it', async () => {
    expect((await runCli(planArgs, { env: { ...noColorEnv } })).stdout).not.toMatch(SGR);
    expect((await runCli(planArgs, { env: { ...noColorEnv, FORCE_COLOR: '1' } })).stdout).toMatch(SGR);
  });

  it('is decided by one rule', () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    expect(useColor(tty, {})).toBe(true);
    expect(useColor(pipe, {})).toBe(false);
    expect(useColor(tty, { NO_COLOR: '1' })).toBe(false);
    expect(useColor(tty, { NO_COLOR: '' })).toBe(true);
    expect(useColor(tty, { TERM: 'dumb' })).toBe(false);
    expect(useColor(pipe, { FORCE_COLOR: '1' })).toBe(true);
    expect(useColor(tty, { FORCE_COLOR: '0' })).toBe(false);
    expect(useColor(tty, { FORCE_COLOR: 'false' })).toBe(false);
    expect(useColor(pipe, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(true); // an explicit force wins, as in Node
  });
});

describe('ci rmi when the store is damaged', () => {
  it('removes the name, frees nothing, says which manifest could not be read, exits 1', async () => {
    const home = join(dir, 'rmi-home');
    const local = { CI_HOME: home };
    writeTree(dir, { 'a/Kubefile': 'FROM scratch\nCOPY f /f\n', 'a/f': 'a', 'b/Kubefile': 'FROM scratch\nCOPY f /f\n', 'b/f': 'b' });
    const a = (await runCli(['build', '-q', '-t', 'a:v1', join(dir, 'a')], { env: local })).stdout.trim();
    const b = (await runCli(['build', '-q', '-t', 'b:v1', join(dir, 'b')], { env: local })).stdout.trim();
    const blob = (d: string) => join(home, 'images/blobs/sha256', d.slice(7));
    const aLayers = JSON.parse((await runCli(['inspect', 'a:v1'], { env: local })).stdout).layers.map((l: { digest: string }) => l.digest);
    // b's manifest blob replaced by a directory: unreadable for root as for anyone.
    rmSync(blob(b));
    mkdirSync(blob(b));
    // Listed still, size unknown, the reason told.
    const images = await runCli(['images'], { env: local });
    expect(images.code).toBe(0);
    expect(images.stdout).toMatch(/\nb\s+v1\s+\w{12}\s+.* ago\s+\?\n/);
    expect(images.stderr).toMatch(new RegExp(`^warning: cannot read blob ${b} .*EISDIR`));
    const r = await runCli(['rmi', 'a:v1'], { env: local });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('Untagged: a:v1\n');
    expect(r.stderr).toMatch(
      new RegExp(`^error: no blob was freed, because the manifest of b:v1 cannot be read: cannot read blob ${b} in the store at .*: EISDIR: .*\\nhint: .*\`ci rmi\`.*\\n$`),
    );
    expect(r.stderr).not.toContain('missing');
    for (const d of [a, ...aLayers]) expect(existsSync(blob(d))).toBe(true);
    // Removing the damaged image lets the collector work again.
    const again = await runCli(['rmi', 'b:v1'], { env: local });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`Deleted: ${a}`);
    for (const d of [a, ...aLayers]) expect(existsSync(blob(d))).toBe(false);
  });
});
