/** ECS key pairs: imported public keys, which instances made with them accept for root. */
import { createHash } from 'node:crypto';
import { errors } from '../api-errors.js';
import { byPageNumber } from '../paging.js';
import { ecsTags, matchesTags, tagFilters, tagsToSet } from '../tags.js';
import { isoMinutes, type Body } from '../wire.js';
import { wildcardMatch } from '../params.js';
import { regionOf, type ActionTable, type Ctx } from './action.js';

const MAX_KEY_PAIRS = 500;
const KEY_PAIR_NAME = /^[A-Za-z][A-Za-z0-9._:-]{1,127}$/;
const KEY_TYPES = ['ssh-rsa', 'ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-dss'];

/** `type base64 [comment]` whose blob names the same type; returns the normalised line and the blob. */
function parsePublicKey(body: string): { line: string; blob: Buffer } {
  const [type, data, ...comment] = body.trim().split(/\s+/);
  if (!KEY_TYPES.includes(type) || !data || !/^[A-Za-z0-9+/]+={0,2}$/.test(data)) throw errors.publicKey();
  const blob = Buffer.from(data, 'base64');
  const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
  if (len < 0 || 4 + len > blob.length || blob.subarray(4, 4 + len).toString('latin1') !== type) throw errors.publicKey();
  return { line: [type, data, ...comment].join(' '), blob };
}

/** RFC 4716 fingerprint: MD5 of the key blob, colon-separated hex. */
const fingerprint = (blob: Buffer) =>
  createHash('md5')
    .update(blob)
    .digest('hex')
    .match(/../g)!
    .join(':');

function importKeyPair(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const name = params.required('KeyPairName');
  if (!KEY_PAIR_NAME.test(name) || /^https?:\/\//.test(name)) throw errors.keyPairName();
  const { line, blob } = parsePublicKey(params.required('PublicKeyBody'));
  const tags = tagsToSet(params);
  const key = `${r.id}/${name}`;
  if (cloud.data.keyPairs[key]) throw errors.keyPairExists();
  if (Object.values(cloud.data.keyPairs).filter((k) => k.regionId === r.id).length >= MAX_KEY_PAIRS) throw errors.keyPairQuota();
  const fp = fingerprint(blob);
  cloud.data.keyPairs[key] = {
    name,
    regionId: r.id,
    publicKey: line,
    fingerprint: fp,
    resourceGroupId: params.nonEmpty('ResourceGroupId') ?? cloud.defaultResourceGroupId,
    createdAt: Date.now(),
    tags,
  };
  return { KeyPairName: name, KeyPairFingerPrint: fp };
}

function describeKeyPairs(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const name = params.nonEmpty('KeyPairName');
  const fp = params.nonEmpty('KeyPairFingerPrint');
  const rg = params.nonEmpty('ResourceGroupId');
  const filters = tagFilters(params);
  const withKey = params.bool('IncludePublicKey') === true;
  const found = Object.values(cloud.data.keyPairs)
    .filter(
      (k) =>
        k.regionId === r.id &&
        (name === undefined || wildcardMatch(name, k.name)) &&
        (fp === undefined || k.fingerprint === fp) &&
        (rg === undefined || k.resourceGroupId === rg) &&
        matchesTags(k.tags, filters),
    )
    .sort((a, b) => a.createdAt - b.createdAt || (a.name < b.name ? -1 : 1));
  const page = byPageNumber(found, params, { maxSize: 50 });
  return {
    KeyPairs: {
      KeyPair: page.items.map((k) => ({
        KeyPairName: k.name,
        KeyPairFingerPrint: k.fingerprint,
        CreationTime: isoMinutes(k.createdAt),
        ResourceGroupId: k.resourceGroupId,
        ...(withKey ? { PublicKey: k.publicKey } : {}),
        ...ecsTags(k.tags),
      })),
    },
    ...page.fields,
  };
}

function deleteKeyPairs(ctx: Ctx): Body {
  const { cloud, params } = ctx;
  const r = regionOf(ctx);
  const names = params.jsonList('KeyPairNames', { max: 100 });
  if (names === undefined || names.length === 0) throw errors.missing('KeyPairNames');
  // Names that do not exist are skipped [unverified]; instances made with a deleted key pair keep its key.
  for (const n of names) delete cloud.data.keyPairs[`${r.id}/${n}`];
  return {};
}

export const ecsKeyPairActions: ActionTable = {
  ImportKeyPair: { run: importKeyPair, mutates: true },
  DescribeKeyPairs: { run: describeKeyPairs },
  DeleteKeyPairs: { run: deleteKeyPairs, mutates: true },
};
