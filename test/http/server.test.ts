// The HTTP listener in-process, against a fake ControlApi: routes, and clients that misbehave.

import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it, test } from 'node:test';
import type { Snapshot } from '../../src/core/ops.js';
import { renderMetrics } from '../../src/http/metrics.js';
import { acceptsGzip, coalesce, METRICS_CONTENT_TYPE, startHttpListener } from '../../src/http/server.js';
import type { HttpLimits, HttpListener } from '../../src/http/server.js';
import { GOLDEN_SNAPSHOT } from './fixtures.js';
import { fetchText, rawExchange, stalledClient } from './helpers.js';

const BUILD = { version: '1.2.3', nodeVersion: 'v20.0.0' };

interface Harness {
  listener: HttpListener;
  port: number;
  logs: string[];
  snapshots: number;
}

async function start(
  snapshot: () => Promise<Snapshot> = async () => GOLDEN_SNAPSHOT,
  limits: Partial<HttpLimits> = {},
): Promise<Harness> {
  const h = { logs: [] as string[], snapshots: 0 } as Harness;
  h.listener = await startHttpListener({
    address: { host: '127.0.0.1', port: 0 },
    api: {
      snapshot: (options) => {
        assert.deepEqual(options, { connections: false });
        h.snapshots++;
        return snapshot();
      },
      connections: async () => ({ entries: [], next: -1 }),
      syncDaemons: async () => [],
      execute: async () => assert.fail('the listener changes nothing by itself'),
    },
    build: BUILD,
    log: (level, message) => h.logs.push(`${level} ${message}`),
    limits,
  });
  h.port = Number(new URL(h.listener.url).port);
  return h;
}

