/**
 * Image references: `name:tag`, `registry.example.com:5000/team/name:tag`, `name@sha256:…`.
 * The local store names images by the full reference text, normalised with a default tag.
 */
import { InvalidReferenceError } from '../kernel/errors.js';
import { isDigest, type Digest } from '../kernel/digest.js';

export interface Reference {
  /** Registry host[:port], or undefined for a bare local name. */
  registry?: string;
  /** Repository path without the registry, e.g. `team/etcd`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function parseReference(text: string): Reference {
  if (!text || /\s/.test(text)) throw new InvalidReferenceError(text, 'empty or contains white space');
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw new InvalidReferenceError(text, `"${d}" is not a sha256 digest`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(text, `tag "${tag}" is not valid`);
  }
  let registry: string | undefined;
  const parts = rest.split('/');
  if (parts.length > 1 && (parts[0].includes('.') || parts[0].includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift();
  }
  for (const p of parts) {
    if (!COMPONENT.test(p)) throw new InvalidReferenceError(text, `name component "${p}" must be lower-case letters, digits and separators`);
  }
  if (!digest && !tag) tag = 'latest';
  return { registry, repository: parts.join('/'), tag, digest };
}

/** The name the local store keeps for a reference: `[registry/]repository:tag` or `…@digest`. */
export function formatReference(r: Reference): string {
  const name = r.registry ? `${r.registry}/${r.repository}` : r.repository;
  if (r.tag) return `${name}:${r.tag}`;
  return `${name}@${r.digest}`;
}

export function normalizeReference(text: string): string {
  return formatReference(parseReference(text));
}
