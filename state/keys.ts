/**
 * Keys that seal hook outputs in state files. A key source hands out the key a state is first sealed with and finds
 * a key by its id when a state is opened; a state file names its key by id only, never holds the key itself.
 *
 * Kept small on purpose so that other sources fit behind it (a key derived from a team passphrase for a shared
 * backend). The file source keeps keys under `$CI_HOME/keys/` (directory 0700, files 0600): `state.key` is made on
 * first use and seals new states; any other `*.key` file there (copied from another machine) opens the states
 * sealed with it.
 */
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { StateError } from '../engine/kernel/errors.js';
import { createFileExclusive, fsyncDir } from '../engine/kernel/fsutil.js';
import { ciHome } from '../engine/kernel/home.js';
import { registerSecret } from '../engine/kernel/redact.js';

export interface StateKey {
  /** Names the key in the states it sealed; derived from the key by a one-way hash. */
  readonly id: string;
  /** 32 bytes (AES-256). */
  readonly key: Buffer;
}

export interface KeySource {
  /** Where the keys are kept, for messages. */
  readonly location: string;
  /** The key a state that has none yet is sealed with; a source may create it on first use. */
  sealingKey(): Promise<StateKey>;
  /** The key with this id, or undefined when this source does not hold it. */
  findKey(id: string): Promise<StateKey | undefined>;
  /** What a user can do about a state sealed with a key this source does not hold. */
  missingKeyHint(id: string): string;
  /** The source is one key (`location` names it), not a place holding several. */
  readonly holdsOneKey?: boolean;
}

export const KEY_BYTES = 32;

export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update('cloudimage state key id\n').update(key).digest('hex').slice(0, 16);
}

export function makeStateKey(key: Buffer): StateKey {
  return { id: keyIdOf(key), key };
}

const KEY_FILE = 'state.key';

function keyFileText(key: StateKey): string {
  return [
    `# cloudimage state key ${key.id} (AES-256): opens the hook outputs of the states sealed with it.`,
    '# Keep it secret. Copy it along with a state that moves to another machine.',
    key.key.toString('base64'),
    '',
  ].join('\n');
}

/** Key files in a directory, one key per file. */
export class FileKeySource implements KeySource {
  private current?: Promise<StateKey>;
  private readonly known = new Map<string, StateKey>();

  constructor(readonly dir: string) {}

  get location(): string {
    return this.dir;
  }

  /** The key new states are sealed with. */
  get sealingKeyPath(): string {
    return join(this.dir, KEY_FILE);
  }

  sealingKey(): Promise<StateKey> {
    if (!this.current) {
      this.current = this.loadOrCreate();
      this.current.catch(() => (this.current = undefined));
    }
    return this.current;
  }

  async findKey(id: string): Promise<StateKey | undefined> {
    const cached = this.known.get(id);
    if (cached) return cached;
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined;
      throw new StateError(`cannot read the key directory ${this.dir}: ${err?.message ?? err}`);
    }
    // state.key first: it is the one most states here are sealed with.
    for (const name of [KEY_FILE, ...names.filter((n) => n.endsWith('.key') && n !== KEY_FILE).sort()]) {
      if (!names.includes(name)) continue;
      const key = await this.readKeyFile(join(this.dir, name));
      if (key?.id === id) return key;
    }
    return undefined;
  }

  missingKeyHint(id: string): string {
    const target = existsSync(this.sealingKeyPath) ? join(this.dir, `${id}.key`) : this.sealingKeyPath;
    return `copy the key file from the machine that wrote the state ($CI_HOME/keys/${KEY_FILE} there) to ${target}, with mode 0600`;
  }

  private async loadOrCreate(): Promise<StateKey> {
    const path = this.sealingKeyPath;
    const existing = await this.readKeyFile(path);
    if (existing) return existing;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.dir, 0o700);
    const made = makeStateKey(randomBytes(KEY_BYTES));
    // Two processes making the first key at once: one file wins and both use it.
    if (await createFileExclusive(path, keyFileText(made), 0o600)) {
      await fsyncDir(this.dir);
      return this.remember(made);
    }
    const winner = await this.readKeyFile(path);
    if (!winner) throw new StateError(`the key file ${path} vanished while it was being created`, 'run the command again');
    return winner;
  }

  private async readKeyFile(path: string): Promise<StateKey | undefined> {
    let text: string;
    try {
      const st = await fs.stat(path);
      if ((st.mode & 0o077) !== 0) {
        throw new StateError(
          `the key file ${path} can be read by other users (mode 0${(st.mode & 0o777).toString(8)})`,
          `make it private: chmod 600 ${path}`,
        );
      }
      text = await fs.readFile(path, 'utf8');
    } catch (err: any) {
      if (err instanceof StateError) throw err;
      if (err?.code === 'ENOENT') return undefined;
      throw new StateError(`cannot read the key file ${path}: ${err?.message ?? err}`);
    }
    const body = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    registerSecret(body.join(''));
    const key = body.length === 1 && /^[A-Za-z0-9+/]+=*$/.test(body[0]) ? Buffer.from(body[0], 'base64') : undefined;
    if (!key || key.length !== KEY_BYTES) {
      throw new StateError(`${path} is not a cloudimage state key`, 'restore the key file from where it was copied, or remove it if it does not belong here');
    }
    return this.remember(makeStateKey(key));
  }

  private remember(key: StateKey): StateKey {
    registerSecret(key.key.toString('base64'));
    this.known.set(key.id, key);
    return key;
  }
}

/** The key files of a cloudimage home: `$CI_HOME/keys`. */
export function stateKeys(home: string = ciHome()): FileKeySource {
  return new FileKeySource(join(home, 'keys'));
}

/** The environment variable that holds a team's state passphrase. */
export const PASSPHRASE_ENV = 'CI_STATE_PASSPHRASE';

/**
 * One key, derived from a passphrase the team shares (scrypt, salted with the cluster's name so that one
 * passphrase gives each cluster its own key): what seals hook outputs in a state kept on a shared backend, where no
 * key file travels with it. A state sealed with another key means the passphrase is not the one it was written with.
 */
export class PassphraseKeySource implements KeySource {
  readonly location = `the key derived from ${PASSPHRASE_ENV}`;
  readonly holdsOneKey = true;
  private derived?: StateKey;

  constructor(
    private readonly passphrase: string,
    private readonly salt: string,
  ) {
    registerSecret(passphrase);
  }

  async sealingKey(): Promise<StateKey> {
    if (!this.derived) {
      const key = scryptSync(this.passphrase, `cloudimage state passphrase\n${this.salt}`, KEY_BYTES, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
      registerSecret(key.toString('base64'));
      this.derived = makeStateKey(key);
    }
    return this.derived;
  }

  async findKey(id: string): Promise<StateKey | undefined> {
    const key = await this.sealingKey();
    return key.id === id ? key : undefined;
  }

  missingKeyHint(_id: string): string {
    return `${PASSPHRASE_ENV} is not the passphrase this state was written with: set it to the team's passphrase (nothing was changed)`;
  }
}
