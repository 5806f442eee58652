/**
 * For end-to-end tests of provider ALI_CLOUD: the Clusterfile they apply, the environment that points ci at a test
 * emulator, and an inventory of everything the emulator holds, read through the real SDK.
 */
import * as $Ecs from '@alicloud/ecs20140526';
import * as $Vpc from '@alicloud/vpc20160428';
import { TEST_REGION, type TestEmulator } from './aliyun-emulator.js';

/** The access key of the emulator, and nothing of this machine's own Aliyun configuration. */
export const emulatorEnv = (emu: TestEmulator): NodeJS.ProcessEnv => ({
  ALIBABA_CLOUD_ACCESS_KEY_ID: emu.accessKeyId,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: emu.accessKeySecret,
  ALIBABA_CLOUD_ECS_METADATA_DISABLED: 'true',
  ALIBABA_CLOUD_CLI_PROFILE_DISABLED: 'true',
});

/** 1 master (ecs.g7.2xlarge) and `nodes` nodes with a 200 GiB data disk; `extra` is added to the cloud block. */
export function clusterfile(name: string, endpoint: string, nodes: number, extra = ''): string {
  return `apiVersion: cloudimage.io/v1
kind: Cluster
metadata: {name: ${name}}
spec:
  image: etcd-example:v1
  provider: ALI_CLOUD
  cloud: {regionId: ${TEST_REGION}, zoneId: cn-hangzhou-h, imageId: debian_12_x64, vpcCidr: 172.16.0.0/16,
          instanceType: ecs.g7.xlarge, systemDisk: 40, endpoint: "${endpoint}", protocol: http${extra}}
  hosts:
  - {count: 1, roles: [master], instanceType: ecs.g7.2xlarge}
  - {count: ${nodes}, roles: [node], dataDisks: [200]}
`;
}

/** Calls the emulator as a patient client would: an answer refused by an injected fault is asked again. */
export async function steady<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = String((err as { code?: string }).code ?? '');
      if (attempt >= 50 || !/^(Throttling|ServiceUnavailable|InternalError)/.test(code)) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Everything the emulator holds, counted through the SDK. */
export async function inventory(emu: TestEmulator) {
  const ecs = emu.ecs();
  const vpc = emu.vpc();
  const instances = (await steady(() => ecs.describeInstances(new $Ecs.DescribeInstancesRequest({ regionId: TEST_REGION, maxResults: 100 })))).body?.instances?.instance ?? [];
  return {
    instances: instances.map((i) => ({ id: i.instanceId!, hostName: i.hostName!, status: i.status! })),
    vpcs: (await steady(() => vpc.describeVpcs(new $Vpc.DescribeVpcsRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.vpcs?.vpc?.length ?? 0,
    vSwitches: (await steady(() => vpc.describeVSwitches(new $Vpc.DescribeVSwitchesRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.vSwitches?.vSwitch?.length ?? 0,
    securityGroups: (await steady(() => ecs.describeSecurityGroups(new $Ecs.DescribeSecurityGroupsRequest({ regionId: TEST_REGION, maxResults: 100 })))).body?.securityGroups?.securityGroup?.length ?? 0,
    keyPairs: (await steady(() => ecs.describeKeyPairs(new $Ecs.DescribeKeyPairsRequest({ regionId: TEST_REGION, pageSize: 50 })))).body?.keyPairs?.keyPair?.length ?? 0,
  };
}

export const EMPTY = { instances: [], vpcs: 0, vSwitches: 0, securityGroups: 0, keyPairs: 0 };
