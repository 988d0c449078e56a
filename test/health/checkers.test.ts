// Every registered checker through the one conformance suite, each against targets it
// understands, plus what is particular to each (keepalived's exact GET request, DNS queries,
// UDP's ICMP rule, MISC_CHECK's exit codes, weights and process groups).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseAddr } from '../../src/core/inet.js';
import { createChecker, registeredCheckers } from '../../src/health/index.js';
import type { CheckerConfig, CheckTiming } from '../../src/health/config.js';
import { httpRequest } from '../../src/health/http.js';
import { dnsQuery } from '../../src/health/dns.js';
import { runCheckerConformance, SLOW_MS, TIMING, type Scenario } from './conformance.js';
import { LOOPBACK, isRoot, target, type Targets } from './targets.js';

type HttpConfig = Extract<CheckerConfig, { kind: 'HTTP_GET' | 'SSL_GET' }>;

const BODY = 'hello from the real server\n';
const httpAnswer = (request: Buffer) =>
  request.includes('\r\n\r\n')
    ? Buffer.from(`HTTP/1.0 200 OK\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`)
    : Buffer.alloc(0);
const dnsAnswer = (query: Buffer) => {
  const reply = Buffer.from(query);
  reply[2] = reply[2]! | 0x80;
  return reply;
};

/** Where a network checker is pointed for a scenario: a behaving server, a closed port, the blackhole. */
async function networkTarget(
  scenario: Scenario,
  targets: Targets,
  kind: 'stream' | 'datagram',
  respond: (b: Buffer) => Buffer,
) {
  if (scenario === 'refused')
    return target(
      LOOPBACK,
      kind === 'stream' ? await targets.closedTcpPort() : await targets.closedUdpPort(),
    );
  if (scenario === 'silent') return targets.blackhole ? target(targets.blackhole, 80) : null;
  const behavior = scenario === 'up' ? 'up' : scenario;
  const port =
    kind === 'stream'
      ? await targets.stream(behavior, respond, SLOW_MS)
      : await targets.datagram(behavior, respond, SLOW_MS);
  return target(LOOPBACK, port);
}

function withTarget<T>(make: (t: NonNullable<Awaited<ReturnType<typeof networkTarget>>>) => T) {
  return async (t: Awaited<ReturnType<typeof networkTarget>>) => (t ? make(t) : null);
}

