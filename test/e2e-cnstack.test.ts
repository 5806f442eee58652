/**
 * A delivery written the way the CNStack guide writes one for sealer, applied on LOCAL light hosts through the `ci`
 * CLI: a Cluster with env (one key given twice), PreInit plugins that prepare directories on every host or on the
 * nodes only, a PostInstall plugin on master0, a Config that overwrites a chart's values, and kubeadm documents in
 * the same file. The image's hooks and CMD record what they received, and the hosts show that each piece acted,
 * where and in which order; a second plan has nothing to do.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsAvailable } from './helpers/lab.js';
import { cleanupHome, describeRun, labExec, makeHome, serialSteps, type E2eHome } from './helpers/e2e.js';
import { writeTree } from './helpers/tmp.js';

const CLUSTER = 'cnstack-e2e';
const DIR = `/var/lib/cloudimage/clusters/${CLUSTER}`;
const LONG = 120_000;
const TOKEN = 'abcdef.0123456789abcdef';

const CLUSTERFILE = `apiVersion: sealer.io/v2
kind: Cluster
metadata:
  name: ${CLUSTER}
spec:
  image: cnstack-e2e:v1
  provider: LOCAL
  env:
  - SITE=lab
  - CertSANs=a.example.com
  - CertSANs=b.example.com
  hosts:
  - {count: 1, kind: light, roles: [master]}
  - {count: 1, kind: light, roles: [node]}
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: prepare_local_dir # the directories the apps mount as hostPath volumes
spec:
  type: SHELL
  action: PreInit
  data: |
    mkdir -p data/storage-loki-0 data/grafana-pv
    echo "prepare_local_dir on $CI_HOSTNAME" >> record.log
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: prepare_vg
spec:
  type: SHELL
  action: PreInit
  'on': node
  data: |
    VG_DEV=\${VG_DEV:-/dev/vdb}
    echo "prepare_vg on $CI_HOSTNAME with $VG_DEV" >> record.log
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Plugin
metadata:
  name: install-open-local
spec:
  type: SHELL
  action: PostInstall
  'on': master0
  data: |
    echo "install-open-local after $(grep -c '^cmd' record.log) CMD" >> record.log
---
apiVersion: sealer.aliyun.com/v1alpha1
kind: Config
metadata:
  name: cluster-addon-sc
spec:
  path: charts/cluster-addon-configuration/values.yaml
  data: |
    dataStorageClass: open-local-lvm
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.4
networking:
  podSubnet: 100.64.0.0/16
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
bootstrapTokens:
- token: ${TOKEN}
`;

describe.skipIf(!labsAvailable())('a CNStack-style Clusterfile on LOCAL hosts', () => {
  let home: E2eHome;
  let clusterfile: string;
  const master0 = `${CLUSTER}-master-1`;
  const node = `${CLUSTER}-node-1`;
  const on = (host: string, cmd: string) => labExec(home.labDir(CLUSTER), host, cmd);
  const record = async (host: string) => (await on(host, `cat ${DIR}/record.log 2>/dev/null || true`)).stdout.trim().split('\n').filter(Boolean);

  const step = serialSteps(LONG);

  beforeAll(async () => {
    home = makeHome('ci-e2e-cnstack-');
    clusterfile = join(home.dir, 'Clusterfile');
    writeFileSync(clusterfile, CLUSTERFILE);
    const ctx = join(home.dir, 'ctx');
    writeTree(ctx, {
      Kubefile: [
        'FROM scratch',
        'COPY imageList manifests/',
        'COPY charts charts',
        'COPY hooks/ /hooks/',
        'CMD echo "cmd sees $(cat charts/cluster-addon-configuration/values.yaml)" >> ../record.log',
      ].join('\n') + '\n',
      imageList: 'registry.example.com/open-local:v1\n',
      'charts/cluster-addon-configuration/values.yaml': 'dataStorageClass: manual\n',
      // What a Kubernetes image's hook would read: the env and the kubeadm documents of the Clusterfile.
      'hooks/init-host': [
        'echo "init-host on $CI_HOSTNAME SITE=$SITE CertSANs=$CertSANs" >> ../record.log',
        'cp "$CI_CLUSTER_DOCUMENTS" ../documents-seen.yaml',
      ].join('\n') + '\n',
    });
    await home.ciOk(['build', '-q', '-t', 'cnstack-e2e:v1', ctx]);
  }, LONG);

  afterAll(async () => {
    if (home) await cleanupHome(home, [clusterfile]);
  }, 300_000);

  step('the plan shows the plugins on their hosts, the config change and the documents', async () => {
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/documents for hooks: ClusterConfiguration, InitConfiguration/);
    expect(plan.stdout).toMatch(/-dataStorageClass: manual\n[^]*\+dataStorageClass: open-local-lvm/);
    const nodeBlock = plan.stdout.slice(plan.stdout.indexOf(`host ${node}`));
    expect(nodeBlock).toMatch(/plugin prepare_local_dir at pre-init[^]*plugin prepare_vg at pre-init/);
    expect(plan.stdout).not.toContain(TOKEN);
  });

  step('apply: each piece acts where and when it should', async () => {
    const r = await home.ci(['apply', '-f', clusterfile, '--auto-approve']);
    expect(r.code, describeRun(['apply'], r)).toBe(0);
    expect(await record(master0)).toEqual([
      `prepare_local_dir on ${master0}`,
      `init-host on ${master0} SITE=lab CertSANs=a.example.com b.example.com`,
      'cmd sees dataStorageClass: open-local-lvm',
      'install-open-local after 1 CMD',
    ]);
    expect(await record(node)).toEqual([
      `prepare_local_dir on ${node}`,
      `prepare_vg on ${node} with /dev/vdb`,
      `init-host on ${node} SITE=lab CertSANs=a.example.com b.example.com`,
    ]);
    for (const h of [master0, node]) {
      expect((await on(h, `ls ${DIR}/data`)).stdout.split('\n').filter(Boolean)).toEqual(['grafana-pv', 'storage-loki-0']);
      const docs = (await on(h, `stat -c %a ${DIR}/documents.yaml; cat ${DIR}/documents-seen.yaml`)).stdout;
      expect(docs.split('\n')[0]).toBe('600');
      expect(docs).toMatch(/kind: ClusterConfiguration[^]*podSubnet: 100\.64\.0\.0\/16[^]*kind: InitConfiguration/);
      expect(docs).not.toContain(TOKEN);
    }
    for (const text of [r.stdout, r.stderr, home.logs(CLUSTER)]) expect(text).not.toContain(TOKEN);
  });

  step('a second plan has nothing to do', async () => {
    const plan = await home.ciOk(['plan', '-f', clusterfile]);
    expect(plan.stdout).toMatch(/^No changes\./);
  });
});
