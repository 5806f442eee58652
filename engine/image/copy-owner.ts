/**
 * `--chown=user[:group]` and `--chmod=mode` of COPY and ADD, as Docker reads them: numeric ids are taken as they
 * are (a user id alone is also the group id); names are looked up in the image's own /etc/passwd and /etc/group
 * as built so far (a user name alone takes the user's primary group).
 */
import type { ImageTree } from './image-tree.js';

export interface Owner {
  uid: number;
  gid: number;
}

export class OwnerProblem extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

const NUMERIC = /^\d+$/;
const MAX_ID = 2 ** 32 - 2;

function numeric(s: string, what: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > MAX_ID) throw new OwnerProblem(`--chown ${what} ${s} is out of range`, `use an id from 0 to ${MAX_ID}`);
  return n;
}

/** `name:x:id:...` lines of a passwd or group file: name -> [id, primary gid (passwd only)]. */
function table(text: string | undefined): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const line of (text ?? '').split('\n')) {
    if (line.startsWith('#') || !line.includes(':')) continue;
    const f = line.split(':');
    const ids = [Number(f[2]), Number(f[3])];
    if (f[0] && NUMERIC.test(f[2] ?? '') && !out.has(f[0])) out.set(f[0], ids);
  }
  return out;
}

/** Splits `user[:group]`; refuses an empty part. */
export function parseChown(spec: string): { user: string; group?: string } {
  const i = spec.indexOf(':');
  const user = i < 0 ? spec : spec.slice(0, i);
  const group = i < 0 ? undefined : spec.slice(i + 1);
  if (!user || group === '') throw new OwnerProblem(`--chown=${spec} needs a user and, after ":", a group`, 'write --chown=user, --chown=user:group or --chown=uid:gid');
  return { user, group };
}

/** True when the spec names users or groups (so the image's files must be read). */
export function chownNeedsNames(spec: string): boolean {
  const { user, group } = parseChown(spec);
  return !NUMERIC.test(user) || (group !== undefined && !NUMERIC.test(group));
}

export async function resolveOwner(spec: string, tree: ImageTree): Promise<Owner> {
  const { user, group } = parseChown(spec);
  let uid: number;
  let gid: number;
  if (NUMERIC.test(user)) {
    uid = numeric(user, 'user id');
    gid = uid;
  } else {
    const passwd = table((await tree.readFile('etc/passwd'))?.toString('utf8'));
    const u = passwd.get(user);
    if (!u) {
      throw new OwnerProblem(
        `--chown: user "${user}" is not in the image's /etc/passwd`,
        'use a numeric id (--chown=1000:1000), or add the user to the image (COPY an /etc/passwd, or RUN useradd) before this line',
      );
    }
    uid = u[0];
    gid = Number.isSafeInteger(u[1]) ? u[1] : uid;
  }
  if (group !== undefined) {
    if (NUMERIC.test(group)) gid = numeric(group, 'group id');
    else {
      const g = table((await tree.readFile('etc/group'))?.toString('utf8')).get(group);
      if (!g) {
        throw new OwnerProblem(
          `--chown: group "${group}" is not in the image's /etc/group`,
          'use a numeric id (--chown=user:1000), or add the group to the image before this line',
        );
      }
      gid = g[0];
    }
  }
  return { uid, gid };
}

/** `--chmod` takes an octal mode, as Docker and buildah do. */
export function parseChmod(spec: string): number {
  if (!/^[0-7]{3,4}$/.test(spec)) throw new OwnerProblem(`--chmod=${spec} is not an octal mode`, 'write an octal mode such as --chmod=0644 or --chmod=755');
  return parseInt(spec, 8);
}
