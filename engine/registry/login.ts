/** `ci login`: checks the credentials against the registry before keeping them. */
import { RegistryClient } from './client.js';
import { registerCredentials, saveLogin, type Credentials } from './credentials.js';
import type { TlsOptions } from './http.js';
import { RegistryError } from '../kernel/errors.js';

export async function login(registry: string, creds: Credentials, tls: TlsOptions = {}, home?: string): Promise<string> {
  registerCredentials(creds);
  if (!registry || registry.includes('/')) {
    throw new RegistryError('REGISTRY_NAME', `"${registry}" is not a registry host`, { source: 'user', hint: 'give host[:port], e.g. registry.example.com:5000' });
  }
  const client = new RegistryClient(registry, creds, tls);
  try {
    await client.ping();
  } finally {
    client.close();
  }
  return saveLogin(registry, creds, tls, home);
}
