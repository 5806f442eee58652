/** IPv4 addresses and CIDR blocks, as VPCs, vSwitches and security group rules use them. */

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  mask: number;
}

function ipNumber(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

/** `a.b.c.d/m` with the host bits zero; undefined for anything else. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  if (!m) return undefined;
  const base = ipNumber(m[1]);
  const mask = Number(m[2]);
  if (base === undefined || mask > 32) return undefined;
  const size = 2 ** (32 - mask);
  if (base % size !== 0) return undefined;
  return { base, mask };
}

/** A single address or a block (host bits may be set, as security group rules accept). */
export function isIpOrCidr(text: string): boolean {
  const [ip, mask, ...rest] = text.split('/');
  if (rest.length > 0 || ipNumber(ip) === undefined) return false;
  return mask === undefined || (/^\d{1,2}$/.test(mask) && Number(mask) <= 32);
}

export const cidrSize = (text: string): number => 2 ** (32 - (parseCidr(text)?.mask ?? 32));

const end = (c: Cidr) => c.base + 2 ** (32 - c.mask);

export const contains = (outer: Cidr, inner: Cidr): boolean => inner.base >= outer.base && end(inner) <= end(outer);

export const overlaps = (a: Cidr, b: Cidr): boolean => a.base < end(b) && b.base < end(a);

/** Blocks a VPC may not use: loopback, link-local, multicast and up, the shared address space, 0/8. */
export function reserved(c: Cidr): boolean {
  return ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/3', '100.64.0.0/10'].some((r) => overlaps(c, parseCidr(r)!));
}
