// The checkers and the monitor against real Debian servers on loopback: nginx over HTTP and TLS
// (a self-signed certificate made here with openssl) for HTTP_GET and SSL_GET, dnsmasq for
// DNS_CHECK, and hundreds of real servers checked with bounded concurrency and memory.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { HealthEvent } from '../../src/core/health/service.js';
import type { CheckerConfig, HttpUrl } from '../../src/health/config.js';
import { createChecker } from '../../src/health/index.js';
import { HealthMonitor, type MonitoredService } from '../../src/health/monitor.js';
import { LOOPBACK, Targets, isRoot, makeCertificate, target } from './targets.js';

const TIMING = {
  delayLoopMs: 200,
  connectTimeoutMs: 1000,
  retry: 1,
  delayBeforeRetryMs: 100,
  warmupMs: 0,
  alpha: false,
  logAllFailures: false,
};
const PAGE = 'real server page\n';
const md5 = (s: string) => createHash('md5').update(s).digest('hex');

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => resolve(true)).once('error', () => resolve(false));
      s.once('close', () => s.destroy());
    }).finally(() => undefined);
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** nginx in the foreground, with a plain and a TLS server, killed on stop. */
class Nginx {
  private child: ChildProcess | null = null;
  constructor(
    readonly dir: string,
    readonly httpPort: number,
    readonly httpsPort: number,
  ) {
    makeCertificate(dir);
    const locations = `
      location = / { default_type text/plain; return 200 "${PAGE.trim()}\\n"; }
      location = /broken { return 500; }
      location = /vhost { if ($host != "www.lab") { return 404; } return 200 "vhost\\n"; }
      location = /sni { if ($ssl_server_name != "www.lab") { return 421; } return 200 "sni\\n"; }`;
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1;
daemon off;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server { listen 127.0.0.1:${httpPort}; ${locations} }
  server {
    listen 127.0.0.1:${httpsPort} ssl;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ${locations}
  }
}
`,
    );
  }

  async start(): Promise<void> {
    this.child = spawn('nginx', ['-c', join(this.dir, 'nginx.conf'), '-p', this.dir], { stdio: 'ignore' });
    await waitForPort(this.httpPort);
    await waitForPort(this.httpsPort);
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null) return;
    await new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGTERM');
    });
  }
}

const haveNginx = existsSync('/usr/sbin/nginx');
const haveDnsmasq = existsSync('/usr/sbin/dnsmasq');

function url(path: string, extra: Partial<HttpUrl> = {}): HttpUrl {
  return { path, digest: null, statusCodes: [[200, 299]], virtualhost: null, ...extra };
}

function web(
  kind: 'HTTP_GET' | 'SSL_GET',
  port: number,
  urls: HttpUrl[],
  extra: Partial<CheckerConfig> = {},
): CheckerConfig {
  return {
    ...TIMING,
    kind,
    target: target(LOOPBACK, port),
    urls,
    virtualhost: null,
    httpProtocol: '1.0',
    enableSni: false,
    fastRecovery: false,
    ...extra,
  } as CheckerConfig;
}

const once = (config: CheckerConfig) =>
  createChecker(config).check({
    timeoutMs: createChecker(config).timeoutMs,
    signal: new AbortController().signal,
  });

describe(
  'HTTP_GET and SSL_GET against nginx',
  { skip: !haveNginx || !isRoot ? 'needs root and nginx' : false },
  () => {
    let dir: string;
    let nginx: Nginx;
    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lvshc-nginx-'));
      nginx = new Nginx(dir, await freePort(), await freePort());
      await nginx.start();
    });
    after(async () => {
      await nginx.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    for (const kind of ['HTTP_GET', 'SSL_GET'] as const) {
      const port = () => (kind === 'HTTP_GET' ? nginx.httpPort : nginx.httpsPort);
      it(`${kind}: status, digest and virtualhost, with every http_protocol`, async () => {
        for (const httpProtocol of ['1.0', '1.0C', '1.1'] as const) {
          const good = await once(web(kind, port(), [url('/', { digest: md5(PAGE) })], { httpProtocol }));
          assert.deepEqual([good.ok, good.code], [true, 'L7OK'], `${httpProtocol}: ${good.reason}`);
        }
        const wrong = await once(web(kind, port(), [url('/', { digest: md5('other') })]));
        assert.deepEqual([wrong.ok, wrong.code], [false, 'L7RSP']);
        const broken = await once(web(kind, port(), [url('/'), url('/broken')]));
        assert.deepEqual(
          [broken.ok, broken.code, broken.reason],
          [false, 'L7STS', '/broken: HTTP status 500'],
        );
        const accepted = await once(web(kind, port(), [url('/broken', { statusCodes: [[500, 503]] })]));
        assert.equal(accepted.ok, true);
        assert.equal((await once(web(kind, port(), [url('/vhost')]))).code, 'L7STS');
        assert.equal(
          (await once(web(kind, port(), [url('/vhost')], { virtualhost: 'www.lab' }))).code,
          'L7OK',
        );
        assert.equal(
          (await once(web(kind, port(), [url('/vhost', { virtualhost: 'www.lab' })]))).code,
          'L7OK',
        );
      });
    }

    it('SSL_GET sends the virtualhost as SNI only with enable_sni', async () => {
      const sni = (enableSni: boolean) =>
        once(web('SSL_GET', nginx.httpsPort, [url('/sni')], { virtualhost: 'www.lab', enableSni }));
      assert.deepEqual([(await sni(false)).code, (await sni(true)).code], ['L7STS', 'L7OK']);
    });

    it('SSL_GET to a server that does not speak TLS fails the handshake (L6)', async () => {
      const r = await once(web('SSL_GET', nginx.httpPort, [url('/')]));
      assert.equal(r.ok, false);
      assert.match(r.code, /^L6/);
    });

    it('the monitor takes a server whose nginx stops out, and back when it returns', async () => {
      const services: MonitoredService[] = [
        {
          id: 'vs',
          name: '[198.18.0.1]:tcp:443',
          quorum: 1,
          hysteresis: 0,
          sorry: { name: '[198.18.1.99]:tcp:443', weight: 1, inhibit: false },
          realServers: [
            {
              id: 'rs1',
              name: '[127.0.0.1]:tcp:443',
              weight: 3,
              inhibitOnFailure: true,
              checkers: [
                web('SSL_GET', nginx.httpsPort, [url('/', { digest: md5(PAGE) })]),
                web('HTTP_GET', nginx.httpPort, [url('/')]),
              ],
            },
          ],
        },
      ];
      const monitor = new HealthMonitor(services);
      const events: HealthEvent[] = [];
      const waitFor = (pred: (e: HealthEvent) => boolean) =>
        new Promise<void>((resolve) => {
          const check = (e: HealthEvent) => pred(e) && (monitor.off('event', check), resolve());
          monitor.on('event', check);
        });
      monitor.on('event', (e) => events.push(e));
      monitor.start();
      try {
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(events.length, 0, 'a healthy server stays as it started');
        const down = waitFor((e) => e.type === 'vs' && !e.up);
        await nginx.stop();
        await down;
        const up = waitFor((e) => e.type === 'vs' && e.up);
        await nginx.start();
        await up;
        const summary = events.map((e) =>
          e.type === 'rs'
            ? `${e.line}`
            : e.type === 'vs'
              ? e.line
              : `${e.type} ${e.type === 'weight' ? e.server : ''} ${e.weight}`,
        );
        // Quiesced (inhibit_on_failure), the sorry server swapped in, then everything back.
        assert.deepEqual(summary, [
          'RS [127.0.0.1]:tcp:443 [198.18.0.1]:tcp:443 DOWN',
          'weight rs1 0',
          'sorry  1',
          'VS [198.18.0.1]:tcp:443 DOWN',
          'RS [127.0.0.1]:tcp:443 [198.18.0.1]:tcp:443 UP',
          'sorry  null',
          'weight rs1 3',
          'VS [198.18.0.1]:tcp:443 UP',
        ]);
        const rsDown = events.find((e) => e.type === 'rs' && !e.up);
        assert.match(rsDown?.type === 'rs' ? rsDown.reason : '', /L4CON .*connection refused/);
      } finally {
        await monitor.stop();
      }
    });
  },
);

describe('DNS_CHECK against dnsmasq', { skip: !haveDnsmasq ? 'needs dnsmasq' : false }, () => {
  let child: ChildProcess;
  let port: number;
  before(async () => {
    const targets = await Targets.open();
    port = await targets.closedUdpPort();
    targets.close();
    child = spawn(
      'dnsmasq',
      [
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--user=root',
        '--pid-file',
        '--address=/rs.lab/198.18.1.11',
      ],
      { stdio: 'ignore' },
    );
    // Ready when it answers.
    for (;;) {
      const r = await once(dns('A', 'rs.lab'));
      if (r.ok) break;
      await new Promise((res) => setTimeout(res, 50));
    }
  });
  after(() => {
    child.kill('SIGTERM');
  });
  const dns = (type: 'A' | 'SOA' | 'MX', name: string): CheckerConfig => ({
    ...TIMING,
    kind: 'DNS_CHECK',
    target: target(LOOPBACK, port),
    type,
    name,
  });

  it('passes on an answer, fails on an error rcode, and on a stopped server', async () => {
    const good = await once(dns('A', 'rs.lab'));
    assert.deepEqual([good.ok, good.code], [true, 'L7OK']);
    // Without upstream servers, dnsmasq refuses what it does not know: a non-zero rcode is down.
    const refused = await once(dns('MX', 'elsewhere.example'));
    assert.deepEqual([refused.ok, refused.code], [false, 'L7STS']);
    assert.match(refused.reason, /rcode/);
    await new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGTERM');
    });
    const stopped = await once(dns('A', 'rs.lab'));
    assert.deepEqual([stopped.ok, stopped.code], [false, 'L4CON']);
  });
});

describe('hundreds of real servers', () => {
  it('are all checked with bounded concurrency and memory; the dead ones go down', async () => {
    const targets = await Targets.open();
    const live = await targets.stream('stalled', () => Buffer.alloc(0));
    const dead = await targets.closedTcpPort();
    let running = 0;
    let peak = 0;
    const services: MonitoredService[] = Array.from({ length: 4 }, (_, v) => ({
      id: `vs${v}`,
      name: `[198.18.0.${v + 1}]:tcp:80`,
      quorum: 1,
      hysteresis: 0,
      sorry: null,
      realServers: Array.from({ length: 100 }, (_, i) => ({
        id: `rs${i}`,
        name: `[198.18.${2 + v}.${i}]:tcp:80`,
        weight: 1,
        inhibitOnFailure: false,
        checkers: [
          { ...TIMING, warmupMs: 300, kind: 'TCP_CHECK', target: target(LOOPBACK, i % 2 ? dead : live) },
        ],
      })),
    }));
    const monitor = new HealthMonitor(services, {
      concurrency: 16,
      createChecker: (config) => {
        const checker = createChecker(config);
        return {
          ...checker,
          kind: checker.kind,
          timeoutMs: checker.timeoutMs,
          check: async (attempt) => {
            running++;
            peak = Math.max(peak, running);
            try {
              return await checker.check(attempt);
            } finally {
              running--;
            }
          },
        };
      },
    });
    const rssBefore = process.memoryUsage().rss;
    const downs = new Set<string>();
    const allDown = new Promise<void>((resolve) =>
      monitor.on('event', (e) => {
        if (e.type === 'rs' && !e.up) downs.add(`${e.service}/${e.server}`);
        if (downs.size === 200) resolve();
      }),
    );
    monitor.start();
    try {
      await allDown;
      assert.ok(peak <= 16, `peak ${peak}`);
      const status = monitor.status();
      assert.equal(status.length, 400);
      for (const s of status)
        assert.equal(s.alive, Number(s.server.slice(2)) % 2 === 0, `${s.service}/${s.server}`);
      assert.ok(process.memoryUsage().rss - rssBefore < 100 * 1024 * 1024, 'memory stays bounded');
    } finally {
      await monitor.stop();
      targets.close();
    }
  });
});
