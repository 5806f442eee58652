/** What each kind of action does on a host. Every step is safe to repeat: an interrupted apply simply runs it again. */
import { createReadStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { documentsYaml } from '../clusterfile/documents.js';
import { digestHex, type Digest } from '../kernel/digest.js';
import {
  LayerTransferError,
  cancelScript,
  dropStalePartialsScript,
  receiveScript,
  relayOwner,
  removePartialsScript,
  relaySshCommand,
  resumeScript,
  transferOutcome,
  transferToken,
  uploadTempPath,
  type Relay,
  type RelayHost,
} from './relay.js';
import { SshConnectionLostError } from '../../providers/ssh/errors.js';
import { AppToolMissingError, InternalError, PluginToolMissingError, RemoteCommandError } from '../kernel/errors.js';
import { addressSelected } from '../../plans/plugin-steps.js';
import { redact, registerSecret } from '../kernel/redact.js';
import type { Action, HookAction, PrepareRootfsAction, RootfsBase, UnpackAction } from '../../plans/actions.js';
import type { ImageStore } from '../image/store.js';
import type { SshSession } from '../../providers/ssh/session.js';
import { tailLines } from '../../providers/ssh/tail-buffer.js';
import type { ClusterState } from '../../state/model.js';
import type { DesiredCluster } from '../clusterfile/types.js';
import type { Plan } from '../../plans/actions.js';
import { ensureHost, type ActionResult } from './record.js';
import type { Connections } from './connections.js';
import type { ProviderRuntime } from '../../providers/contract.js';
import type { ProviderData } from '../kernel/types.js';
import type { Reporter } from './events.js';
import { hookEnv, type EnvCache } from './hook-env.js';
import {
  cmdScript,
  hookScript,
  hostsBlockScript,
  launchScript,
  nodeMetaScript,
  pluginScript,
  listHeldLayersScript,
  missingToolsScript,
  parseOutputs,
  remoteLayerPath,
  removeFilesScript,
  remoteUnpackPlan,
  remoteIncrementalPlan,
  incrementalPlanScript,
  prepareScript,
  swapScript,
  NOT_STAGED,
  STAGED_LINE,
  type RootfsRecord,
  takeOutputsScript,
  unpackPlanScript,
  unpackScript,
  writeDocumentsScript,
} from './remote-layout.js';
import { LayerScanCache, type CheckedImage } from '../image/layer-check.js';
import { planIncremental, type IncrementalVerdict } from '../image/incremental.js';
import type { ScannedLayer } from '../image/layer-tree.js';
import { shellQuote } from '../../providers/ssh/shell.js';

export interface RunContext {
  plan: Plan;
  desired?: DesiredCluster;
  state: ClusterState;
  store: ImageStore;
  provider: ProviderRuntime;
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
  /** Stores a provider's data for an action durably in the state before the provider acts on it (see contract.ts). */
  checkpoint?: (actionId: string, data: ProviderData) => Promise<void>;
  /** What every hook's environment shares, kept by the executor for the apply (hook-env.ts). */
  envCache?: EnvCache;
}

const RELAY_MIN_BYTES = 1 << 20;
/** Sources tried for one layer before it is sent from here whole. */
const RELAY_ATTEMPTS = 4;

/**
 * Streams a layer from the store, from byte `offset` on, onto the host's partial file, which the host serves on
 * while it grows. Returns the bytes sent.
 */
async function receiveFromHere(ctx: RunContext, relay: Relay, session: SshSession, d: Digest, size: number, offset: number): Promise<number> {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  const script = receiveScript(d, size, 'exec cat', relay.owner, { offset, token: transferToken() });
  const res = await session.exec(script, { stdin: createReadStream(ctx.store.blobPath(d), { start: offset }).pipe(counter) });
  ctx.uplink.bytes += bytes;
  checkReceived(session, d, 'this machine', res, offset);
  return bytes;
}

function checkReceived(session: SshSession, d: Digest, from: string, res: { code: number | null; stdout: string; stderr: string }, offset: number): void {
  const outcome = transferOutcome(res.code);
  if (outcome) throw new LayerTransferError(session.name, d, from, outcome, redact(tailLines(res.stderr)));
  if (res.code !== 0) throw new RemoteCommandError(session.name, `receiving layer ${digestHex(d).slice(0, 12)} from ${from}`, res.code, redact(tailLines(res.stderr)));
  // The host hashed the whole file it renamed into place; its answer must be the digest asked for (and the offset
  // it resumed from), or nothing was received.
  if (res.stdout.trim() !== `${digestHex(d)} ${offset}`) throw new LayerTransferError(session.name, d, from, 'corrupt', `the host reported ${res.stdout.trim().slice(0, 80)}`);
}

/** How much of the layer the host kept from an interrupted transfer (stopping that transfer's writer first). */
async function resumeOffset(relay: Relay, session: SshSession, d: Digest, size: number): Promise<number> {
  const res = await session.exec(resumeScript(d, size, relay.owner));
  const outcome = transferOutcome(res.code);
  if (outcome) throw new LayerTransferError(session.name, d, 'an earlier transfer', outcome, redact(tailLines(res.stderr)));
  const offset = Number(res.stdout.trim());
  if (res.code !== 0 || !/^\d+$/.test(res.stdout.trim()) || offset > size) {
    throw new RemoteCommandError(session.name, `reading how much of layer ${digestHex(d).slice(0, 12)} is kept`, res.code, redact(tailLines(res.stderr || res.stdout)));
  }
  return offset;
}

async function sendLayer(ctx: RunContext, hostKey: string, session: SshSession, d: Digest): Promise<void> {
  const count = (bytes: number) => ctx.bytesSent.set(hostKey, (ctx.bytesSent.get(hostKey) ?? 0) + bytes);
  const fromHere = async () => {
    const tempPath = uploadTempPath(d, ctx.relay?.owner ?? relayOwner(ctx.state.cluster, ctx.state.lineage));
    const { bytes } = await session.upload(createReadStream(ctx.store.blobPath(d)), remoteLayerPath(d), { expectedDigest: d, mode: 0o644, tempPath });
    ctx.uplink.bytes += bytes;
    count(bytes);
  };
  const relay = ctx.relay;
  const size = await ctx.store.blobSize(d);
  // Small layers cost less to send than a relay's extra SSH handshake.
  if (!relay || size < RELAY_MIN_BYTES) return fromHere();
  const dist = relay.distributor;
  const short = digestHex(d).slice(0, 12);
  for (let attempt = 1; attempt <= RELAY_ATTEMPTS; attempt++) {
    const source = await dist.acquire(d, hostKey);
    // Announced at once: the next host may connect to this one while it still sets up its own transfer (the
    // serving command waits for it to start; if it never does, markNotReceiving tells the next host at once).
    dist.markReceiving(d, hostKey, source);
    const from = source.kind === 'operator' ? 'this machine' : source.key;
    // The source's own transfer failing ends this one at once, wherever it is (still setting up, or streaming).
    let lost = false;
    let cancel: (() => void) | undefined;
    const unwatch =
      source.kind === 'host'
        ? dist.watchSource(d, source.key, () => {
            lost = true;
            cancel?.();
          })
        : () => undefined;
    const sourceLost = (src: string) => {
      dist.markNotReceiving(d, hostKey);
      ctx.reporter.event({ type: 'note', host: hostKey, message: `layer ${short}: relay from ${src} stopped, ${src}'s own transfer of the layer failed; trying another source` });
    };
    try {
      let offset: number;
      try {
        offset = await resumeOffset(relay, session, d, size);
      } catch (err) {
        if (!(err instanceof LayerTransferError)) throw err;
        // An earlier writer of the partial file did not end in time: another attempt (or the plain upload) follows.
        dist.markNotReceiving(d, hostKey);
        ctx.reporter.event({ type: 'output', host: hostKey, stream: 'stderr', line: `layer ${short}: ${err.message.split('\n')[0]}` });
        continue;
      }
      if (offset > 0) ctx.reporter.event({ type: 'note', host: hostKey, message: `layer ${short}: resuming at byte ${offset} of ${size}, from ${from}` });
      if (source.kind === 'operator') {
        try {
          count(await receiveFromHere(ctx, relay, session, d, size, offset));
        } catch (err) {
          // This machine's bytes are verified: wrong ones came from the part kept, now dropped. Fetched whole again.
          if (!(err instanceof LayerTransferError && err.outcome === 'corrupt' && offset > 0)) throw err;
          dist.markNotReceiving(d, hostKey);
          ctx.reporter.event({ type: 'output', host: hostKey, stream: 'stderr', line: `layer ${short}: the part kept from an earlier transfer was damaged, fetching the whole layer again: ${err.message.split('\n')[0]}` });
          continue;
        }
        dist.markHeld(d, hostKey);
        return;
      }
      const src = ctx.state.hosts[source.key];
      const fromHost: RelayHost = { key: src.key, ip: src.ip, port: src.ssh.port, hostKey: src.hostKey };
      try {
        const srcSession = await ctx.connections.get(src);
        const known = await relay.grant(fromHost, srcSession, ctx.state.hosts[hostKey].ip);
        if (!known) throw new Error(`host key of ${src.key} could not be verified`);
        await relay.prepare(hostKey, session);
        if (lost) {
          sourceLost(source.key);
          continue;
        }
        const token = transferToken();
        cancel = () => void session.exec(cancelScript(d, relay.owner, token), { timeoutMs: 15_000 }).catch(() => undefined);
        const res = await session.exec(receiveScript(d, size, relaySshCommand(d, src.ip, src.ssh.port, known, relay.owner, offset), relay.owner, { offset, token }));
        // Ended because its source's transfer failed (a whole, verified layer is kept whatever happened upstream).
        if (lost && res.code !== 0) {
          sourceLost(source.key);
          continue;
        }
        checkReceived(session, d, src.key, res, offset);
      } catch (err) {
        dist.markNotReceiving(d, hostKey);
        // This host's own connection failing is this action's failure (retried as such), not the source's.
        if (err instanceof SshConnectionLostError && err.host === session.name) throw err;
        if (lost) {
          sourceLost(source.key);
          continue;
        }
        // A stream cut short upstream is no fault of its source; anything else rules the source out for this apply.
        if (!(err instanceof LayerTransferError && err.outcome === 'short')) dist.markBroken(source.key);
        ctx.reporter.event({ type: 'output', host: hostKey, stream: 'stderr', line: `layer relay from ${source.key} failed, trying another source: ${(err as Error).message.split('\n')[0]}` });
        continue;
      }
      count(size - offset);
      dist.markHeld(d, hostKey);
      return;
    } catch (err) {
      dist.markNotReceiving(d, hostKey);
      throw err;
    } finally {
      unwatch();
      // Marked held before the source is released, so waiting hosts see the new holder first.
      dist.release(source);
    }
  }
  await fromHere();
  dist.markHeld(d, hostKey);
}

const NO_HOOK = '__ci_no_hook__';

type LineSink = (stream: 'stdout' | 'stderr', line: string) => void;

function lineStreamer(stream: 'stdout' | 'stderr', sink: LineSink) {
  let buf = '';
  return {
    write(chunk: Buffer) {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        if (line !== NO_HOOK) sink(stream, line);
        buf = buf.slice(nl + 1);
      }
    },
    flush() {
      if (buf) sink(stream, buf);
      buf = '';
    },
  };
}

