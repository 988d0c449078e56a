// The dashboard in-process on the HTTP listener, against a fake ControlApi: the page, the stream
// of frames, the actions and their token, and clients that misbehave (too many streams, a stream
// that does not read, wrong tokens, bad bodies, an engine that does not answer).

import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import type { ConnPage, ConnSnapshot, ControlOp, Snapshot } from '../../src/core/ops.js';
import { Token } from '../../src/http/auth.js';
import type { DashboardLimits } from '../../src/http/dashboard.js';
import { CONN_SAMPLE_PAGE, CONN_SAMPLE_ROWS } from '../../src/http/dashboard-model.js';
import type { DashboardEvent, Frame } from '../../src/http/dashboard-model.js';
import { startHttpListener } from '../../src/http/server.js';
import type { HttpLimits, HttpListener } from '../../src/http/server.js';
import { addrKey, dest, GOLDEN_SNAPSHOT, ip, service, snapshot } from './fixtures.js';
import { fetchText, rawExchange } from './helpers.js';
import { DEFAULT_DASHBOARD_LIMITS } from '../../src/http/dashboard.js';

const SECRET = 'lvd12-dashboard-test-token';
const BUILD = { version: '1.2.3', nodeVersion: 'v20.0.0' };

interface Harness {
  listener: HttpListener;
  url: string;
  port: number;
  logs: string[];
  ops: ControlOp[];
  current: Snapshot;
  snapshotCalls: number;
  /** Whether each snapshot asked for a copy of the connection table. */
  copies: boolean[];
  /** Each ControlApi.connections call, as [from, limit]. */
  pages: Array<[number, number]>;
}

async function start(
  options: {
    token?: boolean;
    limits?: Partial<DashboardLimits>;
    http?: Partial<HttpLimits>;
    snapshot?: (h: Harness) => Promise<Snapshot>;
    connections?: (from: number, limit: number) => Promise<ConnPage>;
    execute?: (op: ControlOp) => Promise<void>;
  } = {},
): Promise<Harness> {
  const h = {
    logs: [],
    ops: [],
    current: structuredClone(GOLDEN_SNAPSHOT),
    snapshotCalls: 0,
    pages: [],
    copies: [],
  } as unknown as Harness;
  h.listener = await startHttpListener({
    address: { host: '127.0.0.1', port: 0 },
    api: {
      snapshot: async (snapshotOptions) => {
        h.snapshotCalls++;
        h.copies.push(snapshotOptions.connections);
        return options.snapshot ? options.snapshot(h) : structuredClone(h.current);
      },
      connections: async (from, limit) => {
        h.pages.push([from, limit]);
        return options.connections ? options.connections(from, limit) : { entries: [], next: -1 };
      },
      syncDaemons: async () => [],
      execute: async (op) => {
        h.ops.push(op);
        await options.execute?.(op);
      },
    },
    build: BUILD,
    log: (level, message) => h.logs.push(`${level} ${message}`),
    token: options.token === false ? null : new Token(SECRET),
    dashboardLimits: { intervalMs: 20, ...options.limits },
    ...(options.http ? { limits: options.http } : {}),
  });
  h.url = h.listener.url;
  h.port = Number(new URL(h.url).port);
  return h;
}

interface Stream {
  res: IncomingMessage;
  /** Resolves with the next server-sent event of that type. */
  next(type: 'frame' | 'log'): Promise<unknown>;
  closed: Promise<void>;
  close(): void;
}

