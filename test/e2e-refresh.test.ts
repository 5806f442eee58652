/**
 * Refresh and drift on real local hosts. A small cluster is applied; then a layer file is deleted on one host and
 * the rootfs record on another. `ci plan` shows exactly those two steps with their drift reasons (a saved plan of
 * it applies exactly them), no hook runs again (read back from the hosts), and the next plan has no changes.
 * `--refresh=false` does not look; `--refresh-only` shows only the drift (plan) or records it in the state (apply)
 * without touching a host; a layer changed in place without a change of size or time is found by `--refresh=deep`.
 * A host whose link is down is reported by name and kept, never planned away.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, clusterDoc, describeRun, labExec, makeHome, serialSteps, writeClusterfile, type E2eHome } from './helpers/e2e.js';
import type { Plan } from '../plans/actions.js';

const CLUSTER = 'refresh-e2e';
const M1 = `${CLUSTER}-master-1`;
const N1 = `${CLUSTER}-node-1`;
const N2 = `${CLUSTER}-node-2`;
const HOSTS = [M1, N1, N2];

const HOOKS: Record<string, string> = {
  'init-host': 'mkdir -p /var/lib/evidence && echo "$CI_HOST" >> /var/lib/evidence/init-host',
  'init-master0': 'echo "$CI_HOST" >> /var/lib/evidence/init-master0',
  'join-node': 'echo "$CI_HOST" >> /var/lib/evidence/join-node',
  clean: 'rm -rf /var/lib/evidence',
};

/** How many times each hook ran on every host, read from the hosts. */
async function evidence(home: E2eHome): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const h of HOSTS) {
    const cmd = 'for f in init-host init-master0 join-node; do printf "%s=%s " $f "$(cat /var/lib/evidence/$f 2>/dev/null | wc -l)"; done';
    out[h] = (await labExec(home.labDir(CLUSTER), h, cmd)).stdout.trim();
  }
  return out;
}

