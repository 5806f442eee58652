/** What every action handler gets, and how actions are declared. */
import { region } from '../catalogue.js';
import type { Cloud } from '../cloud.js';
import type { ApiParams } from '../params.js';
import type { Body } from '../wire.js';

export interface Ctx {
  cloud: Cloud;
  params: ApiParams;
  action: string;
  /** Work to start once the change is stored (making hosts): a crash before that leaves nothing unrecorded. */
  afterCommit: (() => void)[];
}

export interface ActionDef {
  run(ctx: Ctx): Body | Promise<Body>;
  /** Changes resources: runs exclusively and is stored before it is answered. */
  mutates?: boolean;
  /** Takes a ClientToken: the same token and parameters replay the first answer. */
  idempotent?: boolean;
}

export type ActionTable = Record<string, ActionDef>;

/** The call's region; missing or unknown ones are the API's errors. */
export const regionOf = (ctx: Ctx) => region(ctx.params.nonEmpty('RegionId'));

export const isDryRun = (ctx: Ctx) => ctx.params.bool('DryRun') === true;