const HELD_CAP = 1024 * 1024;

/**
 * A hook's output lines, kept until the hook has ended and its outputs are registered as secrets: a hook that
 * prints the token it writes to CI_OUTPUT (as `kubeadm init` prints its join token) shows it masked. Bounded: past
 * the cap the oldest lines are dropped and counted.
 */
class HeldOutput {
  private lines: { stream: 'stdout' | 'stderr'; line: string }[] = [];
  private bytes = 0;
  private dropped = 0;

  readonly sink: LineSink = (stream, line) => {
    this.lines.push({ stream, line });
    this.bytes += line.length;
    while (this.bytes > HELD_CAP && this.lines.length > 1) {
      this.bytes -= this.lines.shift()!.line.length;
      this.dropped++;
    }
  };

  release(ctx: RunContext, host: string): void {
    if (this.dropped > 0) ctx.reporter.event({ type: 'output', host, stream: 'stderr', line: `(${this.dropped} earlier lines of output not shown)` });
    for (const { stream, line } of this.lines) ctx.reporter.event({ type: 'output', host, stream, line });
    this.lines = [];
  }

  /** When the outputs could not be read, what the hook printed may hold one of them in clear. */
  withhold(ctx: RunContext, host: string, why: string): void {
    if (this.lines.length + this.dropped > 0) {
      ctx.reporter.event({ type: 'output', host, stream: 'stderr', line: `(${this.lines.length + this.dropped} lines of hook output not shown: ${why})` });
    }
    this.lines = [];
  }
}

