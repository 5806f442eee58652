/** Names for kernel objects of a lab. Interface names must fit IFNAMSIZ (15 bytes), and two labs never share one. */
import { createHash, randomBytes } from 'node:crypto';
import { LocalHostError } from './errors.js';

const HOST_NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

export function newLabId(): string {
  return randomBytes(4).toString('hex');
}

export function checkHostName(name: string): void {
  if (!HOST_NAME.test(name)) {
    throw new LocalHostError(`invalid local host name "${name}": use 1-32 lowercase letters, digits and inner dashes`, {
      code: 'LOCAL_HOST_NAME_INVALID',
    });
  }
}

function short(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 10);
}

export const bridgeName = (labId: string) => `cib${labId}`; // 11 chars
export const vethName = (labId: string, host: string) => `civ${short(labId, host)}`; // 13 chars
export const netnsName = (labId: string, host: string) => `ci-${labId}-${host}`;
export const machineName = (labId: string, host: string) => `ci-${labId}-${host}`;
/** The interface inside a host's namespace. */
export const HOST_IFACE = 'eth0';