function openStream(url: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/api/stream`, { agent: false }, (res) => {
      const queued: { type: string; data: unknown }[] = [];
      const waiting: { type: string; resolve: (data: unknown) => void }[] = [];
      let buffer = '';
      const deliver = () => {
        for (const w of [...waiting]) {
          const i = queued.findIndex((e) => e.type === w.type);
          if (i < 0) continue;
          w.resolve(queued.splice(i, 1)[0]!.data);
          waiting.splice(waiting.indexOf(w), 1);
        }
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const type = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (type && data) queued.push({ type, data: JSON.parse(data) });
        }
        deliver();
      });
      const closed = new Promise<void>((done) => res.on('close', done));
      resolve({
        res,
        next: (type) =>
          new Promise((done) => {
            waiting.push({ type, resolve: done });
            deliver();
          }),
        closed,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function post(h: Harness, body: unknown, headers: Record<string, string> = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const all = { 'Content-Type': 'application/json', Authorization: `Bearer ${SECRET}`, ...headers };
  return fetchText(`${h.url}/api/action`, 'POST', all, text);
}

/** Every wait in these tests is for a condition; this bounds a test whose condition never comes. */
const TEST_TIMEOUT_MS = 30_000;

const DRAIN = { service: 'TCP 198.18.0.1:80', server: '198.18.1.11:80', action: 'drain' };

test(
  'the page and its files are served with a strict content security policy',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start();
    try {
      const page = await fetchText(`${h.url}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers['content-type']!, /^text\/html/);
      assert.match(page.body, /<script src="\/dashboard.js" defer><\/script>/);
      assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
      assert.equal(page.headers['x-content-type-options'], 'nosniff');
      const script = await fetchText(`${h.url}/dashboard.js`);
      assert.match(script.headers['content-type']!, /^text\/javascript/);
      assert.match(script.body, /new EventSource\('\/api\/stream'\)/);
      assert.equal((await fetchText(`${h.url}/dashboard.css`)).status, 200);
      assert.equal((await fetchText(`${h.url}/api/stream`, 'HEAD')).status, 200);
      assert.ok(
        h.logs.includes(`info http: dashboard on ${h.url}/ (actions need the token)`),
        h.logs.join('\n'),
      );
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'the stream sends the log, then a frame each tick; a change shows as an event',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start();
    try {
      const stream = await openStream(h.url);
      assert.equal(stream.res.headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.ok(Array.isArray(await stream.next('log')));
      const first = (await stream.next('frame')) as Frame;
      assert.equal(first.actions, true);
      assert.ok(first.services.some((s) => s.id === 'TCP 198.18.0.1:80'));
      h.current.services.push(service(addrKey(IPPROTO_TCP, '198.18.0.7', 80), [dest('198.18.1.70', 80)]));
      let events: DashboardEvent[] = [];
      while (!events.some((e) => e.text === 'service TCP 198.18.0.7:80 added (wlc)')) {
        events = (await stream.next('log')) as DashboardEvent[];
      }
      const state = JSON.parse((await fetchText(`${h.url}/api/state`)).body) as {
        frame: Frame;
        events: DashboardEvent[];
      };
      assert.ok(state.frame.services.some((s) => s.id === 'TCP 198.18.0.7:80'));
      assert.ok(state.events.some((e) => e.text === 'TCP 198.18.0.7:80 -> 198.18.1.70:80 added, weight 1'));
      stream.close();
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'streams past maxStreams get 503; a closed one frees its place',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start({ limits: { maxStreams: 3 } });
    try {
      const streams = await Promise.all([1, 2, 3].map(() => openStream(h.url)));
      for (const s of streams) await s.next('frame');
      const refused = await fetchText(`${h.url}/api/stream`);
      assert.equal(refused.status, 503);
      assert.equal(refused.headers['retry-after'], '10');
      // The rest of the listener is unaffected.
      assert.equal((await fetchText(`${h.url}/metrics`)).status, 200);
      streams[0]!.close();
      await streams[0]!.closed;
      let again: Stream | null = null;
      while (!again) {
        const s = await openStream(h.url);
        if (s.res.statusCode === 200) again = s;
        else s.close();
      }
      await again.next('frame');
      for (const s of [again, ...streams.slice(1)]) s.close();
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'a table of a million entries costs each frame one page of CONN_SAMPLE_PAGE, never a copy of the table',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const entry = (slot: number): ConnSnapshot => ({
      af: 4,
      protocol: IPPROTO_TCP,
      caddr: ip(`198.18.${2 + (slot >> 16)}.${(slot >> 8) & 255}`),
      cport: 1024 + (slot & 255),
      vaddr: ip('198.18.0.1'),
      vport: 80,
      daddr: ip('198.18.1.11'),
      dport: 80,
      state: 'ESTABLISHED',
      expiresMs: 900_000 - slot,
      template: false,
    });
    const big = structuredClone(GOLDEN_SNAPSHOT);
    big.connTable = { ...big.connTable!, entries: 1_000_000 };
    const h = await start({
      snapshot: async () => structuredClone(big),
      connections: async (from, limit) => ({
        entries: Array.from({ length: limit }, (_, i) => entry(from + i)),
        next: from + limit,
      }),
    });
    try {
      const stream = await openStream(h.url);
      const frames: Frame[] = [];
      for (let i = 0; i < 3; i++) frames.push((await stream.next('frame')) as Frame);
      stream.close();
      for (const f of frames) {
        assert.equal(f.connTable?.entries, 1_000_000);
        assert.equal(f.connections.sampledFrom, CONN_SAMPLE_PAGE);
        assert.equal(f.connections.rows.length, CONN_SAMPLE_ROWS);
        // The longest-lived of the page first.
        assert.equal(f.connections.rows[0]!.client, '198.18.2.0:1024');
      }
      assert.ok(h.pages.length >= 3);
      assert.ok(
        h.pages.every(([from, limit]) => from === 0 && limit === CONN_SAMPLE_PAGE),
        JSON.stringify(h.pages),
      );
      assert.ok(!h.copies.includes(true), 'no snapshot copies the table');
    } finally {
      await h.listener.close();
    }
  },
);

test('a stream that stops reading is dropped, not buffered for', { timeout: TEST_TIMEOUT_MS }, async () => {
  // Large frames fill the socket buffers in a few ticks.
  const many = snapshot(
    Array.from({ length: 400 }, (_, i) =>
      service(addrKey(IPPROTO_TCP, `198.18.${i >> 8}.${i & 255}`, 80), [
        dest('198.18.1.11', 80),
        dest('198.18.1.12', 80),
      ]),
    ),
  );
  const h = await start({
    limits: { maxStreamBacklogBytes: 64 * 1024 },
    snapshot: async () => structuredClone(many),
  });
  try {
    const socket = createConnection({ host: '127.0.0.1', port: h.port });
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.on('error', () => undefined);
    socket.write('GET /api/stream HTTP/1.1\r\nHost: lvsd\r\n\r\n');
    socket.pause();
    const dropped = /^warn http: dashboard: dropped a stream to 127\.0\.0\.1 that does not read$/;
    while (!h.logs.some((l) => dropped.test(l))) await new Promise((resolve) => setTimeout(resolve, 10));
    // Its socket is gone: once the client reads again, it finds the end.
    socket.resume();
    await closed;
    // Readers that read are still served.
    const reader = await openStream(h.url);
    await reader.next('frame');
    reader.close();
  } finally {
    await h.listener.close();
  }
});

test(
  'an action with the token runs set-dest-runtime on that real server, logged',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start();
    try {
      const reply = await post(h, DRAIN);
      assert.equal(reply.status, 200, reply.body);
      assert.deepEqual(h.ops, [
        {
          op: 'set-dest-runtime',
          key: addrKey(IPPROTO_TCP, '198.18.0.1', 80),
          addr: ip('198.18.1.11'),
          port: 80,
          change: { admin: 'drain' },
        },
      ]);
      assert.ok(
        h.logs.includes('info http: dashboard: drain TCP 198.18.0.1:80 -> 198.18.1.11:80 (from 127.0.0.1)'),
      );
      assert.equal((await post(h, { ...DRAIN, action: 'set-weight', weight: 7 })).status, 200);
      assert.deepEqual((h.ops[1] as { change: object }).change, { operatorWeight: 7 });
    } finally {
      await h.listener.close();
    }
  },
);

