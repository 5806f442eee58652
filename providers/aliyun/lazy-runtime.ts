/**
 * The Aliyun SDK takes seconds to load, and every `ci` command opens the registry of providers: the SDK is loaded
 * only by a command that calls the API, on its first call. Settings are still checked at once.
 */
import type { ProviderData } from '../../engine/kernel/types.js';
import type { Discovered, HostRef, Held, InfraRequest, MadeHost, MakeRequest, ProviderContext, ProviderRuntime, Released } from '../contract.js';
import type { SshTarget } from '../ssh/target.js';
import type { AliyunRuntime } from './runtime.js';
import { cloudSettings } from './settings.js';

export class LazyAliyunRuntime implements ProviderRuntime {
  private loaded?: Promise<AliyunRuntime>;

  constructor(private readonly ctx: ProviderContext) {
    cloudSettings(ctx.block);
  }

  private runtime(): Promise<AliyunRuntime> {
    this.loaded ??= import('./runtime.js').then((m) => new m.AliyunRuntime(this.ctx));
    return this.loaded;
  }

  async target(host: HostRef): Promise<SshTarget> {
    return (await this.runtime()).target(host);
  }

  async makeHosts(request: MakeRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<Record<string, MadeHost>> {
    return (await this.runtime()).makeHosts(request, checkpoint);
  }

  async removeHost(host: { key: string; machine?: ProviderData }): Promise<void> {
    return (await this.runtime()).removeHost(host);
  }

  async applyInfra(request: InfraRequest, checkpoint: (data: ProviderData) => Promise<void>): Promise<ProviderData | undefined> {
    return (await this.runtime()).applyInfra(request, checkpoint);
  }

  async held(): Promise<Held | undefined> {
    return (await this.runtime()).held();
  }

  async discover(): Promise<Discovered> {
    return (await this.runtime()).discover();
  }

  async release(): Promise<Released | undefined> {
    return (await this.runtime()).release();
  }
}
