// lvsd's HTTP listener (node:http), off unless `lvsd --http` asks for it: GET /metrics in the
// Prometheus text format, rendered from ControlApi.snapshot(), and the live dashboard (GET /,
// src/http/dashboard.ts). Hostile clients are bounded by
// node's own limits (header size and count, header and request deadlines, idle and stalled sockets,
// a connection cap); the packet path runs in its own thread and never waits on this one.

import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { ControlApi } from '../control/api.js';
import type { EngineEvent } from '../core/ops.js';
import { isLoopback, listenUrl } from './address.js';
import type { ListenAddress } from './address.js';
import type { Token } from './auth.js';
import { Dashboard } from './dashboard.js';
import type { DashboardLimits, Handler, HttpLog } from './dashboard.js';
import { renderMetrics } from './metrics.js';
import type { BuildInfo } from './metrics.js';

export type { HttpLog } from './dashboard.js';

export interface HttpLimits {
  /** A client must have sent its whole header by then, or gets 408 (slowloris). */
  headersTimeoutMs: number;
  /** ... and its whole request. */
  requestTimeoutMs: number;
  /** A keep-alive connection with no request in flight is closed after this. */
  idleTimeoutMs: number;
  /** A socket with no traffic either way (a client that stopped reading) is destroyed after this. */
  socketTimeoutMs: number;
  /** How often node checks the two deadlines above. */
  checkIntervalMs: number;
  /** Larger headers get 431. */
  maxHeaderBytes: number;
  maxHeaderCount: number;
  /** Connections past this many are closed at once. */
  maxConnections: number;
}

/** Prometheus scrapes with a 10 s timeout by default and sends a few hundred bytes of headers. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 5_000,
  socketTimeoutMs: 30_000,
  checkIntervalMs: 1_000,
  maxHeaderBytes: 8 * 1024,
  maxHeaderCount: 64,
  maxConnections: 128,
};

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface HttpListenerOptions {
  address: ListenAddress;
  api: Pick<ControlApi, 'snapshot' | 'connections' | 'syncDaemons' | 'execute'>;
  build: BuildInfo;
  log: HttpLog;
  limits?: Partial<HttpLimits>;
  /** The dashboard's actions need this token; without one it is read-only. */
  token?: Token | null;
  /** The engine's events, for the dashboard's log (Engine.onEvent). */
  onEngineEvent?: (listener: (event: EngineEvent) => void) => () => void;
  dashboardLimits?: Partial<DashboardLimits>;
}

export interface HttpListener {
  /** Where it listens, with the port actually bound. */
  readonly url: string;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Calls made while one is in flight share its result: many scrapers, one snapshot. */
export function coalesce<T>(task: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null;
  return () => {
    pending ??= task().finally(() => {
      pending = null;
    });
    return pending;
  };
}

/** Whether an Accept-Encoding header takes gzip (named, and not with q=0). */
export function acceptsGzip(header: string | undefined): boolean {
  return (header ?? '').split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return coding === 'gzip' && (q === undefined || Number(q.slice(2)) > 0);
  });
}

// zlib works on libuv's thread pool: compressing a large exposition does not hold up this thread.
const gzip = promisify(gzipCallback);

function send(
  res: ServerResponse,
  status: number,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    ...headers,
  });
  res.end(body);
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'not an address of this host',
  EACCES: 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)',
};

export async function startHttpListener(options: HttpListenerOptions): Promise<HttpListener> {
  const { address, api, build, log } = options;
  const limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  const metricsBody = coalesce(async () => {
    const [snapshot, syncDaemons] = await Promise.all([
      api.snapshot({ connections: false }),
      api.syncDaemons(),
    ]);
    return renderMetrics(snapshot, build, syncDaemons);
  });
  const token = options.token ?? null;
  const dashboard = new Dashboard({
    api,
    token,
    log,
    ...(options.onEngineEvent ? { onEngineEvent: options.onEngineEvent } : {}),
    ...(options.dashboardLimits ? { limits: options.dashboardLimits } : {}),
  });
  await dashboard.start();

  const serveMetrics: Handler = async (req, res) => {
    let body: string;
    try {
      body = await metricsBody();
    } catch (err) {
      log('warn', `http: /metrics: no snapshot: ${(err as Error).message}`);
      send(res, 503, 'lvsd could not take a snapshot; see its log\n');
      return;
    }
    const headers = { 'Content-Type': METRICS_CONTENT_TYPE, Vary: 'Accept-Encoding' };
    // Prometheus asks for gzip, as node_exporter serves it: a large table shrinks tenfold.
    if (acceptsGzip(req.headers['accept-encoding'])) {
      send(res, 200, await gzip(body), { ...headers, 'Content-Encoding': 'gzip' });
    } else {
      send(res, 200, body, headers);
    }
  };
  // Path, then method; HEAD is answered by GET's handler (node leaves the body out).
  const routes = new Map<string, ReadonlyMap<string, Handler>>([
    ['/metrics', new Map([['GET', serveMetrics]])],
    ...dashboard.routes(),
  ]);

  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
    (req, res) => {
      const path = (req.url ?? '').split('?', 1)[0]!;
      const route = routes.get(path);
      if (!route) return send(res, 404, 'not found\n', { Connection: 'close' });
      const handler = route.get(req.method === 'HEAD' ? 'GET' : (req.method ?? ''));
      if (!handler) {
        const allow = [...route.keys()].flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
        return send(res, 405, 'method not allowed\n', { Allow: allow.join(', '), Connection: 'close' });
      }
      handler(req, res).catch((err: unknown) => {
        log('error', `http: ${req.method} ${path}: ${(err as Error).message}`);
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      });
    },
  );
  server.maxHeadersCount = limits.maxHeaderCount;
  server.maxConnections = limits.maxConnections;
  // Without a 'timeout' listener, node destroys the stalled socket.
  server.setTimeout(limits.socketTimeoutMs);

  const url = listenUrl(address);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const reason = err.code ? `${err.code} (${LISTEN_ERRORS[err.code] ?? err.message})` : err.message;
        reject(new Error(`cannot listen on ${url}: ${reason}`));
      });
      server.listen({ host: address.host, port: address.port, exclusive: true }, () => resolve());
    });
  } catch (err) {
    dashboard.close();
    throw err;
  }
  server.removeAllListeners('error');
  server.on('error', (err) => log('error', `http: ${err.message}`));

  const bound = { host: address.host, port: (server.address() as AddressInfo).port };
  const boundUrl = listenUrl(bound);
  log('info', `http: serving /metrics on ${boundUrl}`);
  log(
    'info',
    `http: dashboard on ${boundUrl}/ (${token ? 'actions need the token' : 'read-only: no --http-token-file'})`,
  );
  if (!isLoopback(bound)) {
    log(
      'warn',
      `http: ${bound.host} is not loopback: whoever reaches it can read the metrics and the dashboard`,
    );
  }

  let closing: Promise<void> | null = null;
  return {
    url: boundUrl,
    close() {
      closing ??= new Promise<void>((resolve) => {
        dashboard.close();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