test('bad action requests change nothing and say why', { timeout: TEST_TIMEOUT_MS }, async () => {
  const h = await start({
    execute: async () => {
      throw Object.assign(new Error('No such destination'), { code: 'ENOENT' });
    },
  });
  try {
    const cases: [unknown, Record<string, string>, number, RegExp][] = [
      [DRAIN, { 'Content-Type': 'text/plain' }, 415, /application\/json/],
      ['{"service":', {}, 400, /not JSON/],
      [{ ...DRAIN, action: 'delete' }, {}, 400, /action: one of/],
      [
        { ...DRAIN, server: '198.18.9.9:80' },
        {},
        404,
        /no real server 198\.18\.9\.9:80 in TCP 198\.18\.0\.1:80/,
      ],
      [JSON.stringify({ ...DRAIN, pad: 'x'.repeat(10_000) }), {}, 413, /over 4096 bytes/],
    ];
    for (const [body, headers, status, error] of cases) {
      const reply = await post(h, body, headers);
      assert.equal(reply.status, status, reply.body);
      assert.match((JSON.parse(reply.body) as { error: string }).error, error);
    }
    assert.deepEqual(h.ops, []);
    // The engine's refusal comes back with its code.
    const refused = await post(h, DRAIN);
    assert.equal(refused.status, 409);
    assert.deepEqual(JSON.parse(refused.body), { error: 'No such destination', code: 'ENOENT' });
  } finally {
    await h.listener.close();
  }
});

