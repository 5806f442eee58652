/**
 * Tags: requests always send `Tag.N.Key`/`Tag.N.Value`; ECS answers `{TagKey, TagValue}`, the VPC API `{Key, Value}`.
 */
import { errors } from './api-errors.js';
import type { ApiParams } from './params.js';
import type { TagRec } from './store.js';

export const MAX_TAGS = 20;

const forbiddenKey = (k: string) => /^(aliyun|acs:)/i.test(k) || /https?:\/\//i.test(k);

/** Tags to set on a resource: keys required, unique and valid; values may be empty. */
export function tagsToSet(params: ApiParams, opts: { required?: boolean } = {}): TagRec[] {
  const tags = params.objects('Tag').map((o) => ({ key: o.Key ?? '', value: o.Value ?? '' }));
  if (opts.required && tags.length === 0) throw errors.missing('Tag.N.Key');
  if (tags.length > MAX_TAGS) throw errors.tagCount();
  const seen = new Set<string>();
  for (const t of tags) {
    if (t.key === '' || t.key.length > 128 || forbiddenKey(t.key)) throw errors.tagKey();
    if (t.value.length > 128 || /https?:\/\//i.test(t.value)) throw errors.tagValue();
    if (seen.has(t.key)) throw errors.duplicateTagKey();
    seen.add(t.key);
  }
  return tags;
}

export interface TagFilter {
  key: string;
  /** Undefined: any value. */
  value?: string;
}

/** Tag filters of Describe* calls: `Tag.N.Key` with an optional `Tag.N.Value`. */
export function tagFilters(params: ApiParams): TagFilter[] {
  const filters = params.objects('Tag').map((o) => ({ key: o.Key ?? '', value: o.Value }));
  if (filters.length > MAX_TAGS) throw errors.tagCount();
  if (filters.some((f) => f.key === '')) throw errors.tagKey();
  return filters;
}

/** A resource matches when it carries every filter's key (with the filter's value, if given). */
export function matchesTags(tags: TagRec[], filters: TagFilter[]): boolean {
  return filters.every((f) => tags.some((t) => t.key === f.key && (f.value === undefined || t.value === f.value)));
}

/** Sets (or overwrites) tags; refuses more than MAX_TAGS in all. */
export function mergeTags(current: TagRec[], add: TagRec[]): TagRec[] {
  const out = current.map((t) => ({ ...t }));
  for (const t of add) {
    const have = out.find((x) => x.key === t.key);
    if (have) have.value = t.value;
    else out.push({ ...t });
  }
  if (out.length > MAX_TAGS) throw errors.tagCount();
  return out;
}

/** ECS answers omit `Tags` for an untagged resource. [unverified: an empty wrapper would also be plausible] */
export function ecsTags(tags: TagRec[]): Record<string, unknown> {
  return tags.length === 0 ? {} : { Tags: { Tag: tags.map((t) => ({ TagKey: t.key, TagValue: t.value })) } };
}

export function vpcTags(tags: TagRec[]): Record<string, unknown> {
  return { Tags: { Tag: tags.map((t) => ({ Key: t.key, Value: t.value })) } };
}