describe.skipIf(!labsAvailable())('refresh and drift on LOCAL hosts', () => {
  const step = serialSteps(300_000);
  let home: E2eHome;
  let clusterfile: string;
  let ran: Record<string, string>;
  let layerFile: string;
  const marker = `/var/lib/cloudimage/clusters/${CLUSTER}/rootfs.id`;
  let downed: string | undefined;

  const ci = async (args: string[], code = 0) => {
    const r = await home.ci(args);
    expect(r.code, describeRun(args, r)).toBe(code);
    return r;
  };
  const exec = async (host: string, cmd: string) => {
    const r = await labExec(home.labDir(CLUSTER), host, cmd);
    expect(r.code, `${host}: ${cmd}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  beforeAll(async () => {
    home = makeHome('ci-e2e-refresh-');
    const src = join(home.dir, 'image');
    mkdirSync(join(src, 'hooks'), { recursive: true });
    for (const [name, body] of Object.entries(HOOKS)) {
      writeFileSync(join(src, 'hooks', name), `#!/bin/sh\nset -eu\n${body}\n`);
      chmodSync(join(src, 'hooks', name), 0o755);
    }
    writeFileSync(join(src, 'app.txt'), 'payload\n');
    writeFileSync(join(src, 'Kubefile'), 'FROM scratch\nCOPY hooks/ /hooks/\nCOPY app.txt /app.txt\n');
    await home.ciOk(['build', '-q', '-t', 'refresh:v1', src]);
    clusterfile = writeClusterfile(
      join(home.dir, 'Clusterfile'),
      clusterDoc(CLUSTER, { image: 'refresh:v1', provider: 'LOCAL', hosts: [{ count: 1, roles: ['master'] }, { count: 2, roles: ['node'] }] }),
    );
  }, 300_000);

  afterAll(async () => {
    if (downed) execFileSync('ip', ['link', 'set', downed, 'up']);
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('applied: a plan right after has no changes, every host refreshed', async () => {
    await ci(['apply', '-f', clusterfile, '--auto-approve']);
    ran = await evidence(home);
    expect(ran).toEqual({
      [M1]: 'init-host=1 init-master0=1 join-node=0',
      [N1]: 'init-host=1 init-master0=0 join-node=1',
      [N2]: 'init-host=1 init-master0=0 join-node=1',
    });
    const r = await ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(r.stdout).toMatch(/^No changes\./);
    expect(r.stderr).toBe('');
    const state = home.readState(CLUSTER)!;
    layerFile = `/var/lib/cloudimage/layers/${state.hosts[N1].layers[0].slice('sha256:'.length)}.tar.gz`;
    // What the unpack and the hooks recorded on the host, in the cluster's own directory.
    expect(await exec(N2, `cat ${marker}`)).toMatch(new RegExp(`^image ${state.hosts[N2].rootfsImage}\\nconfig -\\n(setid \\w+\\n)?inode \\d+\\n$`));
    expect(await exec(N2, `ls /var/lib/cloudimage/clusters/${CLUSTER}/done`)).toBe('init-host\njoin-node\n');
  });

  step('a deleted layer and a deleted rootfs record: exactly their steps, with the drift reasons; a saved plan applies them', async () => {
    await exec(N1, `rm ${layerFile}`);
    await exec(N2, `rm ${marker}`);
    const planFile = join(home.dir, 'drift.plan');
    const r = await ci(['plan', '-f', clusterfile, '--detailed-exitcode', '--out', planFile], 2);
    expect(r.stdout).toContain(`${N1}: drift: layer missing on host`);
    expect(r.stdout).toContain(`${N2}: drift: rootfs changed (no record on the host of what was unpacked)`);
    const plan = JSON.parse(readFileSync(planFile, 'utf8')).plan as Plan;
    expect(plan.actions.map((a) => [a.id, a.reason])).toEqual([
      [`send-layers:${N1}`, 'drift: layer missing on host'],
      [`unpack:${N2}`, 'drift: rootfs changed'],
    ]);
    expect(plan.refresh?.drift.map((d) => [d.host, d.kind])).toEqual([[N1, 'layer-missing'], [N2, 'rootfs-changed']]);
    const json = JSON.parse((await ci(['plan', '-f', clusterfile, '--json'])).stdout) as Plan;
    expect(json.refresh?.drift).toHaveLength(2);
    // Without a refresh, the state alone says all is well.
    expect((await ci(['plan', '-f', clusterfile, '--refresh=false', '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);

    const applied = await ci(['apply', '-f', clusterfile, planFile]);
    expect(applied.stdout).toMatch(/Apply complete! 2 done, 0 failed/);
    expect(await exec(N1, `test -f ${layerFile} && echo there`)).toBe('there\n');
    expect(await exec(N2, `cat ${marker}`)).toMatch(/^image sha256:/);
    expect(await evidence(home)).toEqual(ran);
    expect((await ci(['plan', '-f', clusterfile, '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);
  });

  step('a rootfs replaced by hand is told apart by its directory', async () => {
    await exec(M1, `r=/var/lib/cloudimage/clusters/${CLUSTER}/rootfs; cp -a "$r" "$r.copy" && rm -rf "$r" && mv "$r.copy" "$r"`);
    const r = await ci(['plan', '-f', clusterfile, '--detailed-exitcode'], 2);
    expect(r.stdout).toContain(`${M1}: drift: rootfs changed (the rootfs directory was replaced since it was unpacked)`);
    expect(r.stdout).toMatch(/unpack rootfs \S+\s+# drift: rootfs changed/);
    await ci(['apply', '-f', clusterfile, '--auto-approve']);
    expect(await evidence(home)).toEqual(ran);
    expect((await ci(['plan', '-f', clusterfile, '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);
  });

  step('--refresh-only: plan shows only the drift; apply records it in the state and touches no host', async () => {
    await exec(N1, `rm ${layerFile}`);
    const shown = await ci(['plan', '-f', clusterfile, '--refresh-only', '--detailed-exitcode'], 2);
    expect(shown.stdout).toContain(`${N1}: drift: layer missing on host`);
    expect(shown.stdout).not.toMatch(/send \d+ layer|Plan:/);
    const before = home.readState(CLUSTER)!;
    const recorded = await ci(['apply', '-f', clusterfile, '--refresh-only', '--auto-approve']);
    expect(recorded.stdout).toContain(`Recorded the drift in the state of cluster ${CLUSTER}; no host was changed.`);
    const after = home.readState(CLUSTER)!;
    expect(after.serial).toBe(before.serial + 1);
    expect(after.hosts[N1].layers).toEqual(before.hosts[N1].layers.filter((d) => !layerFile.includes(d.slice(7))));
    expect(await exec(N1, `test -f ${layerFile} || echo gone`)).toBe('gone\n');
    // The state now says what the host holds: the drift is gone, and even a plan without refresh resends the layer.
    expect((await ci(['plan', '-f', clusterfile, '--refresh-only', '--detailed-exitcode'])).stdout).toMatch(/^No drift\./);
    const again = await ci(['apply', '-f', clusterfile, '--refresh-only', '--auto-approve']);
    expect(again.stdout).toContain('Nothing to record');
    expect(home.readState(CLUSTER)!.serial).toBe(after.serial);
    const plain = await ci(['plan', '-f', clusterfile, '--refresh=false']);
    expect(plain.stdout).toMatch(/send 1 layer .*# resume: not completed/);
    await ci(['apply', '-f', clusterfile, '--auto-approve']);
    expect(await evidence(home)).toEqual(ran);
    expect((await ci(['plan', '-f', clusterfile, '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);
  });

  step('a layer changed on a host without changing its size or time is found by a deep refresh only, and sent again', async () => {
    // One byte flipped in place, the file's time put back: what a shallow refresh compares is all as recorded.
    await exec(N1, `t=$(stat -c %Y ${layerFile}); printf 'Z' | dd of=${layerFile} bs=1 seek=100 conv=notrunc 2>/dev/null; touch -d @$t ${layerFile}`);
    expect((await ci(['plan', '-f', clusterfile, '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);
    const deep = await ci(['plan', '-f', clusterfile, '--refresh=deep', '--detailed-exitcode'], 2);
    expect(deep.stdout).toContain(`${N1}: drift: layer changed on host`);
    expect(deep.stdout).toMatch(/send 1 layer .*# drift: layer changed on host/);
    await ci(['apply', '-f', clusterfile, '--refresh=deep', '--auto-approve']);
    expect((await ci(['plan', '-f', clusterfile, '--refresh=deep', '--detailed-exitcode'])).stdout).toMatch(/^No changes\./);
    expect(await evidence(home)).toEqual(ran);
  });

  step('a host whose link is down is reported by name and kept in the state; nothing is planned for it', async () => {
    const lab = JSON.parse(readFileSync(join(home.labDir(CLUSTER), 'lab.json'), 'utf8')) as { hosts: Record<string, { veth: string }> };
    downed = lab.hosts[N2].veth;
    execFileSync('ip', ['link', 'set', downed, 'down']);
    const before = home.readState(CLUSTER)!;
    const r = await ci(['plan', '-f', clusterfile, '--detailed-exitcode']);
    expect(r.stderr).toMatch(new RegExp(`warning: ${N2} could not be refreshed \\(.+\\); its state is kept as it was`));
    expect(r.stdout).toContain(`? ${N2}: not refreshed:`);
    expect(r.stdout).toMatch(/No changes\./);
    const only = await ci(['apply', '-f', clusterfile, '--refresh-only', '--auto-approve']);
    expect(only.stdout).toContain('Nothing to record');
    expect(home.readState(CLUSTER)!.hosts[N2]).toEqual(before.hosts[N2]);
    execFileSync('ip', ['link', 'set', downed, 'up']);
    downed = undefined;
    expect((await ci(['plan', '-f', clusterfile, '--detailed-exitcode'])).stderr).toBe('');
  });

  step('bad --refresh values and combinations are usage errors', async () => {
    expect((await ci(['plan', '-f', clusterfile, '--refresh=sometimes'], 64)).stderr).toMatch(/--refresh takes true, false or deep/);
    expect((await ci(['plan', '-f', clusterfile, '--refresh=false', '--refresh-only'], 64)).stderr).toMatch(/--refresh-only needs a refresh/);
    const deep = await ci(['plan', '-f', clusterfile, '--refresh=deep', '--refresh-only']);
    expect(deep.stdout).toMatch(/^No drift\./);
  });
});
