/** What each kind of action does on a host. Every step is safe to repeat: an interrupted apply simply runs it again. */
import { createReadStream } from 'node:fs';
import { digestHex, type Digest } from '../digest.js';
import { fetchScript, type Relay } from './relay.js';
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
  remoteUnpackPlan,
  unpackPlanScript,
  unpackScript,
} from './remote-layout.js';
import type { CheckedImage } from '../image/layer-check.js';

export interface RunContext {
  plan: Plan;
  desired?: DesiredCluster;
  state: ClusterState;
  store: ImageStore;
  provider: HostProvider;
  connections: Connections;
  reporter: Reporter;
  /** Bytes of layer data each host received (from this machine or from another host). */
  bytesSent: Map<string, number>;
  /** Bytes of layer data that left this machine. */
  uplink: { bytes: number };
  /** Hosts passing layers on to each other; absent when disabled. */
  relay?: Relay;
  /** The plan image's layers as checked against the layer rules (absent for destroy, which unpacks nothing). */
  checked?: CheckedImage;
}

const RELAY_MIN_BYTES = 1 << 20;

async function sendLayer(ctx: RunContext, hostKey: string, session: SshSession, d: Digest): Promise<void> {
  const count = (bytes: number) => ctx.bytesSent.set(hostKey, (ctx.bytesSent.get(hostKey) ?? 0) + bytes);
  const fromHere = async () => {
    const { bytes } = await session.upload(createReadStream(ctx.store.blobPath(d)), remoteLayerPath(d), { expectedDigest: d, mode: 0o644 });
    ctx.uplink.bytes += bytes;
    count(bytes);
  };
  const relay = ctx.relay;
  // Small layers cost less to send than a relay's extra SSH handshake.
  if (!relay || (await ctx.store.blobSize(d)) < RELAY_MIN_BYTES) return fromHere();
  const source = await relay.distributor.acquire(d, hostKey);
  try {
    if (source.kind === 'operator') {
      await fromHere();
      relay.distributor.markHeld(d, hostKey);
      return;
    }
    const src = ctx.state.hosts[source.key];
    try {
      const srcSession = await ctx.connections.get(src);
      const me = ctx.state.hosts[hostKey];
      const known = await relay.grant({ key: src.key, ip: src.ip, port: src.ssh.port, hostKey: src.hostKey }, srcSession, me.ip);
      if (!known) throw new Error(`host key of ${src.key} could not be verified`);
      await relay.prepare(hostKey, session, { key: src.key, ip: src.ip, port: src.ssh.port, hostKey: src.hostKey }, known);
      await session.execChecked(fetchScript(d, src.ip, src.ssh.port), { what: `fetching layer ${digestHex(d).slice(0, 12)} from ${src.ip}` });
      count(await ctx.store.blobSize(d));
      relay.distributor.markHeld(d, hostKey);
    } catch (err) {
      // A host that cannot serve is dropped as a source for this apply; this layer comes from here instead.
      relay.distributor.markBroken(source.key);
      ctx.reporter.event({ type: 'output', host: hostKey, stream: 'stderr', line: `layer relay from ${source.key} failed, sending from here: ${(err as Error).message.split('\n')[0]}` });
      await fromHere();
      relay.distributor.markHeld(d, hostKey);
    }
  } finally {
    // Marked held before the source is released, so waiting hosts see the new holder first.
    relay.distributor.release(source);
  }
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
        // Held already: sent by an earlier, interrupted apply.
        if (!held.has(digestHex(d))) await sendLayer(ctx, action.host, session, d);
        else ctx.relay?.distributor.markHeld(d, action.host);
      }
      return { facts };
    }
    case 'unpack': {
      const checked = ctx.checked;
      if (!checked || checked.steps.length !== action.layers.length || checked.steps.some((s, i) => s.digest !== action.layers[i])) {
        throw new InternalError(`no layer check for the image ${action.image} this unpack installs`);
      }
      await session.upload(Buffer.from(unpackPlanScript(checked)), remoteUnpackPlan(cluster), { mode: 0o600 });
      await session.execChecked(unpackScript(cluster, action.layers), { what: 'unpacking the rootfs' });
      return { facts };
    }
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
