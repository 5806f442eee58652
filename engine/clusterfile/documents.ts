/**
 * Documents of other kinds kept in a Clusterfile (sealer's Application, kubeadm's ClusterConfiguration,
 * KubeletConfiguration...): kept as written, named in the plan, and handed to the hooks as one YAML file with
 * their secrets masked, since a hook's host is not the place for the operator's tokens and keys.
 */
import { stringify } from 'yaml';
import { canonicalJson, sha256, type Digest } from '../kernel/digest.js';
import { registerSecret } from '../kernel/redact.js';
import type { KeptDocument } from './types.js';

const MASK = '******';

/**
 * Field names that hold a secret: passwords, tokens, secrets, credentials, and keys (`privateKey`, `certificateKey`,
 * `accessKeySecret`). A field named just `key` is a taint's or a selector's key, not a secret, and is kept.
 */
const SECRET_FIELD = /pass(?:word|wd)?$|^pwd$|token|secret|credential|.key$|^key(?:data|file)?s?$/i;
const PLAIN_KEY = /^key$/i;

export function isSecretField(name: string): boolean {
  return !PLAIN_KEY.test(name) && SECRET_FIELD.test(name.replace(/[-_]/g, ''));
}

function maskAll(v: unknown): unknown {
  if (v === null || v === undefined) return v;
  if (Array.isArray(v)) return v.map(maskAll);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k]) => [k, MASK]));
  return MASK;
}

/** Every value masked is registered as a secret too, so neither logs nor errors show it. */
function register(v: unknown): void {
  if (typeof v === 'string') registerSecret(v);
  else if (Array.isArray(v)) v.forEach(register);
  else if (v && typeof v === 'object') Object.values(v).forEach(register);
}

function mask(v: unknown, secretKind: boolean, depth: number): unknown {
  if (Array.isArray(v)) return v.map((x) => mask(x, false, depth + 1));
  if (!v || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    // A Secret's data and stringData hold nothing but secrets, whatever their keys are named.
    if ((secretKind && depth === 0 && (k === 'data' || k === 'stringData')) || isSecretField(k)) {
      register(x);
      out[k] = x && typeof x === 'object' ? maskAll(x) : x === null || x === '' ? x : MASK;
    } else {
      out[k] = mask(x, false, depth + 1);
    }
  }
  return out;
}

/** The document as hooks see it; its secrets are registered as it is made. */
export function maskedDocument(d: KeptDocument): Record<string, unknown> {
  return mask(d.body, d.kind === 'Secret', 0) as Record<string, unknown>;
}

/** The file handed to hooks: the masked documents, in file order, one YAML document each. */
export function documentsYaml(docs: readonly KeptDocument[]): string {
  return docs.map((d) => stringify(maskedDocument(d), { lineWidth: 0 })).join('---\n');
}

/**
 * What a change of the documents is measured by: the masked form, which is what hooks get, so a changed token
 * alone (which hooks never see) reconfigures nothing. Undefined without documents.
 */
export function documentsDigest(docs: readonly KeptDocument[]): Digest | undefined {
  return docs.length ? sha256(canonicalJson(docs.map(maskedDocument))) : undefined;
}
