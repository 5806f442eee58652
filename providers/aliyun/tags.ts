/**
 * Every resource this provider makes carries these tags: who manages it, which cluster it is part of and for which
 * state lineage, and (instances) which role and group. They are how a lost state is found again, and the proof of
 * ownership asked before anything is deleted: a resource without them is never touched.
 */
export const TAGS = {
  managedBy: 'cloudimage:managed-by',
  cluster: 'cloudimage:cluster',
  lineage: 'cloudimage:lineage',
  role: 'cloudimage:role',
  group: 'cloudimage:group',
} as const;

export const MANAGER = 'cloudimage';

export interface Tag {
  key: string;
  value: string;
}

export function ownerTags(cluster: string, lineage: string | undefined): Tag[] {
  return [
    { key: TAGS.managedBy, value: MANAGER },
    { key: TAGS.cluster, value: cluster },
    ...(lineage ? [{ key: TAGS.lineage, value: lineage }] : []),
  ];
}

/** Tags as the APIs answer them: ECS `{TagKey, TagValue}`, VPC `{Key, Value}` (camelCase in the SDK's models). */
export function readTags(list: { tagKey?: string; tagValue?: string; key?: string; value?: string }[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const t of list ?? []) {
    const k = t.tagKey ?? t.key;
    if (k) out.set(k, t.tagValue ?? t.value ?? '');
  }
  return out;
}

/**
 * Whether the tags say the resource belongs to this cluster (and, when the state's lineage is known and the resource
 * names one, to this state).
 */
export function ownedBy(tags: Map<string, string>, cluster: string, lineage: string | undefined): boolean {
  if (tags.get(TAGS.managedBy) !== MANAGER || tags.get(TAGS.cluster) !== cluster) return false;
  const theirs = tags.get(TAGS.lineage);
  return !lineage || !theirs || theirs === lineage;
}