async function runStreamed(session: SshSession, script: string, sink: LineSink, env?: Record<string, string>): Promise<{ code: number | null; tail: string }> {
  const out = lineStreamer('stdout', sink);
  const err = lineStreamer('stderr', sink);
  const res = await session.exec(script, { env, onStdout: (c) => out.write(c), onStderr: (c) => err.write(c) });
  out.flush();
  err.flush();
  return { code: res.code, tail: tailLines(res.stderr || res.stdout) };
}

function checkExit(session: SshSession, what: string, r: { code: number | null; tail: string }): void {
  if (r.code !== 0) throw new RemoteCommandError(session.name, what, r.code, redact(r.tail));
}

/**
 * Runs a hook and takes its outputs. The outputs are read and registered as secrets even when the hook failed, so
 * neither its output lines nor its error can show them in clear; only a successful hook's outputs are kept.
 */
/** How often a hook whose output is held says it is still running. */
export const HELD_HEARTBEAT_MS = 30_000;

async function runHook(ctx: RunContext, session: SshSession, action: HookAction, env: Record<string, string>): Promise<Record<string, string>> {
  const { host, hook } = action;
  const cluster = ctx.plan.cluster;
  const held = new HeldOutput();
  const started = Date.now();
  // Held output would otherwise make a long hook look hung.
  const heartbeat = setInterval(
    () => ctx.reporter.event({ type: 'action-running', action, ms: Date.now() - started, note: 'its output is shown when it ends' }),
    HELD_HEARTBEAT_MS,
  );
  const docs = ctx.desired?.documents ?? [];
  // Without documents, the file goes only from a host that was given some (no extra round trip otherwise).
  if (docs.length > 0 || ctx.state.hosts[host]?.documents !== undefined) {
    await session.execChecked(writeDocumentsScript(cluster, docs.length > 0), {
      what: 'writing the Clusterfile documents for the hook',
      ...(docs.length ? { stdin: Readable.from([Buffer.from(documentsYaml(docs))]) } : {}),
    });
  }
  let run: { code: number | null; tail: string };
  try {
    run = await runStreamed(session, hookScript(cluster, hook), held.sink, env);
  } catch (err) {
    held.withhold(ctx, host, 'the connection was lost before the hook\'s outputs could be read');
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
  let outputs: Record<string, string>;
  try {
    const raw = await session.execChecked(takeOutputsScript(cluster, hook, run.code === 0 ? action.image : undefined), { what: 'reading hook outputs' });
    outputs = parseOutputs(raw.stdout);
  } catch (err) {
    const why = 'the hook\'s outputs could not be read to mask them';
    held.withhold(ctx, host, why);
    // The hook's own error text may hold one of those outputs too.
    if (run.code !== 0) throw new RemoteCommandError(session.name, `hook ${hook}`, run.code, `(output not shown: ${why})`);
    throw err;
  }
  for (const v of Object.values(outputs)) registerSecret(v);
  held.release(ctx, host);
  checkExit(session, `hook ${hook}`, run);
  return outputs;
}

function checkedFor(ctx: RunContext, action: UnpackAction | PrepareRootfsAction): CheckedImage {
  const checked = ctx.checked;
  if (!checked || checked.steps.length !== action.layers.length || checked.steps.some((s, i) => s.digest !== action.layers[i])) {
    throw new InternalError(`no layer check for the image ${action.image} this unpack installs`);
  }
  return checked;
}

const record = (action: UnpackAction | PrepareRootfsAction, checked: CheckedImage): RootfsRecord => ({
  image: action.image,
  ...(action.config ? { config: action.config } : {}),
  allowSetid: checked.allowSetid,
});

/** The incremental verdict for one base, worked out once per apply whatever the number of hosts that share it. */
const verdicts = new WeakMap<RunContext, Map<string, Promise<IncrementalVerdict>>>();

function incrementalFor(ctx: RunContext, base: RootfsBase, checked: CheckedImage): Promise<IncrementalVerdict> {
  let memo = verdicts.get(ctx);
  if (!memo) verdicts.set(ctx, (memo = new Map()));
  const key = base.layers.join(',');
  let v = memo.get(key);
  if (!v) {
    v = (async () => {
      const scans = new LayerScanCache(ctx.store.home);
      const wanted = [...new Set([...checked.steps.map((s) => s.digest), ...base.layers])];
      const known = new Map<Digest, ScannedLayer>();
      for (const d of wanted) {
        const s = await scans.scan((x) => ctx.store.blobPath(x), d);
        if (s) known.set(d, s);
      }
      return planIncremental(checked, base.layers, (d) => known.get(d));
    })();
    memo.set(key, v);
  }
  return v;
}

/** The full plan always; the incremental one too when the host's rootfs may be built on (the host decides). */
async function uploadPlans(ctx: RunContext, session: SshSession, action: UnpackAction | PrepareRootfsAction, checked: CheckedImage): Promise<void> {
  const cluster = ctx.plan.cluster;
  await session.upload(Buffer.from(unpackPlanScript(checked)), remoteUnpackPlan(cluster), { mode: 0o600 });
  const verdict = action.base ? await incrementalFor(ctx, action.base, checked) : undefined;
  if (verdict && 'plan' in verdict) await session.upload(Buffer.from(incrementalPlanScript(checked, verdict.plan)), remoteIncrementalPlan(cluster), { mode: 0o600 });
  else await session.execChecked(`rm -f ${shellQuote(remoteIncrementalPlan(cluster))}`, { what: 'removing an old incremental unpack plan' });
}

function reportStaged(ctx: RunContext, host: string, stdout: string): void {
  const m = STAGED_LINE.exec(stdout);
  if (m) ctx.reporter.event({ type: 'output', host, stream: 'stdout', line: m[0] });
}

export async function runAction(ctx: RunContext, action: Action): Promise<ActionResult> {
  if (action.kind === 'set-image' || action.kind === 'gate') return {};
  const checkpoint = (data: ProviderData) => {
    if (!ctx.checkpoint) throw new InternalError(`no way to record ${action.id} before it runs`);
    return ctx.checkpoint(action.id, data);
  };
  const infra = () => Object.fromEntries(Object.entries(ctx.state.infra ?? {}).map(([k, r]) => [k, r.data]));
  if (action.kind === 'infra') {
    if (!ctx.provider.applyInfra) throw new InternalError(`provider ${ctx.plan.provider} makes no infrastructure, but the plan has ${action.id}`);
    const data = await ctx.provider.applyInfra(
      { id: action.id, op: action.op, key: action.resource, spec: action.spec, current: ctx.state.infra?.[action.resource]?.data, pending: ctx.state.pending?.[action.id], infra: infra() },
      checkpoint,
    );
    return data ? { infra: data } : {};
  }
  if (action.kind === 'create-host') {
    if (!ctx.provider.makeHosts) throw new InternalError(`provider ${ctx.plan.provider} makes no hosts, but the plan has ${action.id}`);
    const made = await ctx.provider.makeHosts({ id: action.id, hosts: action.hosts, pending: ctx.state.pending?.[action.id], infra: infra() }, checkpoint);
    const missing = action.hosts.filter((h) => !made[h.key]);
    if (missing.length) throw new InternalError(`provider ${ctx.plan.provider} did not report ${missing.map((h) => h.key).join(', ')} after ${action.id}`);
    return { made };
  }
  if (action.kind === 'delete-host') {
    await ctx.connections.drop(action.host);
    await ctx.provider.removeHost?.({ key: action.host, machine: ctx.state.hosts[action.host]?.machine });
    return {};
  }
  const cluster = ctx.plan.cluster;
  const host = ensureHost(ctx.state, ctx.desired, action.host);
  const session = await ctx.connections.get(host);
  const facts = host.hostKey ? undefined : { hostKey: session.hostKey };
  switch (action.kind) {
    case 'send-layers': {
      if (ctx.relay && action.layers.length > 0) ctx.relay.warm({ key: host.key, ip: host.ip, port: host.ssh.port, hostKey: host.hostKey ?? session.hostKey }, session);
      // What earlier, unfinished applies left and this send will not resume from goes first (relayed sends resume).
      const owner = ctx.relay?.owner ?? relayOwner(cluster, ctx.state.lineage);
      const list = `${dropStalePartialsScript(owner, ctx.relay ? action.layers : [])}\n${listHeldLayersScript(action.layers)}`;
      const held = new Set((await session.execChecked(list, { what: 'listing layers' })).stdout.split(/\s+/).filter(Boolean));
      // A file the refresh found changed (size or content) is no copy of the layer, whatever its name says.
      for (const d of action.resend ?? []) held.delete(digestHex(d));
      // Held already: sent by an earlier, interrupted apply.
      for (const d of action.layers) if (held.has(digestHex(d))) ctx.relay?.distributor.markHeld(d, action.host);
      // All at once: a small layer never waits behind a big one, and each big one joins its own chain.
      const sends = await Promise.allSettled(action.layers.filter((d) => !held.has(digestHex(d))).map((d) => sendLayer(ctx, action.host, session, d)));
      const failedSend = sends.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failedSend) throw failedSend.reason;
      return { facts };
    }
    case 'prepare-rootfs': {
      const checked = checkedFor(ctx, action);
      await uploadPlans(ctx, session, action, checked);
      const r = await session.execChecked(prepareScript(cluster, action.layers, record(action, checked), action.base), { what: 'staging the rootfs' });
      reportStaged(ctx, action.host, r.stdout);
      return { facts };
    }
    case 'unpack': {
      const checked = checkedFor(ctx, action);
      const target = record(action, checked);
      // Staged by its prepare-rootfs (or by an earlier run): only the swap is left.
      const swap = await session.execChecked(swapScript(cluster, target), { what: 'swapping in the staged rootfs' });
      if (!swap.stdout.includes(NOT_STAGED)) return { facts };
      await uploadPlans(ctx, session, action, checked);
      const r = await session.execChecked(unpackScript(cluster, action.layers, target, action.base), { what: 'unpacking the rootfs' });
      if (r.stdout.includes(NOT_STAGED)) throw new InternalError(`the rootfs staged on ${action.host} was not there to swap in`);
      reportStaged(ctx, action.host, r.stdout);
      return { facts };
    }
    case 'hook': {
      const outputs = await runHook(ctx, session, action, hookEnv(ctx, action));
      return { facts, outputs };
    }
    case 'run-cmd': {
      // A CMD writes no outputs: its lines are shown as they come.
      const live: LineSink = (stream, line) => ctx.reporter.event({ type: 'output', host: action.host, stream, line });
      checkExit(session, `CMD ${action.cmd}`, await runStreamed(session, cmdScript(cluster, action.cmd), live, hookEnv(ctx, action)));
      return { facts };
    }
    case 'launch-app': {
      const env = { ...hookEnv(ctx, action), CI_APP: action.app };
      // Checked first, so a host without kubectl or helm fails naming what is missing and runs nothing of the app.
      if (action.needs.length > 0) {
        const probe = await session.execChecked(missingToolsScript(action.needs), { what: `checking the programs app ${action.app} needs`, env });
        const missing = probe.stdout.split(/\s+/).filter(Boolean);
        if (missing.length > 0) {
          const where = host.ip && host.ip !== action.host ? `${action.host} (${host.ip})` : action.host;
          throw new AppToolMissingError(action.app, where, missing[0], `its files are ${action.by === 'helm' ? 'a Helm chart' : 'Kubernetes YAML'}`);
        }
      }
      const live: LineSink = (stream, line) => ctx.reporter.event({ type: 'output', host: action.host, stream, line });
      checkExit(session, `app ${action.app}`, await runStreamed(session, launchScript(cluster, action.app, action.dir, action.cmds), live, env));
      return { facts };
    }
    case 'plugin': {
      if (action.ifAddress && !addressSelected(action.ifAddress, host.ip)) return { facts, skipped: true };
      const env = { ...hookEnv(ctx, action), CI_PLUGIN: action.plugin, CI_PLUGIN_POINT: action.point };
      const live: LineSink = (stream, line) => ctx.reporter.event({ type: 'output', host: action.host, stream, line });
      checkExit(session, `plugin ${action.plugin}`, await runStreamed(session, pluginScript(cluster, action.data), live, env));
      return { facts: action.hostname ? { ...facts, hostname: action.hostname } : facts };
    }
    case 'node-meta': {
      const target = ctx.state.hosts[action.target];
      if (!target) throw new InternalError(`${action.id}: host ${action.target} is not in the state`);
      if (action.ifAddress && !addressSelected(action.ifAddress, target.ip)) return { facts, skipped: true };
      const env = hookEnv(ctx, action);
      // Checked first, so a master0 without kubectl fails naming what asked for it, having changed nothing.
      const probe = await session.execChecked(missingToolsScript(['kubectl']), { what: 'checking for kubectl', env });
      if (probe.stdout.trim() !== '') {
        const where = host.ip && host.ip !== action.host ? `${action.host} (${host.ip})` : action.host;
        throw new PluginToolMissingError(action.source, where, 'kubectl');
      }
      // The node's name is the host's own name, as kubelet registers it.
      const node = target.hostname ?? (await (await ctx.connections.get(target)).execChecked('uname -n', { what: 'reading the host name' })).stdout.trim();
      const labels = [...Object.entries(action.labels).map(([k, v]) => `${k}=${v}`), ...action.unlabel.map((k) => `${k}-`)];
      const live: LineSink = (stream, line) => ctx.reporter.event({ type: 'output', host: action.host, stream, line });
      checkExit(session, `labels and taints of node ${node}`, await runStreamed(session, nodeMetaScript(cluster, node, labels, action.taints), live, env));
      return { facts };
    }
    case 'host-aliases': {
      const lines = action.aliases.map((a) => `${a.ip} ${a.hostnames.join(' ')}`);
      await session.execChecked(hostsBlockScript(cluster, lines), { what: 'writing the host aliases to /etc/hosts' });
      return { facts };
    }
    case 'remove-files':
      if (host.applied?.['host-aliases']) await session.execChecked(hostsBlockScript(cluster, []), { what: 'removing the host aliases from /etc/hosts' });
      // With this cluster's partial layer files, kept in the shared store by an apply that did not finish.
      await session.execChecked(`${removePartialsScript(relayOwner(cluster, ctx.state.lineage))}\n${removeFilesScript(cluster)}`, { what: 'removing cloudimage files' });
      return { facts };
  }
  throw new InternalError(`unknown action kind ${(action as Action).kind}`);
}
