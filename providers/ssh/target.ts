/** Where and how to log in to one host. Secrets here are registered for redaction by connectSsh. */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  password?: string;
  /** Private key file contents (OpenSSH or PEM format), not a path. */
  privateKey?: string;
  passphrase?: string;
  /** ssh-agent socket path. */
  agent?: string;
}

export type AuthMethodName = 'agent' | 'publickey' | 'password';

export function describeTarget(t: Pick<SshTarget, 'host' | 'port' | 'user'>): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `${t.user}@${host}:${t.port}`;
}

/** The methods a target is configured for, in the order ssh2 tries them. */
export function configuredAuthMethods(t: SshTarget): AuthMethodName[] {
  const methods: AuthMethodName[] = [];
  if (t.password !== undefined) methods.push('password');
  if (t.privateKey !== undefined) methods.push('publickey');
  if (t.agent !== undefined) methods.push('agent');
  return methods;
}
