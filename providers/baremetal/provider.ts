/**
 * Bare-metal hosts: they exist already; cloudimage only logs in. Credentials come from the Clusterfile
 * (password, key file with passphrase, or the operator's ssh-agent) and are never stored in state.
 */
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { CiError } from '../../engine/kernel/errors.js';
import type { DesiredCluster, DesiredSsh } from '../../engine/clusterfile/types.js';
import type { HostProvider } from '../../engine/executor/host-provider.js';
import type { HostState } from '../../state/model.js';
import type { SshTarget } from '../ssh/target.js';

export class BaremetalProvider implements HostProvider {
  private readonly keys = new Map<string, Promise<string>>();

  constructor(private readonly desired: DesiredCluster | undefined) {}

  async create(key: string): Promise<never> {
    throw new CiError('PROVIDER_UNSUPPORTED', `cannot create host ${key}: bare-metal hosts must already exist`);
  }

  async remove(): Promise<void> {
    // Bare-metal machines stay; their cloudimage files were removed by remove-files.
  }

  async target(host: Pick<HostState, 'key' | 'ip' | 'ssh'>): Promise<SshTarget> {
    const d = this.desired?.hosts.find((h) => h.key === host.key);
    // A host removed from the Clusterfile keeps its port and user from state and borrows the credentials of the
    // cluster's other hosts with the same user.
    const ssh: DesiredSsh | undefined = d?.ssh ?? this.desired?.hosts.find((h) => h.ssh.user === host.ssh.user)?.ssh ?? this.desired?.hosts[0]?.ssh;
    const t: SshTarget = { host: host.ip || host.key, port: d?.ssh.port ?? host.ssh.port, user: d?.ssh.user ?? host.ssh.user };
    if (ssh?.password) t.password = ssh.password;
    if (ssh?.privateKeyPath) {
      t.privateKey = await this.readKey(ssh.privateKeyPath);
      if (ssh.passphrase) t.passphrase = ssh.passphrase;
    }
    if (!t.password && !t.privateKey && process.env.SSH_AUTH_SOCK) t.agent = process.env.SSH_AUTH_SOCK;
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
