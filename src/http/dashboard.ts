// The live dashboard on lvsd's HTTP listener: the page (three static files, no build step), its
// state once (GET /api/state) or as a stream of server-sent events (GET /api/stream, one frame a
// second), and the operator's actions (POST /api/action: drain, ready, maint, set or clear a
// weight) for whoever holds the token. One snapshot a second feeds every client; a client that
// does not read is dropped rather than buffered for; the number of streams is capped. The packet
// path runs in its own thread: a snapshot is a message to it, answered between packets.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { ControlApi } from '../control/api.js';
import type { EngineEvent } from '../core/ops.js';
import { DEFAULT_FAILURE_LIMITS, FailureLimiter } from './auth.js';
import type { FailureLimits, Token } from './auth.js';
import {
  actionOp,
  buildFrame,
  CheckHistory,
  CONN_SAMPLE_PAGE,
  EventLog,
  frameEvents,
  parseActionRequest,
} from './dashboard-model.js';
import type { DashboardEvent, Frame } from './dashboard-model.js';

export type HttpLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface DashboardLimits {
  /** Streams open at once; more get 503. */
  maxStreams: number;
  /** Bytes queued for a stream that does not read before it is dropped. */
  maxStreamBacklogBytes: number;
  /** Largest POST /api/action body. */
  maxActionBytes: number;
  /** How often the dashboard takes a snapshot (and streams a frame). */
  intervalMs: number;
  failures: FailureLimits;
}

export const DEFAULT_DASHBOARD_LIMITS: DashboardLimits = {
  maxStreams: 32,
  maxStreamBacklogBytes: 1 << 20,
  maxActionBytes: 4096,
  intervalMs: 1000,
  failures: DEFAULT_FAILURE_LIMITS,
};

export interface DashboardOptions {
  api: Pick<ControlApi, 'snapshot' | 'connections' | 'syncDaemons' | 'execute'>;
  /** Without a token the dashboard is read-only: POST /api/action answers 403. */
  token: Token | null;
  /** The engine's events (Engine.onEvent), for the log: a failed data plane, packet path exceptions. */
  onEngineEvent?: (listener: (event: EngineEvent) => void) => () => void;
  log: HttpLog;
  limits?: Partial<DashboardLimits>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

const STATIC_DIR = new URL('../../../src/http/static/', import.meta.url);
const STATIC_FILES: readonly [path: string, file: string, type: string][] = [
  ['/', 'dashboard.html', 'text/html; charset=utf-8'],
  ['/dashboard.js', 'dashboard.js', 'text/javascript; charset=utf-8'],
  ['/dashboard.css', 'dashboard.css', 'text/css; charset=utf-8'],
];

/** Scripts and styles from the page's own origin only; no framing, no other connections. */
const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(body);
}

