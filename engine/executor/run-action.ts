/** What each kind of action does on a host. Every step is safe to repeat: an interrupted apply simply runs it again. */
import { createReadStream } from 'node:fs';
import { digestHex } from '../digest.js';
import { InternalError, RemoteCommandError } from '../errors.js';
import { registerSecret } from '../redact.js';
import type { Action } from '../../plans/actions.js';
import type { ImageStore } from '../image/store.js';
import type { SshSession } from '../../providers/ssh/session.js';
import { tailLines } from '../../providers/ssh/tail-buffer.js';
import type { ClusterState } from '../../state/model.js';
import type { DesiredCluster } from '../clusterfile/types.js';
import type { Plan } from '../../plans/actions.js';
import { ensureHost, type ActionResult } from './record.js';
import type { Connections } from './connections.js';
import type { HostProvider } from './host-provider.js';
import type { Reporter } from './events.js';
import { hookEnv } from './hook-env.js';
import {
  cmdScript,
  hookScript,
  listHeldLayersScript,
  parseOutputs,
  remoteLayerPath,
  remoteOutputFile,
  removeFilesScript,
  unpackScript,
} from './remote-layout.js';

export interface RunContext {
  plan: Plan;
  desired?: DesiredCluster;
  state: ClusterState;
  store: ImageStore;
  provider: HostProvider;
  connections: Connections;
  reporter: Reporter;
  /** Bytes of layer data sent per host, for the summary and for tests. */
  bytesSent: Map<string, number>;
}

const NO_HOOK = '__ci_no_hook__';

function lineStreamer(ctx: RunContext, host: string, stream: 'stdout' | 'stderr') {
  let buf = '';
  return {
    write(chunk: Buffer) {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        if (line !== NO_HOOK) ctx.reporter.event({ type: 'output', host, stream, line });
        buf = buf.slice(nl + 1);
      }
    },
    flush() {
      if (buf) ctx.reporter.event({ type: 'output', host, stream, line: buf });
      buf = '';
    },
  };
}

async function runStreamed(ctx: RunContext, session: SshSession, host: string, script: string, what: string, env?: Record<string, string>): Promise<string> {
  const out = lineStreamer(ctx, host, 'stdout');
  const err = lineStreamer(ctx, host, 'stderr');
  const res = await session.exec(script, { env, onStdout: (c) => out.write(c), onStderr: (c) => err.write(c) });
  out.flush();
  err.flush();
  if (res.code !== 0) throw new RemoteCommandError(session.name, what, res.code, tailLines(res.stderr || res.stdout));
  return res.stdout;
}

export async function runAction(ctx: RunContext, action: Action): Promise<ActionResult> {
  if (action.kind === 'set-image') return {};
  if (action.kind === 'create-host') {
    const facts = await ctx.provider.create(action.host, action.local.kind);
    return { facts };
  }
  if (action.kind === 'delete-host') {
    await ctx.connections.drop(action.host);
    await ctx.provider.remove(action.host);
    return {};
  }
  const cluster = ctx.plan.cluster;
  const host = ensureHost(ctx.state, ctx.desired, action.host);
  const session = await ctx.connections.get(host);
  const facts = host.hostKey ? undefined : { hostKey: session.hostKey };
  switch (action.kind) {
    case 'send-layers': {
      const held = new Set((await session.execChecked(listHeldLayersScript(action.layers), { what: 'listing layers' })).stdout.split(/\s+/).filter(Boolean));
      for (const d of action.layers) {
        if (held.has(digestHex(d))) continue; // sent by an earlier, interrupted apply
        const { bytes } = await session.upload(createReadStream(ctx.store.blobPath(d)), remoteLayerPath(d), { expectedDigest: d, mode: 0o644 });
        ctx.bytesSent.set(action.host, (ctx.bytesSent.get(action.host) ?? 0) + bytes);
      }
      return { facts };
    }
    case 'unpack':
      await session.execChecked(unpackScript(cluster, action.layers), { what: 'unpacking the rootfs' });
      return { facts };
    case 'hook': {
      const env = hookEnv(ctx, action);
      await runStreamed(ctx, session, action.host, hookScript(cluster, action.hook), `hook ${action.hook}`, env);
      const raw = await session.execChecked(`cat ${remoteOutputFile(cluster, action.hook)} 2>/dev/null || true`, { what: 'reading hook outputs' });
      const outputs = parseOutputs(raw.stdout);
      for (const v of Object.values(outputs)) registerSecret(v);
      return { facts, outputs };
    }
    case 'run-cmd':
      await runStreamed(ctx, session, action.host, cmdScript(cluster, action.cmd), `CMD ${action.cmd}`, hookEnv(ctx, action));
      return { facts };
    case 'remove-files':
      await session.execChecked(removeFilesScript(cluster), { what: 'removing cloudimage files' });
      return { facts };
  }
  throw new InternalError(`unknown action kind ${(action as Action).kind}`);
}
