/** lab.json: everything needed to find, reuse or remove a lab's hosts after the creating process is gone. */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../../engine/kernel/fsutil.js';
import { LocalHostError } from './errors.js';
import { HOST_KINDS } from './host-dirs.js';

const ProcRefSchema = z.object({ pid: z.number().int(), startTime: z.string() });

export const HostRecordSchema = z.object({
  name: z.string(),
  hostname: z.string(),
  kind: z.enum(HOST_KINDS),
  ip: z.string(),
  index: z.number().int(),
  netns: z.string(),
  veth: z.string(),
  hostKey: z.string(),
  proc: ProcRefSchema.optional(),
  createdAt: z.string(),
});

export const LabFileSchema = z.object({
  version: z.literal(1),
  id: z.string(),
  subnet: z.object({ k: z.number().int(), cidr: z.string(), gateway: z.string() }),
  bridge: z.string(),
  /** Lineage of the cluster state whose hosts these are; recorded when a cluster first uses the lab. */
  lineage: z.string().optional(),
  hosts: z.record(z.string(), HostRecordSchema),
});

export type HostRecord = z.infer<typeof HostRecordSchema>;
export type LabFile = z.infer<typeof LabFileSchema>;

export const labFilePath = (dir: string) => join(dir, 'lab.json');

export async function readLabFile(dir: string): Promise<LabFile | undefined> {
  let text: string;
  try {
    text = await fs.readFile(labFilePath(dir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = LabFileSchema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new LocalHostError(`${labFilePath(dir)} is not a valid lab file: ${parsed.error.issues[0]?.message ?? 'unknown problem'}`, {
      hint: 'remove the hosts by hand (ip netns list) and delete the directory, then run again',
    });
  }
  return parsed.data;
}

export async function writeLabFile(dir: string, lab: LabFile): Promise<void> {
  await writeFileAtomic(labFilePath(dir), JSON.stringify(lab, null, 2) + '\n', 0o600);
}