/** The request body, or null when it is larger than `limit` (the connection is then closed). */
function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) return resolve(null);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        resolve(null);
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export class Dashboard {
  private readonly limits: DashboardLimits;
  private readonly failures: FailureLimiter;
  private readonly history = new CheckHistory();
  private readonly events = new EventLog();
  private readonly streams = new Set<ServerResponse>();
  private readonly files = new Map<string, { body: Buffer; type: string }>();
  private frame: Frame | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private snapshotFailing = false;
  private unsubscribe: () => void = () => undefined;

  constructor(private readonly options: DashboardOptions) {
    this.limits = { ...DEFAULT_DASHBOARD_LIMITS, ...options.limits };
    this.failures = new FailureLimiter(this.limits.failures);
  }

  /** Reads the page's files and starts taking a snapshot every intervalMs. */
  async start(): Promise<void> {
    for (const [path, file, type] of STATIC_FILES) {
      this.files.set(path, { body: await readFile(new URL(file, STATIC_DIR)), type });
    }
    this.unsubscribe =
      this.options.onEngineEvent?.((event) => this.onEngineEvent(event)) ?? (() => undefined);
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.limits.intervalMs);
    this.timer.unref();
  }

  /** Stops the snapshots and ends every stream. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe();
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** The routes it serves: path, then method. */
  routes(): [string, ReadonlyMap<string, Handler>][] {
    const pages = [...this.files.keys()].map((path): [string, ReadonlyMap<string, Handler>] => [
      path,
      new Map([['GET', this.servePage]]),
    ]);
    return [
      ...pages,
      ['/api/state', new Map([['GET', this.serveState]])],
      ['/api/stream', new Map([['GET', this.serveStream]])],
      ['/api/action', new Map([['POST', this.serveAction]])],
    ];
  }

  private onEngineEvent(event: EngineEvent): void {
    const time = Date.now();
    if (event.kind === 'failed')
      this.record([{ time, kind: 'engine', text: `data plane failed: ${event.reason}` }]);
    if (event.kind === 'exception') {
      const text = `packet path exception #${event.count}: ${event.message}`;
      this.record([{ time, kind: 'engine', text }]);
    }
  }

  private record(events: DashboardEvent[]): void {
    if (events.length === 0) return;
    this.events.push(...events);
    this.broadcast(`event: log\ndata: ${JSON.stringify(events)}\n\n`);
  }

  /** One snapshot, one frame for every stream; a tick still running makes the next one wait for it. */
  tick(): Promise<void> {
    this.ticking ??= this.takeFrame().finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async takeFrame(): Promise<void> {
    const { api, log } = this.options;
    let frame: Frame;
    try {
      // The sample is one page of the table, never a copy of it: its size does not matter here.
      const [snapshot, page, sync] = await Promise.all([
        api.snapshot({ connections: false }),
        api.connections(0, CONN_SAMPLE_PAGE),
        api.syncDaemons(),
      ]);
      frame = buildFrame(snapshot, sync, this.history, {
        time: Date.now(),
        actions: this.options.token !== null,
        connections: page.entries,
      });
      if (this.snapshotFailing) log('info', 'http: dashboard: snapshots work again');
      this.snapshotFailing = false;
    } catch (err) {
      if (!this.snapshotFailing) log('warn', `http: dashboard: no snapshot: ${(err as Error).message}`);
      this.snapshotFailing = true;
      return;
    }
    const previous = this.frame;
    this.frame = frame;
    if (previous) this.record(frameEvents(previous, frame));
    this.broadcast(`event: frame\ndata: ${JSON.stringify(frame)}\n\n`);
  }

  private broadcast(message: string): void {
    for (const res of this.streams) {
      // A client that stopped reading would make lvsd hold every frame for it.
      if (res.writableLength > this.limits.maxStreamBacklogBytes) {
        this.options.log(
          'warn',
          `http: dashboard: dropped a stream to ${res.req.socket.remoteAddress} that does not read`,
        );
        this.streams.delete(res);
        res.destroy();
        continue;
      }
      res.write(message);
    }
  }

  private readonly servePage: Handler = async (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const file = this.files.get(path)!;
    res.writeHead(200, {
      'Content-Type': file.type,
      'Content-Length': String(file.body.length),
      ...PAGE_HEADERS,
    });
    res.end(file.body);
  };

  private readonly serveState: Handler = async (_req, res) => {
    if (!this.frame) return sendJson(res, 503, { error: 'no snapshot yet; see lvsd log' });
    sendJson(res, 200, { frame: this.frame, events: this.events.list() });
  };

  private readonly serveStream: Handler = async (req, res) => {
    if (this.streams.size >= this.limits.maxStreams) {
      return sendJson(
        res,
        503,
        { error: `${this.limits.maxStreams} dashboards are open already` },
        {
          'Retry-After': '10',
          Connection: 'close',
        },
      );
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8' });
      return void res.end();
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Accel-Buffering': 'no',
    });
    this.streams.add(res);
    const forget = () => this.streams.delete(res);
    req.socket.on('close', forget);
    res.on('error', forget);
    res.write(`retry: 2000\nevent: log\ndata: ${JSON.stringify(this.events.list())}\n\n`);
    if (this.frame) res.write(`event: frame\ndata: ${JSON.stringify(this.frame)}\n\n`);
  };

  private readonly serveAction: Handler = async (req, res) => {
    const { token, log, api } = this.options;
    const close = { Connection: 'close' };
    if (!token) {
      return sendJson(res, 403, { error: 'read-only: lvsd runs without --http-token-file' }, close);
    }
    const from = req.socket.remoteAddress ?? 'unknown';
    const now = performance.now();
    const wait = this.failures.blockedFor(from, now);
    if (wait > 0) {
      const seconds = String(Math.ceil(wait / 1000));
      return sendJson(
        res,
        429,
        { error: `too many wrong tokens; try again in ${seconds} s` },
        {
          'Retry-After': seconds,
          ...close,
        },
      );
    }
    if (!token.matches(req.headers.authorization)) {
      const blocked = this.failures.fail(from, now);
      const then = blocked ? `; refusing ${from} for ${this.limits.failures.blockMs / 1000} s` : '';
      log('warn', `http: dashboard: wrong or missing token from ${from}${then}`);
      return sendJson(
        res,
        401,
        { error: 'a valid token is needed (Authorization: Bearer TOKEN)' },
        {
          'WWW-Authenticate': 'Bearer realm="lvsd"',
          ...close,
        },
      );
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return sendJson(res, 415, { error: 'send application/json' }, close);
    }
    const text = await readBody(req, this.limits.maxActionBytes);
    if (text === null) {
      return sendJson(res, 413, { error: `the body is over ${this.limits.maxActionBytes} bytes` }, close);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return sendJson(res, 400, { error: 'the body is not JSON' }, close);
    }
    const request = parseActionRequest(body);
    if ('error' in request) return sendJson(res, 400, { error: request.error }, close);
    const op = actionOp(await api.snapshot({ connections: false }), request);
    if (!op)
      return sendJson(res, 404, { error: `no real server ${request.server} in ${request.service}` }, close);
    try {
      await api.execute(op);
    } catch (err) {
      const { code, message } = err as { code?: string; message: string };
      return sendJson(res, 409, { error: message, ...(code ? { code } : {}) }, close);
    }
    const weight = request.action === 'set-weight' ? ` ${request.weight}` : '';
    log(
      'info',
      `http: dashboard: ${request.action}${weight} ${request.service} -> ${request.server} (from ${from})`,
    );
    sendJson(res, 200, { ok: true });
    // The page sees the result at once rather than on the next tick.
    void this.tick();
  };
}