test(
  'an action whose body never comes (slowloris on the body) gets 408 and runs nothing',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start({ http: { headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 50 } });
    try {
      const body = JSON.stringify(DRAIN);
      const head =
        `POST /api/action HTTP/1.1\r\nHost: lvsd\r\nAuthorization: Bearer ${SECRET}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
      const socket = createConnection({ host: '127.0.0.1', port: h.port });
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.on('error', () => undefined);
      const closed = new Promise((resolve) => socket.on('close', resolve));
      // The headers and the start of the body, then nothing.
      socket.write(head + body.slice(0, 10));
      await closed;
      assert.match(text, /^HTTP\/1\.1 408 /);
      assert.deepEqual(h.ops, []);
      // The same action sent whole runs.
      assert.equal((await post(h, DRAIN)).status, 200);
      assert.equal(h.ops.length, 1);
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'an action with both Content-Length and Transfer-Encoding (request smuggling) is 400 and runs nothing',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start();
    try {
      const body = JSON.stringify(DRAIN);
      const smuggled =
        `POST /api/action HTTP/1.1\r\nHost: lvsd\r\nAuthorization: Bearer ${SECRET}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
      assert.match(await rawExchange(h.port, smuggled), /^HTTP\/1\.1 400 /);
      assert.deepEqual(h.ops, []);
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'many SSE clients: the default cap is served frames, the rest get 503, and /metrics still answers',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start();
    const cap = DEFAULT_DASHBOARD_LIMITS.maxStreams;
    const streams: Stream[] = [];
    try {
      for (let i = 0; i < cap + 8; i++) streams.push(await openStream(h.url));
      const served = streams.filter((s) => s.res.statusCode === 200);
      assert.equal(served.length, cap);
      assert.deepEqual(
        streams.slice(cap).map((s) => s.res.statusCode),
        Array.from({ length: 8 }, () => 503),
      );
      // Every served stream gets frames.
      await Promise.all(served.map((s) => s.next('frame')));
      assert.equal((await fetchText(`${h.url}/metrics`)).status, 200);
    } finally {
      for (const s of streams) s.close();
      await h.listener.close();
    }
  },
);

test('without a token file the dashboard is read-only', { timeout: TEST_TIMEOUT_MS }, async () => {
  const h = await start({ token: false });
  try {
    const reply = await post(h, DRAIN);
    assert.equal(reply.status, 403);
    assert.match(reply.body, /read-only: lvsd runs without --http-token-file/);
    assert.deepEqual(h.ops, []);
    const state = JSON.parse((await fetchText(`${h.url}/api/state`)).body) as { frame: Frame };
    assert.equal(state.frame.actions, false);
  } finally {
    await h.listener.close();
  }
});

test(
  'wrong tokens are refused, logged, and after five the address is refused even with the right one',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const h = await start({
      limits: { failures: { maxFailures: 5, windowMs: 60_000, blockMs: 60_000, maxTracked: 16 } },
    });
    try {
      const wrong = [
        { Authorization: 'Bearer nope' },
        { Authorization: '' },
        { Authorization: `Basic ${SECRET}` },
        { Authorization: `Bearer ${SECRET}0` },
      ];
      for (const headers of wrong) {
        const reply = await post(h, DRAIN, headers);
        assert.equal(reply.status, 401);
        assert.equal(reply.headers['www-authenticate'], 'Bearer realm="lvsd"');
      }
      assert.equal((await post(h, DRAIN, { Authorization: 'Bearer guess' })).status, 401);
      assert.ok(
        h.logs.includes(
          'warn http: dashboard: wrong or missing token from 127.0.0.1; refusing 127.0.0.1 for 60 s',
        ),
      );
      assert.equal(
        h.logs.filter((l) => l.startsWith('warn http: dashboard: wrong or missing token')).length,
        5,
      );
      const blocked = await post(h, DRAIN);
      assert.equal(blocked.status, 429);
      assert.ok(Number(blocked.headers['retry-after']) > 0);
      assert.deepEqual(h.ops, []);
      // Reading goes on.
      assert.equal((await fetchText(`${h.url}/api/state`)).status, 200);
    } finally {
      await h.listener.close();
    }
  },
);

test(
  'an engine that does not answer: ticks do not pile up and the page is still served',
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    let calls = 0;
    const h = await start({ snapshot: () => (calls++, new Promise<Snapshot>(() => undefined)) });
    try {
      assert.equal((await fetchText(`${h.url}/`)).status, 200);
      assert.equal((await fetchText(`${h.url}/api/state`)).status, 503);
      const stream = await openStream(h.url);
      assert.equal(stream.res.statusCode, 200);
      stream.close();
      assert.equal(calls, 1, 'one snapshot in flight, however many ticks passed');
      // Malformed requests are still answered.
      assert.match(await rawExchange(h.port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
    } finally {
      await h.listener.close();
    }
  },
);
