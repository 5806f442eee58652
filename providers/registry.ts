/**
 * The providers this build knows, by the name a Clusterfile gives in `spec.provider`. The engine finds a provider
 * here and then uses only the contract (contract.ts); adding a provider is adding it to this list.
 */
import { CiError } from '../engine/kernel/errors.js';
import type { ProviderName } from '../engine/kernel/types.js';
import type { ProviderModule } from './contract.js';
import { baremetalProvider } from './baremetal/provider.js';
import { localProvider } from './local/provider.js';
import { aliyunProvider } from './aliyun/provider.js';

const PROVIDERS: readonly ProviderModule[] = [baremetalProvider, localProvider, aliyunProvider];

/** The provider a Clusterfile gets when it names none. */
export const DEFAULT_PROVIDER: ProviderName = 'BAREMETAL';

export function providerModules(): readonly ProviderModule[] {
  return PROVIDERS;
}

export function providerNames(): ProviderName[] {
  return PROVIDERS.map((p) => p.name);
}

export function providerNamed(name: ProviderName): ProviderModule {
  const p = PROVIDERS.find((x) => x.name === name);
  if (!p) {
    throw new CiError('PROVIDER_UNKNOWN', `unknown provider ${JSON.stringify(name)}`, {
      hint: `use one of ${providerNames().join(', ')} (spec.provider in the Clusterfile)`,
    });
  }
  return p;
}
