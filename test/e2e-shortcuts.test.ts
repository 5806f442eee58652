/**
 * sealer's shortcuts on LOCAL light hosts, through the `ci` CLI: `ci run IMAGE --local` writes the cluster's
 * Clusterfile beside its state and applies it; `ci join -n 2` and `ci delete -n 1` edit that file and converge;
 * `ci delete --all` destroys the cluster and its kept Clusterfile. Membership is read from `ci state list` and from
 * the lab's hosts. An `--env` value reaches the hooks (read back on the hosts) and changes the plan's digest; a change
 * refused at confirmation leaves the Clusterfile as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, describeRun, labExec, makeHome, type E2eHome } from './helpers/e2e.js';
import { LocalLab } from '../providers/local/lab.js';

const CLUSTER = 'sc-e2e';
const SITE = `/var/lib/cloudimage/clusters/${CLUSTER}/site`;
const HOOKS: Record<string, string> = {
  'init-host': `echo "$SITE" > "$CI_ROOTFS/../site"`,
  clean: 'true',
};

describe.skipIf(!labsAvailable())('ci run, join and delete on LOCAL hosts', () => {
  let home: E2eHome;
  let clusterfile: string;

  const ci = async (args: string[], code = 0) => {
    const r = await home.ci(args);
    expect(r.code, describeRun(args, r)).toBe(code);
    return r;
  };
  const members = async () => {
    const listed = (await ci(['state', 'list', '-f', clusterfile])).stdout;
    const inState = [...listed.matchAll(new RegExp(`^(${CLUSTER}-[a-z]+-\\d+)`, 'gm'))].map((m) => m[1]).sort();
    const lab = existsSync(home.labDir(CLUSTER)) ? (await LocalLab.open(home.labDir(CLUSTER))).hosts().map((h) => h.name).sort() : [];
    return { inState, lab };
  };
  const site = async (host: string) => (await labExec(home.labDir(CLUSTER), host, `cat ${SITE}`)).stdout.trim();
  const digest = async (extra: string[]) => JSON.parse((await ci(['plan', '-f', clusterfile, '--json', ...extra])).stdout).clusterfileDigest as string;

  beforeAll(async () => {
    home = makeHome('ci-e2e-shortcuts-');
    const src = join(home.dir, 'image');
    mkdirSync(join(src, 'hooks'), { recursive: true });
    for (const [name, body] of Object.entries(HOOKS)) {
      writeFileSync(join(src, 'hooks', name), `#!/bin/sh\nset -eu\n${body}\n`);
      chmodSync(join(src, 'hooks', name), 0o755);
    }
    writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\n');
    await home.ciOk(['build', '-q', '-t', 'sc-e2e:v1', src]);
    clusterfile = join(home.dir, 'clusters', CLUSTER, 'Clusterfile');
  }, 120_000);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 120_000);

  it('runs, joins, deletes and destroys, the kept Clusterfile following each change', async () => {
    const run = await ci(['run', 'sc-e2e:v1', '--local', '--name', CLUSTER, '-e', 'SITE=lab1', '--auto-approve']);
    expect(run.stdout).toContain(`Clusterfile: ${clusterfile} (written once the plan is approved)\n`);
    expect(run.stdout).toContain('Apply complete!');
    expect(statSync(clusterfile).mode & 0o777).toBe(0o600);
    expect(await members()).toEqual({ inState: [`${CLUSTER}-master-1`], lab: [`${CLUSTER}-master-1`] });
    // run's own --env is written into the Clusterfile, so it holds for later changes too.
    expect(readFileSync(clusterfile, 'utf8')).toContain('SITE=lab1');
    expect(await site(`${CLUSTER}-master-1`)).toBe('lab1');

    // The same run again changes nothing; another run of the same name is refused, naming what to use instead.
    expect((await ci(['run', 'sc-e2e:v1', '--local', '--name', CLUSTER, '-e', 'SITE=lab1', '--auto-approve'])).stdout).toContain('No changes.');
    const other = await ci(['run', 'sc-e2e:v1', '--local', '3', '--name', CLUSTER, '--auto-approve'], 64);
    expect(other.stderr).toContain(`error: cluster ${CLUSTER} exists already`);
    expect(other.stderr).toContain('ci join');

    // Refused at confirmation (no terminal, no --auto-approve): the Clusterfile stays as it was, no host is made.
    const before = readFileSync(clusterfile, 'utf8');
    const refused = await ci(['join', '-n', '2', '--name', CLUSTER], 64);
    expect(refused.stdout).toContain(`+ host ${CLUSTER}-node-1 (node)`);
    expect(readFileSync(clusterfile, 'utf8')).toBe(before);
    expect((await members()).lab).toEqual([`${CLUSTER}-master-1`]);

    // --env is part of the plan's digest, as for apply.
    expect(await digest(['-e', 'SITE=lab2'])).not.toBe(await digest([]));
    expect(await digest(['-e', 'SITE=lab1'])).toBe(await digest([]));

    // Join with an --env override: the new hosts' hooks see it; the file keeps its own value.
    await ci(['join', '-n', '2', '--name', CLUSTER, '-e', 'SITE=lab2', '--auto-approve']);
    const three = [`${CLUSTER}-master-1`, `${CLUSTER}-node-1`, `${CLUSTER}-node-2`];
    expect(await members()).toEqual({ inState: three, lab: three });
    expect(await site(`${CLUSTER}-node-2`)).toBe('lab2');
    expect(await site(`${CLUSTER}-master-1`)).toBe('lab1');
    expect(readFileSync(clusterfile, 'utf8')).toContain('    - count: 2\n      roles: [node]\n');

    await ci(['delete', '-n', '1', '--name', CLUSTER, '--auto-approve']);
    const two = [`${CLUSTER}-master-1`, `${CLUSTER}-node-1`];
    expect(await members()).toEqual({ inState: two, lab: two });

    const tooMany = await ci(['delete', '-n', '2', '--name', CLUSTER, '--auto-approve'], 64);
    expect(tooMany.stderr).toContain(`error: cluster ${CLUSTER} has 1 node, fewer than the 2 to delete`);

    const all = await ci(['delete', '--all', '--name', CLUSTER, '--auto-approve']);
    expect(all.stdout).toContain('Destroy complete!');
    expect(existsSync(clusterfile)).toBe(false);
    expect(existsSync(home.labDir(CLUSTER))).toBe(false);
    expect(home.readState(CLUSTER)?.hosts).toEqual({});
    const gone = await ci(['join', '-n', '1', '--name', CLUSTER], 64);
    expect(gone.stderr).toContain(`error: cluster ${CLUSTER} has no Clusterfile at ${clusterfile}`);
  }, 180_000);
});
