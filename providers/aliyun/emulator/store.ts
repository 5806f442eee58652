/**
 * The emulated account's resources, kept in `<data>/store.json` and written with the kernel's atomic writer after
 * every change, so an emulator started again on the same directory finds everything it had. Times are epoch
 * milliseconds; states (Pending, Running, ...) are derived from them when asked, so they move on across restarts.
 * Passwords are kept only as crypt(3) hashes.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { CiError } from '../../../engine/kernel/errors.js';
import { writeFileAtomic } from '../../../engine/kernel/fsutil.js';

const Tag = z.object({ key: z.string(), value: z.string() });

const Vpc = z.object({
  id: z.string(),
  regionId: z.string(),
  cidrBlock: z.string(),
  name: z.string(),
  description: z.string(),
  resourceGroupId: z.string(),
  vRouterId: z.string(),
  routeTableId: z.string(),
  createdAt: z.number(),
  availableAt: z.number(),
  tags: z.array(Tag),
});

const VSwitch = z.object({
  id: z.string(),
  regionId: z.string(),
  vpcId: z.string(),
  zoneId: z.string(),
  cidrBlock: z.string(),
  name: z.string(),
  description: z.string(),
  resourceGroupId: z.string(),
  createdAt: z.number(),
  availableAt: z.number(),
  tags: z.array(Tag),
});

const Rule = z.object({
  id: z.string(),
  ipProtocol: z.string(),
  portRange: z.string(),
  sourceCidrIp: z.string(),
  ipv6SourceCidrIp: z.string(),
  sourceGroupId: z.string(),
  sourcePortRange: z.string(),
  destCidrIp: z.string(),
  policy: z.string(),
  priority: z.number(),
  nicType: z.string(),
  description: z.string(),
  createdAt: z.number(),
});

const SecurityGroup = z.object({
  id: z.string(),
  regionId: z.string(),
  vpcId: z.string(),
  name: z.string(),
  description: z.string(),
  type: z.string(),
  resourceGroupId: z.string(),
  createdAt: z.number(),
  tags: z.array(Tag),
  rules: z.array(Rule),
});

const KeyPair = z.object({
  name: z.string(),
  regionId: z.string(),
  publicKey: z.string(),
  fingerprint: z.string(),
  resourceGroupId: z.string(),
  createdAt: z.number(),
  tags: z.array(Tag),
});

const Disk = z.object({ category: z.string(), size: z.number(), performanceLevel: z.string() });

const Instance = z.object({
  id: z.string(),
  regionId: z.string(),
  zoneId: z.string(),
  vpcId: z.string(),
  vSwitchId: z.string(),
  securityGroupIds: z.array(z.string()),
  imageId: z.string(),
  instanceType: z.string(),
  cpu: z.number(),
  memoryMiB: z.number(),
  name: z.string(),
  hostName: z.string(),
  description: z.string(),
  keyPairName: z.string(),
  /** crypt(3) hash of the instance's root password; empty without one. */
  passwordHash: z.string(),
  /** The key pair's public key as it was at creation: the host keeps it even if the key pair is deleted. */
  authorizedKey: z.string(),
  internetChargeType: z.string(),
  internetMaxBandwidthOut: z.number(),
  internetMaxBandwidthIn: z.number(),
  instanceChargeType: z.string(),
  spotStrategy: z.string(),
  systemDisk: Disk,
  dataDisks: z.array(Disk),
  resourceGroupId: z.string(),
  deletionProtection: z.boolean(),
  networkInterfaceId: z.string(),
  serialNumber: z.string(),
  tags: z.array(Tag),
  createdAt: z.number(),
  pendingUntil: z.number(),
  startingUntil: z.number(),
  sshdDelayMs: z.number(),
  /** Lab address of the instance's host, known once the host was made. */
  ip: z.string().optional(),
  /** When the host answered SSH (the instance may be Running from then on). */
  hostUpAt: z.number().optional(),
  releasing: z.object({ at: z.number(), settleAt: z.number(), hostRemoved: z.boolean() }).optional(),
});

const Token = z.object({ digest: z.string(), body: z.record(z.string(), z.unknown()), at: z.number() });

const StoreFile = z.object({
  version: z.literal(1),
  /** Key of the digests that compare calls made with one ClientToken (they cover passwords). */
  salt: z.string(),
  vpcs: z.record(z.string(), Vpc),
  vSwitches: z.record(z.string(), VSwitch),
  securityGroups: z.record(z.string(), SecurityGroup),
  /** Keyed by `<regionId>/<name>`. */
  keyPairs: z.record(z.string(), KeyPair),
  instances: z.record(z.string(), Instance),
  /** Keyed by `<action> <token>`. */
  tokens: z.record(z.string(), Token),
});

export type TagRec = z.infer<typeof Tag>;
export type VpcRec = z.infer<typeof Vpc>;
export type VSwitchRec = z.infer<typeof VSwitch>;
export type RuleRec = z.infer<typeof Rule>;
export type SecurityGroupRec = z.infer<typeof SecurityGroup>;
export type KeyPairRec = z.infer<typeof KeyPair>;
export type DiskRec = z.infer<typeof Disk>;
export type InstanceRec = z.infer<typeof Instance>;
export type StoreData = z.infer<typeof StoreFile>;

export const storePath = (dataDir: string) => join(dataDir, 'store.json');

export function emptyStore(): StoreData {
  return {
    version: 1,
    salt: randomBytes(16).toString('hex'),
    vpcs: {},
    vSwitches: {},
    securityGroups: {},
    keyPairs: {},
    instances: {},
    tokens: {},
  };
}

export class EmulatorStoreError extends CiError {
  constructor(message: string, hint: string, cause?: unknown) {
    super('ALIYUN_EMULATOR_STORE', message, { hint, cause });
  }
}

export class Store {
  private writing: Promise<void> | undefined;
  private again = false;
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  private constructor(
    private readonly path: string,
    public data: StoreData,
  ) {}

  static async open(dataDir: string): Promise<Store> {
    const path = storePath(dataDir);
    let text: string | undefined;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text === undefined) {
      const store = new Store(path, emptyStore());
      await store.commit();
      return store;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new EmulatorStoreError(`${path} is not valid JSON`, 'start the emulator with --reset to begin empty (its hosts are released)', err);
    }
    const parsed = StoreFile.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new EmulatorStoreError(
        `${path} is not a store this emulator can read: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'unknown problem'}`,
        'start the emulator with --reset to begin empty (its hosts are released)',
      );
    }
    return new Store(path, parsed.data);
  }

  /** Writes the current data; calls made while a write runs are served by one more write after it. */
  commit(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.writing) this.again = true;
    else this.writing = this.flush();
    return done;
  }

  private async flush(): Promise<void> {
    do {
      this.again = false;
      const waiters = this.waiters;
      this.waiters = [];
      try {
        await writeFileAtomic(this.path, JSON.stringify(this.data, null, 1) + '\n', 0o600);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    } while (this.again || this.waiters.length > 0);
    this.writing = undefined;
  }
}