runCheckerConformance({
  name: 'TCP_CHECK',
  setup: async (scenario, targets, timing) =>
    withTarget((t) => ({ ...timing, kind: 'TCP_CHECK' as const, target: t }))(
      await networkTarget(scenario, targets, 'stream', httpAnswer),
    ),
  // A TCP check only connects: whatever the server does after accepting, it is up.
  expect: {
    up: { ok: true, code: 'L4OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: false, code: 'L4TOUT' },
    stalled: { ok: true, code: 'L4OK' },
    reset: { ok: true, code: 'L4OK' },
    slow: { ok: true, code: 'L4OK' },
    garbage: { ok: true, code: 'L4OK' },
    gigantic: { ok: true, code: 'L4OK' },
  },
});

const httpConfig = (
  timing: CheckTiming,
  t: ReturnType<typeof target>,
  kind: 'HTTP_GET' | 'SSL_GET' = 'HTTP_GET',
): HttpConfig => ({
  ...timing,
  kind,
  target: t,
  urls: [
    {
      path: '/',
      digest: createHash('md5').update(BODY).digest('hex'),
      statusCodes: [[200, 299]],
      virtualhost: null,
    },
  ],
  virtualhost: null,
  httpProtocol: '1.0',
  enableSni: false,
  fastRecovery: false,
});

runCheckerConformance({
  name: 'HTTP_GET',
  setup: async (scenario, targets, timing) =>
    withTarget((t) => httpConfig(timing, t))(await networkTarget(scenario, targets, 'stream', httpAnswer)),
  expect: {
    up: { ok: true, code: 'L7OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: false, code: 'L4TOUT' },
    stalled: { ok: false, code: 'L7TOUT' },
    reset: { ok: false, code: 'L7RSP' },
    slow: { ok: false, code: 'L7TOUT' },
    garbage: { ok: false, code: 'L7RSP' },
    // An endless body with a digest to check: cut off, not stored.
    gigantic: { ok: false, code: 'L7RSP' },
  },
});

runCheckerConformance({
  name: 'SSL_GET',
  setup: async (scenario, targets, timing) => {
    // The handshake's own failures come from a plain TCP server; the rest from a TLS one.
    const handshake = scenario === 'stalled' || scenario === 'reset' || scenario === 'garbage';
    if (scenario === 'refused' || scenario === 'silent' || handshake)
      return withTarget((t) => httpConfig(timing, t, 'SSL_GET'))(
        await networkTarget(scenario, targets, 'stream', httpAnswer),
      );
    const port = await targets.stream(scenario, httpAnswer, SLOW_MS, targets.certificate());
    return httpConfig(timing, target(LOOPBACK, port), 'SSL_GET');
  },
  expect: {
    up: { ok: true, code: 'L7OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: false, code: 'L4TOUT' },
    stalled: { ok: false, code: 'L6TOUT' },
    reset: { ok: false, code: 'L6RSP' },
    slow: { ok: false, code: 'L7TOUT' },
    garbage: { ok: false, code: 'L6RSP' },
    gigantic: { ok: false, code: ['L7RSP', 'L7TOUT'] },
  },
});

const udpConfig = (
  timing: CheckTiming,
  t: ReturnType<typeof target>,
  payload: Buffer | null,
  requireReply: Buffer | null,
): CheckerConfig => ({
  ...timing,
  kind: 'UDP_CHECK',
  target: t,
  payload,
  requireReply,
  minReplyLength: requireReply ? requireReply.length : 0,
  maxReplyLength: 255,
});
const UDP_HAS_NO_RESET = { reset: 'UDP has no reset' };

runCheckerConformance({
  name: 'UDP_CHECK (require_reply)',
  setup: async (scenario, targets, timing) =>
    withTarget((t) => udpConfig(timing, t, Buffer.from('PING'), Buffer.from('PO')))(
      await networkTarget(scenario, targets, 'datagram', () => Buffer.from('PONG')),
    ),
  expect: {
    up: { ok: true, code: 'L7OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: false, code: 'L7TOUT' },
    stalled: { ok: false, code: 'L7TOUT' },
    slow: { ok: false, code: 'L7TOUT' },
    garbage: { ok: false, code: 'L7RSP' },
    gigantic: { ok: false, code: 'L7RSP' },
  },
  skip: UDP_HAS_NO_RESET,
});

runCheckerConformance({
  name: 'UDP_CHECK (no require_reply)',
  setup: async (scenario, targets, timing) =>
    withTarget((t) => udpConfig(timing, t, null, null))(
      await networkTarget(scenario, targets, 'datagram', () => Buffer.from('x')),
    ),
  // keepalived: without require_reply only an ICMP error fails.
  expect: {
    up: { ok: true, code: 'L4OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: true, code: 'L4OK' },
    stalled: { ok: true, code: 'L4OK' },
    slow: { ok: true, code: 'L4OK' },
    garbage: { ok: true, code: 'L4OK' },
    gigantic: { ok: true, code: 'L4OK' },
  },
  skip: UDP_HAS_NO_RESET,
});

runCheckerConformance({
  name: 'DNS_CHECK',
  setup: async (scenario, targets, timing) =>
    withTarget((t) => ({
      ...timing,
      kind: 'DNS_CHECK' as const,
      target: t,
      type: 'A' as const,
      name: 'rs.lab',
    }))(await networkTarget(scenario, targets, 'datagram', dnsAnswer)),
  // Replies that are not a response to our query are ignored, as keepalived ignores them.
  expect: {
    up: { ok: true, code: 'L7OK' },
    refused: { ok: false, code: 'L4CON' },
    silent: { ok: false, code: 'L7TOUT' },
    stalled: { ok: false, code: 'L7TOUT' },
    slow: { ok: false, code: 'L7TOUT' },
    garbage: { ok: false, code: 'L7TOUT' },
    gigantic: { ok: false, code: 'L7TOUT' },
  },
  skip: UDP_HAS_NO_RESET,
});

runCheckerConformance({
  name: 'PING_CHECK',
  setup: async (scenario, targets, timing) => {
    if (!isRoot) return null;
    if (scenario === 'up') return { ...timing, kind: 'PING_CHECK', target: target(LOOPBACK, 0) };
    return targets.blackhole ? { ...timing, kind: 'PING_CHECK', target: target(targets.blackhole, 0) } : null;
  },
  expect: { up: { ok: true, code: 'L4OK' }, silent: { ok: false, code: 'L4TOUT' } },
  skip: {
    refused: 'ICMP has no port to refuse',
    stalled: 'an echo is answered by the kernel',
    reset: 'ICMP has no connection',
    slow: 'an echo is answered by the kernel',
    garbage: 'an echo is answered by the kernel',
    gigantic: 'an echo is answered by the kernel',
  },
});

const SCRIPTS: Partial<Record<Scenario, string>> = {
  up: 'exit 0',
  refused: 'exit 1',
  // Hangs with a child of its own: the whole group must go.
  silent: 'sleep 30 & sleep 30',
  stalled: 'sleep 30',
  // Floods stdout and stderr, then succeeds.
  gigantic: 'head -c 20000000 /dev/zero; head -c 20000000 /dev/zero >&2; exit 0',
};

runCheckerConformance({
  name: 'MISC_CHECK',
  setup: async (scenario, _targets, timing) => ({
    ...timing,
    kind: 'MISC_CHECK',
    argv: ['/bin/sh', '-c', SCRIPTS[scenario]!],
    timeoutMs: scenario === 'gigantic' ? 10_000 : timing.connectTimeoutMs,
    dynamic: false,
    user: null,
    group: null,
  }),
  expect: {
    up: { ok: true, code: 'PROCOK' },
    refused: { ok: false, code: 'PROCERR' },
    silent: { ok: false, code: 'PROCTOUT' },
    stalled: { ok: false, code: 'PROCTOUT' },
    gigantic: { ok: true, code: 'PROCOK' },
  },
  skip: { reset: 'no network', slow: 'covered by silent', garbage: 'output is discarded' },
});

describe('checkers', () => {
  it('are registered under keepalived names', () => {
    assert.deepEqual(registeredCheckers().sort(), [
      'DNS_CHECK',
      'HTTP_GET',
      'MISC_CHECK',
      'PING_CHECK',
      'SSL_GET',
      'TCP_CHECK',
      'UDP_CHECK',
    ]);
  });

  it('HTTP_GET writes the GET request exactly as keepalived', () => {
    const base = httpConfig(TIMING, target(parseAddr('198.18.1.11')!, 8080));
    const url = base.urls[0]!;
    assert.equal(
      httpRequest(base, url),
      'GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 198.18.1.11:8080\r\n\r\n',
    );
    assert.equal(
      httpRequest({ ...base, httpProtocol: '1.1', virtualhost: 'www.example' }, { ...url, path: '/health' }),
      'GET /health HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: www.example\r\n\r\n',
    );
    assert.equal(
      httpRequest(
        { ...base, httpProtocol: '1.0C', target: target(parseAddr('2001:db8::11')!, 80) },
        { ...url, virtualhost: null },
      ),
      'GET / HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: [2001:db8::11]:80\r\n\r\n',
    );
    // The url's own virtualhost wins over the checker's.
    assert.match(
      httpRequest({ ...base, virtualhost: 'a.example' }, { ...url, virtualhost: 'b.example' }),
      /Host: b\.example\r\n/,
    );
  });

  it('HTTP_GET checks status ranges and every url', async () => {
    const { Targets } = await import('./targets.js');
    const targets = await Targets.open();
    try {
      const port = await targets.stream('up', (req) =>
        req.includes('\r\n\r\n')
          ? Buffer.from(
              req.toString().startsWith('GET /missing')
                ? 'HTTP/1.0 404 Not Found\r\n\r\n'
                : 'HTTP/1.1 200 OK\r\n\r\nhi',
            )
          : Buffer.alloc(0),
      );
      const base = httpConfig(TIMING, target(LOOPBACK, port));
      const url = {
        path: '/',
        digest: null,
        statusCodes: [[200, 200]] as Array<[number, number]>,
        virtualhost: null,
      };
      const check = (urls: (typeof url)[]) =>
        createChecker({ ...base, urls }).check({ timeoutMs: 1000, signal: new AbortController().signal });
      assert.equal((await check([url])).code, 'L7OK');
      const missing = await check([url, { ...url, path: '/missing' }]);
      assert.deepEqual(
        [missing.ok, missing.code, missing.reason],
        [false, 'L7STS', '/missing: HTTP status 404'],
      );
      const accepted = await check([
        {
          ...url,
          path: '/missing',
          statusCodes: [
            [200, 200],
            [400, 404],
          ],
        },
      ]);
      assert.equal(accepted.ok, true);
      assert.throws(() => createChecker({ ...base, urls: [] }), { code: 'LVS_ERR_INVALID' });
      // Recovering, the urls are checked one per attempt (one per delay_loop) unless fast_recovery.
      const three = [url, { ...url, path: '/b' }, { ...url, path: '/c' }];
      const recovering = createChecker({ ...base, urls: three });
      const step = async () =>
        (await recovering.check({ timeoutMs: 3000, signal: new AbortController().signal, recovering: true }))
          .ok;
      assert.deepEqual([await step(), await step(), await step()], [false, false, true]);
      const fast = await createChecker({ ...base, urls: three, fastRecovery: true }).check({
        timeoutMs: 3000,
        signal: new AbortController().signal,
        recovering: true,
      });
      assert.equal(fast.ok, true);
    } finally {
      targets.close();
    }
  });

  it('DNS_CHECK asks with RD set, one question of the configured type', () => {
    const q = dnsQuery(0x1234, Buffer.from([2, 0x72, 0x73, 3, 0x6c, 0x61, 0x62, 0]), 6);
    assert.equal(q.toString('hex'), '123401000001000000000000' + '0272730' + '36c616200' + '00060001');
    assert.throws(
      () =>
        createChecker({
          ...TIMING,
          kind: 'DNS_CHECK',
          target: target(LOOPBACK, 53),
          type: 'A',
          name: 'a'.repeat(64),
        }),
      { code: 'LVS_ERR_INVALID' },
    );
  });

  it('MISC_CHECK: exit codes and misc_dynamic weights as keepalived', async () => {
    const run = async (script: string, dynamic: boolean) =>
      createChecker({
        ...TIMING,
        kind: 'MISC_CHECK',
        argv: ['/bin/sh', '-c', script],
        timeoutMs: 5000,
        dynamic,
        user: null,
        group: null,
      }).check({ timeoutMs: 5000, signal: new AbortController().signal });
    const pick = (r: Awaited<ReturnType<typeof run>>) => [r.ok, r.code, r.weight];
    assert.deepEqual(pick(await run('exit 0', false)), [true, 'PROCOK', undefined]);
    assert.deepEqual(pick(await run('exit 0', true)), [true, 'PROCOK', 'configured']);
    assert.deepEqual(pick(await run('exit 1', true)), [false, 'PROCERR', undefined]);
    assert.deepEqual(pick(await run('exit 2', true)), [true, 'PROCOK', 0]);
    assert.deepEqual(pick(await run('exit 12', true)), [true, 'PROCOK', 10]);
    assert.deepEqual(pick(await run('exit 12', false)), [false, 'PROCERR', undefined]);
    const said = await run('echo "disk full" >&2; exit 1', false);
    assert.equal(said.reason, 'exit status 1: disk full');
    const missing = await createChecker({
      ...TIMING,
      kind: 'MISC_CHECK',
      argv: ['/nonexistent/script'],
      timeoutMs: 1000,
      dynamic: false,
      user: null,
      group: null,
    }).check({ timeoutMs: 1000, signal: new AbortController().signal });
    assert.equal(missing.code, 'PROCERR');
    assert.throws(
      () =>
        createChecker({
          ...TIMING,
          kind: 'MISC_CHECK',
          argv: ['true'],
          timeoutMs: 1,
          dynamic: false,
          user: 'no-such-user-hc',
          group: null,
        }),
      { code: 'LVS_ERR_INVALID' },
    );
  });

  it('MISC_CHECK: a hung script is killed with its whole process group', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lvshc-'));
    try {
      const pidFile = join(dir, 'pids');
      const r = await createChecker({
        ...TIMING,
        kind: 'MISC_CHECK',
        argv: ['/bin/sh', '-c', `sleep 60 & echo $$ $! > ${pidFile}; wait`],
        timeoutMs: 300,
        dynamic: false,
        user: null,
        group: null,
      }).check({ timeoutMs: 300, signal: new AbortController().signal });
      assert.equal(r.code, 'PROCTOUT');
      const pids = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
      // SIGTERM went to the group at once; wait for both to be gone (bounded by the test's timeout).
      const gone = (pid: number) => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      };
      while (!pids.every(gone)) await new Promise((res) => setTimeout(res, 20));
      writeFileSync(join(dir, 'done'), '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('binds to bindto / bind_port and marks with fwmark where given', async (t) => {
    const net = await import('node:net');
    const seen: Array<{ address?: string; port?: number }> = [];
    const server = net.createServer((s) => {
      seen.push({ address: s.remoteAddress, port: s.remotePort });
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      const bindAddr = parseAddr('127.0.0.2')!;
      const check = (extra: Parameters<typeof target>[2]) =>
        createChecker({ ...TIMING, kind: 'TCP_CHECK', target: target(LOOPBACK, port, extra) }).check({
          timeoutMs: 1000,
          signal: new AbortController().signal,
        });
      assert.equal((await check({ bindAddr, bindPort: 0 })).code, 'L4OK');
      assert.equal(seen.at(-1)!.address, '127.0.0.2');
      if (!isRoot) return t.skip('SO_MARK needs CAP_NET_ADMIN');
      assert.equal((await check({ bindAddr, fwmark: 42 })).code, 'L4OK');
      assert.equal(seen.at(-1)!.address, '127.0.0.2');
      // The same over UDP, from a socket made with the mark and handed to node.
      const dgram = await import('node:dgram');
      const udp = dgram.createSocket('udp4');
      const from: string[] = [];
      udp.on('message', (m, rinfo) => {
        from.push(`${rinfo.address}:${rinfo.port}`);
        udp.send(m, rinfo.port, rinfo.address);
      });
      await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
      try {
        const r = await createChecker({
          ...TIMING,
          kind: 'DNS_CHECK',
          target: target(LOOPBACK, udp.address().port, {
            bindAddr,
            bindPort: 5300 + (process.pid % 1000),
            fwmark: 42,
          }),
          type: 'A',
          name: 'rs.lab',
        }).check({ timeoutMs: 1000, signal: new AbortController().signal });
        // The echo is a query, not a response: ignored until the deadline, but it came from the right place.
        assert.equal(r.code, 'L7TOUT');
        assert.deepEqual(from, [`127.0.0.2:${5300 + (process.pid % 1000)}`]);
      } finally {
        udp.close();
      }
    } finally {
      server.close();
    }
  });
});
