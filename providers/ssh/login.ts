/**
 * Logging in with what the Clusterfile says (password, key file with passphrase) or, failing both, the operator's
 * ssh-agent. Credentials are read when needed and never stored.
 */
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { CiError } from '../../engine/kernel/errors.js';
import type { SshTarget } from './target.js';

export interface LoginSettings {
  user: string;
  port: number;
  password?: string;
  privateKeyPath?: string;
  passphrase?: string;
}

export class ClusterfileLogins {
  private readonly keys = new Map<string, Promise<string>>();

  constructor(
    private readonly hosts: { key: string; ssh: LoginSettings }[],
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /**
   * The login for a host. A host no longer in the Clusterfile keeps its port and user from the state and borrows the
   * credentials of the cluster's other hosts with the same user.
   */
  async target(host: { key: string; ip: string; ssh: { user: string; port: number } }): Promise<SshTarget> {
    const d = this.hosts.find((h) => h.key === host.key);
    const ssh = d?.ssh ?? this.hosts.find((h) => h.ssh.user === host.ssh.user)?.ssh ?? this.hosts[0]?.ssh;
    const t: SshTarget = { host: host.ip || host.key, port: d?.ssh.port ?? host.ssh.port, user: d?.ssh.user ?? host.ssh.user };
    if (ssh?.password) t.password = ssh.password;
    if (ssh?.privateKeyPath) {
      t.privateKey = await this.readKey(ssh.privateKeyPath);
      if (ssh.passphrase) t.passphrase = ssh.passphrase;
    }
    if (!t.password && !t.privateKey && this.env.SSH_AUTH_SOCK) t.agent = this.env.SSH_AUTH_SOCK;
    return t;
  }

  private readKey(path: string): Promise<string> {
    const full = path.startsWith('~/') ? `${homedir()}${path.slice(1)}` : path;
    let p = this.keys.get(full);
    if (!p) {
      p = fs.readFile(full, 'utf8').catch((err) => {
        throw new CiError('SSH_KEY_UNREADABLE', `cannot read SSH private key ${path}: ${err?.code === 'ENOENT' ? 'no such file' : err?.message}`, {
          hint: 'fix spec.ssh.pk in the Clusterfile',
        });
      });
      this.keys.set(full, p);
    }
    return p;
  }
}
