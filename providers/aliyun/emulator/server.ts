/**
 * The HTTP side: every request is authenticated, routed by its API version and action (headers for ACS3, query
 * parameters for the legacy scheme), possibly failed by an injected fault, performed, and answered as JSON.
 * Accepts POST with parameters in the query (what the SDK sends), GET, and form bodies.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CiError } from '../../../engine/kernel/errors.js';
import { errors } from './api-errors.js';
import type { ActionDef, Ctx } from './actions/action.js';
import { productByVersion, type Product } from './actions/index.js';
import type { Authenticator } from './auth.js';
import type { Cloud } from './cloud.js';
import { draw } from './latency.js';
import type { EmulatorEvent } from './options.js';
import { ApiParams } from './params.js';
import { decodePairs } from './signature.js';
import { ApiError, errorBody, newRequestId, type Body } from './wire.js';

const MAX_BODY = 1024 * 1024;

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BodyTooLarge());
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const header = (req: IncomingMessage, name: string) => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

export interface ServerOptions {
  cloud: Cloud;
  auth: Authenticator;
  timeoutHoldMs: number;
  emit: (e: EmulatorEvent) => void;
}

export class ApiServer {
  private readonly server: Server;
  private readonly held = new Set<{ timer: NodeJS.Timeout; res: ServerResponse }>();

  constructor(private readonly opts: ServerOptions) {
    this.server = createServer((req, res) => void this.handle(req, res));
    // The SDK keeps connections alive; idle ones must not hold a stop back.
    this.server.keepAliveTimeout = 5000;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EADDRNOTAVAIL' ? 'no interface has that address' : err.message;
        reject(new CiError('ALIYUN_EMULATOR_LISTEN', `cannot serve on ${host}:${port}: ${why}`, { source: 'external', hint: 'pick another address with --listen HOST:PORT (port 0 takes any free one)', cause: err }));
      });
      this.server.listen(port, host, () => {
        this.server.removeAllListeners('error');
        this.server.on('error', (err) => this.opts.emit({ type: 'warning', message: `the server failed: ${err.message}` }));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  async close(): Promise<void> {
    for (const h of this.held) {
      clearTimeout(h.timer);
      h.res.destroy();
    }
    this.held.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    const requestId = newRequestId();
    const { cloud } = this.opts;
    let product: Product | undefined;
    let action: string | undefined;
    let performed = false;
    let status = 200;
    let body: Body;
    let headers: Record<string, string> = {};
    try {
      let raw: Buffer;
      try {
        raw = await readBody(req);
      } catch (err) {
        if (err instanceof BodyTooLarge) throw errors.bodyTooLarge();
        throw err;
      }
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      const query = decodePairs(q < 0 ? '' : url.slice(q + 1));
      const form = /^application\/x-www-form-urlencoded/i.test(header(req, 'content-type') ?? '') ? decodePairs(raw.toString('utf8')) : [];
      const all = [...query, ...form];
      const param = (k: string) => all.find(([n]) => n === k)?.[1];
      // Named before the signature is checked, so that a refused call is still logged and answered by its name.
      action = header(req, 'x-acs-action') ?? param('Action');
      const version = header(req, 'x-acs-version') ?? param('Version');
      product = version === undefined ? undefined : productByVersion(version);
      this.opts.auth.verify({ method: req.method ?? 'GET', path, query, form, headers: req.headers, body: raw });
      if (!action) throw errors.missingAction();
      if (!version) throw errors.missingVersion();
      if (!product) throw errors.badVersion();
      const def = Object.hasOwn(product.actions, action) ? product.actions[action] : undefined;
      if (!def) throw errors.unknownAction();
      cloud.sweep();
      const fault = cloud.faults.before();
      if (fault) throw fault;
      performed = true;
      body = { RequestId: requestId, ...(await this.perform(def, { cloud, params: new ApiParams(all), action, afterCommit: [] })) };
    } catch (err) {
      const apiErr = err instanceof ApiError ? err : errors.internalError();
      if (!(err instanceof ApiError)) {
        this.opts.emit({ type: 'warning', action, message: `${action ?? 'request'} failed inside the emulator: ${(err as Error)?.message ?? String(err)}` });
      }
      status = apiErr.status;
      headers = apiErr.headers;
      body = errorBody(apiErr, requestId, header(req, 'host') ?? 'localhost', product?.name ?? 'Ecs');
    }
    const payload = JSON.stringify(body);
    const send = () => {
      if (res.destroyed) return;
      res.writeHead(status, {
        'content-type': 'application/json;charset=utf-8',
        'content-length': Buffer.byteLength(payload),
        'x-acs-request-id': requestId,
        ...headers,
      });
      res.end(payload);
    };
    const code = status === 200 ? undefined : (body.Code as string);
    const hold = performed && action !== undefined && cloud.faults.takeTimeout(action);
    this.opts.emit({
      type: 'request',
      action,
      status,
      code,
      message: `${action ?? '-'} ${status}${code ? ` ${code}` : ''} ${Date.now() - started} ms${hold ? ' (answer held back: timeout-once)' : ''}`,
    });
    if (hold) {
      this.holdBack(res, send);
      return;
    }
    const delay = draw(cloud.timings.api);
    if (delay > 0) setTimeout(send, delay);
    else send();
  }

  /** The call was performed; its answer comes only after the caller has given up (or after the hold time). */
  private holdBack(res: ServerResponse, send: () => void): void {
    const entry = {
      res,
      timer: setTimeout(() => {
        this.held.delete(entry);
        send();
      }, this.opts.timeoutHoldMs),
    };
    this.held.add(entry);
    res.on('close', () => {
      clearTimeout(entry.timer);
      this.held.delete(entry);
    });
  }

  private async perform(def: ActionDef, ctx: Ctx): Promise<Body> {
    if (!def.mutates) return def.run(ctx);
    const { cloud, params, action } = ctx;
    return cloud.exclusive(async () => {
      const token = def.idempotent && params.bool('DryRun') !== true ? params.nonEmpty('ClientToken') : undefined;
      const seen = token === undefined ? undefined : cloud.replay(action, token, params);
      if (seen?.body) return seen.body;
      const body = await def.run(ctx);
      if (token !== undefined && seen) cloud.remember(action, token, seen.digest, body);
      await cloud.commit();
      for (const f of ctx.afterCommit) f();
      return body;
    });
  }
}