/** The status of /metrics, retried while the server has not yet seen closed connections go. */
async function statusOnceServed(url: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await fetchText(`${url}/metrics`)).status;
    } catch (err) {
      if (attempt === 50) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

describe('the HTTP listener', () => {
  let h: Harness;
  before(async () => (h = await start()));
  after(() => h.listener.close());

  it('serves GET /metrics: the snapshot in the text format, and says where it listens', async () => {
    const reply = await fetchText(`${h.listener.url}/metrics`);
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], METRICS_CONTENT_TYPE);
    assert.equal(reply.body, renderMetrics(GOLDEN_SNAPSHOT, BUILD));
    assert.ok(h.logs.includes(`info http: serving /metrics on ${h.listener.url}`), h.logs.join('\n'));
    // A query string (Prometheus's `params:`) does not change the path.
    assert.equal((await fetchText(`${h.listener.url}/metrics?collect[]=ipvs`)).body, reply.body);
  });

  it('compresses /metrics with gzip for clients that ask (Prometheus does)', async () => {
    const expected = renderMetrics(GOLDEN_SNAPSHOT, BUILD);
    const zipped = await fetchText(`${h.listener.url}/metrics`, 'GET', { 'Accept-Encoding': 'gzip' });
    assert.equal(zipped.status, 200);
    assert.equal(zipped.headers['content-encoding'], 'gzip');
    assert.equal(zipped.headers.vary, 'Accept-Encoding');
    assert.equal(gunzipSync(zipped.raw).toString('utf8'), expected);
    for (const refused of ['gzip;q=0', 'identity', 'br, deflate', '']) {
      const plain = await fetchText(`${h.listener.url}/metrics`, 'GET', { 'Accept-Encoding': refused });
      assert.equal(plain.headers['content-encoding'], undefined, refused);
      assert.equal(plain.body, expected);
    }
    assert.ok(acceptsGzip('br;q=1.0, GZIP;q=0.5'));
    assert.ok(!acceptsGzip('x-gzip'));
  });

  it('answers HEAD /metrics with the headers and no body', async () => {
    const reply = await fetchText(`${h.listener.url}/metrics`, 'HEAD');
    assert.equal(reply.status, 200);
    assert.equal(reply.body, '');
    assert.equal(
      Number(reply.headers['content-length']),
      Buffer.byteLength(renderMetrics(GOLDEN_SNAPSHOT, BUILD)),
    );
  });

  it('answers 404 for other paths and 405 (with Allow) for other methods', async () => {
    for (const path of ['/index.html', '/metrics/', '/Metrics', '/metricsx', '/%00', '/metrics%20']) {
      assert.equal((await fetchText(`${h.listener.url}${path}`)).status, 404, path);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const reply = await fetchText(`${h.listener.url}/metrics`, method);
      assert.equal(reply.status, 405, method);
      assert.equal(reply.headers.allow, 'GET, HEAD');
    }
  });

  it('answers malformed requests with 400 and closes the connection', async () => {
    for (const garbage of [
      'GARBAGE\r\n\r\n',
      'GET /metrics HTTP/9.9\r\n\r\n',
      'GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n',
      'GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n',
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]), // a TLS ClientHello
    ]) {
      assert.match(await rawExchange(h.port, garbage), /^HTTP\/1\.1 400 /, String(garbage));
    }
  });

  it("refuses headers over the size limit with 431 (node's maxHeaderSize)", async () => {
    const huge = `GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
    assert.match(await rawExchange(h.port, huge), /^HTTP\/1\.1 431 /);
  });

  it('serves many concurrent clients', async () => {
    const replies = await Promise.all(
      Array.from({ length: 100 }, () => fetchText(`${h.listener.url}/metrics`)),
    );
    const expected = renderMetrics(GOLDEN_SNAPSHOT, BUILD);
    assert.ok(replies.every((r) => r.status === 200 && r.body === expected));
  });
});

test('a client that never finishes its headers gets 408 and is disconnected (slowloris)', async () => {
  const h = await start(undefined, { headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 50 });
  try {
    const slow = Array.from({ length: 10 }, () => stalledClient(h.port));
    // While they hang, others are served.
    assert.equal((await fetchText(`${h.listener.url}/metrics`)).status, 200);
    for (const client of slow) assert.match(await client.closed, /^HTTP\/1\.1 408 /);
  } finally {
    await h.listener.close();
  }
});

test('connections past the limit are closed at once; the listener serves again when they go', async () => {
  const h = await start(undefined, { maxConnections: 5 });
  try {
    const held = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const socket = createConnection({ host: '127.0.0.1', port: h.port });
        await new Promise((resolve) => socket.once('connect', resolve));
        return socket;
      }),
    );
    // The server counts a connection once it has accepted it; a request on each makes sure it has.
    const extra = await rawExchange(h.port, 'GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(extra, '', 'the sixth connection is closed without an answer');
    for (const socket of held) socket.destroy();
    assert.equal(await statusOnceServed(h.listener.url), 200);
  } finally {
    await h.listener.close();
  }
});

test('when the snapshot fails, /metrics answers 503 and lvsd logs why', async () => {
  let fail = true;
  const h = await start(async () => {
    if (fail) throw new Error('engine gone');
    return GOLDEN_SNAPSHOT;
  });
  try {
    const reply = await fetchText(`${h.listener.url}/metrics`);
    assert.equal(reply.status, 503);
    assert.ok(h.logs.includes('warn http: /metrics: no snapshot: engine gone'), h.logs.join('\n'));
    fail = false;
    assert.equal((await fetchText(`${h.listener.url}/metrics`)).status, 200);
  } finally {
    await h.listener.close();
  }
});

test('close() stops listening and ends kept-alive connections', async () => {
  const h = await start();
  const idle = createConnection({ host: '127.0.0.1', port: h.port });
  await new Promise((resolve) => idle.once('connect', resolve));
  const idleClosed = new Promise((resolve) => idle.once('close', resolve));
  await h.listener.close();
  await idleClosed;
  await assert.rejects(fetchText(`${h.listener.url}/metrics`), { code: 'ECONNREFUSED' });
});

test('a port in use is refused with the reason', async () => {
  const h = await start();
  try {
    await assert.rejects(
      startHttpListener({
        address: { host: '127.0.0.1', port: h.port },
        api: {
          snapshot: async () => GOLDEN_SNAPSHOT,
          connections: async () => ({ entries: [], next: -1 }),
          syncDaemons: async () => [],
          execute: async () => undefined,
        },
        build: BUILD,
        log: () => undefined,
      }),
      { message: `cannot listen on ${h.listener.url}: EADDRINUSE (address already in use)` },
    );
  } finally {
    await h.listener.close();
  }
});

test('coalesce: calls while one is in flight share it; the next call starts afresh', async () => {
  let calls = 0;
  let release!: (value: number) => void;
  const shared = coalesce(
    () =>
      new Promise<number>((resolve) => {
        calls++;
        release = resolve;
      }),
  );
  const first = shared();
  const second = shared();
  assert.equal(first, second);
  assert.equal(calls, 1);
  release(7);
  assert.deepEqual(await Promise.all([first, second]), [7, 7]);
  const third = shared();
  assert.notEqual(third, first);
  assert.equal(calls, 2);
  release(8);
  assert.equal(await third, 8);
});
