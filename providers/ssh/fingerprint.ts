import { createHash } from 'node:crypto';

/** OpenSSH-style fingerprint (`SHA256:<unpadded base64>`) of a host key blob in SSH wire format. */
export function fingerprintOfKeyBlob(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** Fingerprint of a public key line such as the contents of `ssh_host_ed25519_key.pub`. */
export function fingerprintOfPublicKeyLine(line: string): string {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 2) throw new Error(`not an OpenSSH public key line: "${line.slice(0, 40)}"`);
  return fingerprintOfKeyBlob(Buffer.from(parts[1], 'base64'));
}
