/**
 * Sealed boxes for secrets at rest: AES-256-GCM with a fresh random 96-bit IV on every seal, authenticated together
 * with a context string (for the state: its lineage), so a box is refused if any byte of it changed or if it was
 * moved into another context. A box records its algorithm and key id so the format can evolve (another algorithm,
 * a key derived from a passphrase) without guessing.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { StateKey } from './keys.js';

export const SEAL_ALGORITHM = 'AES-256-GCM';

export interface SealedBox {
  alg: string;
  keyId: string;
  /** base64 */
  iv: string;
  /** base64, the GCM authentication tag */
  tag: string;
  /** base64 ciphertext */
  data: string;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

export function seal(plain: Buffer, key: StateKey, context: string): SealedBox {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const data = Buffer.concat([cipher.update(plain), cipher.final()]);
  return { alg: SEAL_ALGORITHM, keyId: key.id, iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') };
}

/** The plain bytes, or undefined when the box does not authenticate under this key and context. */
export function open(box: SealedBox, key: StateKey, context: string): Buffer | undefined {
  const iv = Buffer.from(box.iv, 'base64');
  const tag = Buffer.from(box.tag, 'base64');
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(Buffer.from(box.data, 'base64')), decipher.final()]);
  } catch {
    return undefined;
  }
}

export function isSealedBox(v: unknown): v is SealedBox {
  if (!v || typeof v !== 'object') return false;
  const b = v as Record<string, unknown>;
  return ['alg', 'keyId', 'iv', 'tag', 'data'].every((k) => typeof b[k] === 'string');
}
