/**
 * Each lab owns one 10.250.<k>.0/24. Claims are files created with O_EXCL under /run, so concurrent labs on
 * one machine never pick the same k; a claim whose lab is gone (or whose kernel state vanished at reboot)
 * is taken over.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { interfaceAddresses } from './network.js';
import { LocalHostError } from './errors.js';

export const CLAIM_DIR = process.env.CI_LAB_CLAIMS ?? '/run/cloudimage/lab-subnets';

export interface Subnet {
  k: number;
  cidr: string;
  gateway: string;
}

export function subnetFor(k: number): Subnet {
  return { k, cidr: `10.250.${k}.0/24`, gateway: `10.250.${k}.1` };
}

export function hostAddress(subnet: Subnet, index: number): string {
  return `10.250.${subnet.k}.${index}`;
}

interface Claim {
  labId: string;
  dir: string;
}

function usedByInterfaces(addrsByInterface: Map<string, string[]>): Set<number> {
  const used = new Set<number>();
  for (const addrs of addrsByInterface.values()) {
    for (const a of addrs) {
      const m = /^10\.250\.(\d+)\./.exec(a);
      if (m) used.add(Number(m[1]));
    }
  }
  return used;
}

async function claimIsStale(path: string): Promise<boolean> {
  try {
    const claim = JSON.parse(await fs.readFile(path, 'utf8')) as Claim;
    const lab = JSON.parse(await fs.readFile(join(claim.dir, 'lab.json'), 'utf8')) as { id?: string };
    return lab.id !== claim.labId;
  } catch {
    return true;
  }
}

async function tryClaim(k: number, claim: Claim): Promise<boolean> {
  const path = join(CLAIM_DIR, String(k));
  try {
    await fs.writeFile(path, JSON.stringify(claim), { flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const current = await fs.readFile(path, 'utf8').catch(() => '');
  if (current && JSON.parse(current).labId === claim.labId) return true;
  if (!(await claimIsStale(path))) return false;
  // Take over through a rename so two takers cannot both believe they won.
  const mine = `${path}.${claim.labId}`;
  await fs.writeFile(mine, JSON.stringify(claim));
  await fs.rename(mine, path);
  const after = JSON.parse(await fs.readFile(path, 'utf8')) as Claim;
  return after.labId === claim.labId;
}

/** Claims a subnet for the lab: the preferred k if still free (re-open after reboot), else the first free one. */
export async function claimSubnet(labId: string, dir: string, preferred?: number, addrs?: Map<string, string[]>): Promise<Subnet> {
  await fs.mkdir(CLAIM_DIR, { recursive: true });
  const inUse = usedByInterfaces(addrs ?? (await interfaceAddresses()));
  const order = [...(preferred !== undefined ? [preferred] : []), ...Array.from({ length: 255 }, (_, i) => i)];
  for (const k of order) {
    if (inUse.has(k) && k !== preferred) continue;
    if (await tryClaim(k, { labId, dir })) return subnetFor(k);
  }
  throw new LocalHostError('no free 10.250.<k>.0/24 subnet left for a new local lab', {
    hint: 'destroy unused local clusters with `ci destroy`',
  });
}

/** Returns whether the lab held the claim. */
export async function releaseSubnet(labId: string, k: number): Promise<boolean> {
  const path = join(CLAIM_DIR, String(k));
  try {
    const claim = JSON.parse(await fs.readFile(path, 'utf8')) as Claim;
    if (claim.labId !== labId) return false;
    await fs.rm(path, { force: true });
    return true;
  } catch {
    // Nothing claimed, nothing to release.
    return false;
  }
}
