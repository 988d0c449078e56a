// lvsd run from a keepalived.conf against real servers that fail as they do in production: a link
// that goes down (checks time out, nothing refuses), a page that answers 500, a TLS handshake that
// fails (SSL_GET against nginx with TLS), and a virtual server that loses its quorum to its sorry
// server and gets it back through the hysteresis. Each time, once the documented detection time
// has passed, no new client connection reaches the failed server (its access log and the answers
// say so), every client request is answered, and the server comes back after it recovers; each
// change is a line in keepalived's format on the lvs_notify_fifo.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createReadStream, writeFileSync, type ReadStream } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nginxCommand, nginxConfig } from '../../src/lab/lab.js';
import { makeCertificate } from '../health/targets.js';
import { pageChecker, ROOT_SKIP, setupLab, type Setup } from './harness.js';

const VIP = '198.18.0.1';
const [RS1, RS2, RS3] = ['198.18.1.11', '198.18.1.12', '198.18.1.13'];
const CLIENT = '198.18.0.2';
/**
 * Generous bounds on the documented detection time: delay_loop + (retry + 1) * connect_timeout
 * + retry * delay_before_retry is 1 + 1 = 2 s here (docs/keepalived.md).
 */
const DETECTION_BOUND_MS = 15_000;

const realServer = (addr: string, port: number, weight: number, kind: 'HTTP_GET' | 'SSL_GET') => `
    real_server ${addr} ${port} {
        weight ${weight}
        ${pageChecker(kind)}
    }`;

/** A virtual server on the VIP's `port`: rr, checked every second, both web servers on `rsPort`. */
const virtualServer = (
  port: number,
  rsPort: number,
  weight: number,
  kind: 'HTTP_GET' | 'SSL_GET',
  extra = '',
) =>
  `virtual_server ${VIP} ${port} {
    delay_loop 1
    lb_algo rr
    protocol TCP
${extra}${realServer(RS1, rsPort, weight, kind)}
${realServer(RS2, rsPort, weight, kind)}
}`;

/**
 * Port 80: HTTP_GET of both servers. Port 443: SSL_GET of their TLS servers. Port 8080: the same
 * web servers at weight 2 each, quorum 3 with hysteresis 1 (lost below 2, regained at 4), and the
 * third server as sorry server.
 */
const keepalivedConf = (fifo: string) => `! lvsd e2e: failures a checker must see
global_defs {
    lvs_notify_fifo ${fifo}
}
${virtualServer(80, 80, 1, 'HTTP_GET')}
${virtualServer(443, 443, 1, 'SSL_GET')}
${virtualServer(8080, 80, 2, 'HTTP_GET', `    quorum 3\n    hysteresis 1\n    sorry_server ${RS3} 80\n`)}
`;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Which real server answered each request, from the pages' "This is Real Server N". */
function answeredBy(output: string): number[] {
  return [...output.matchAll(/This is Real Server (\d+)/g)].map((m) => Number(m[1]));
}

describe(
  'lvsd health checks against failing real servers (root, netns)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    let s: Setup;
    let fifoPath = '';
    /** What lvsd wrote to its lvs_notify_fifo so far, read as a notify_fifo_script would. */
    let fifoText = '';
    let fifoReader: ReadStream | null = null;
    /** `n` requests to the VIP's `port` (https on 443), one connection each; who answered each. */
    const requests = (port: number, n: number): number[] => {
      const url = port === 443 ? `https://${VIP}/` : `http://${VIP}:${port}/`;
      const urls = Array.from({ length: n }, () => url);
      return answeredBy(s.curl(url, ['-k', '-H', 'Connection: close', ...urls.slice(1)]));
    };
    /** `-Ln`'s real servers of the VIP's `port`, as "addr:port weight", sorted. */
    const listed = (port: number): string[] =>
      s.director
        .list()
        .filter((svc) => svc.service === `TCP ${VIP}:${port}`)
        .flatMap((svc) => svc.dests.map((d) => `${d.dest} ${d.weight}`))
        .sort();
    /** Waits, at most the detection bound, until `-Ln` lists exactly `expected` for the port. */
    const listedBecomes = async (port: number, expected: string[]): Promise<void> => {
      let last: string[] = [];
      for (const end = Date.now() + DETECTION_BOUND_MS; Date.now() < end; await sleep(100)) {
        last = listed(port);
        if (JSON.stringify(last) === JSON.stringify([...expected].sort())) return;
      }
      assert.deepEqual(last, [...expected].sort(), `-Ln of :${port} within ${DETECTION_BOUND_MS} ms`);
    };
    /** Waits (bounded) until the FIFO's reader has read lines matching `pattern`. */
    const fifoSays = async (pattern: RegExp): Promise<void> => {
      for (const end = Date.now() + DETECTION_BOUND_MS; Date.now() < end; await sleep(50))
        if (pattern.test(fifoText)) return;
      assert.match(fifoText, pattern, `the lvs_notify_fifo lines; lvsd's log:\n${s.director.log}`);
    };
    /** Requests from the client (not the checker) in real server i's access log. */
    const clientHits = (i: number): number =>
      s.lab.accessLog(i).filter((l) => l.startsWith(`${CLIENT} `)).length;
    const dir = (i: number) => join(s.lab.tmpDir, `rs${i + 1}`);
    /** Real server i's nginx: its page on 80 (200 or 500) and on 443 a TLS server, or a plain one. */
    const configure = (i: number, page: 200 | 500, tls: boolean): void => {
      const d = dir(i);
      const https = tls
        ? `  server {
    listen 443 ssl;
    ssl_certificate ${d}/cert.pem;
    ssl_certificate_key ${d}/key.pem;
    location = / { default_type text/plain; return 200 "This is Real Server ${i + 1} over TLS\\n"; }
  }
`
        : `  server { listen 443; return 200 "no TLS here\\n"; }
`;
      const conf = nginxConfig(d, `Real Server ${i + 1}`, '80', https);
      writeFileSync(join(d, 'nginx.conf'), page === 200 ? conf : conf.replace('return 200', 'return 500'));
    };
    const nginx = (i: number, ...signal: string[]) =>
      s.lab.run(s.lab.ns.realServers[i]!, [...nginxCommand(dir(i)), ...signal]);

    before(async () => {
      s = await setupLab({
        prefix: 'lvh10',
        realServers: 3,
        lvsdArgs: (lab) => {
          for (const i of [0, 1]) makeCertificate(join(lab.tmpDir, `rs${i + 1}`));
          const path = join(lab.tmpDir, 'keepalived.conf');
          fifoPath = join(lab.tmpDir, 'lvs.fifo');
          writeFileSync(path, keepalivedConf(fifoPath));
          return ['--keepalived-conf', path, '--expire-nodest-conn', '1'];
        },
      });
      fifoReader = createReadStream(fifoPath, { encoding: 'utf8' });
      fifoReader.on('data', (chunk) => (fifoText += chunk as string));
      // The lab started nginx without TLS: the first SSL_GET checks fail, allUp() waits them out.
      for (const i of [0, 1]) {
        configure(i, 200, true);
        nginx(i, '-s', 'reload');
      }
    });
    after(async () => {
      fifoReader?.destroy();
      await s?.teardown();
    });

    const allUp = async () => {
      await listedBecomes(80, [`${RS1}:80 1`, `${RS2}:80 1`]);
      await listedBecomes(443, [`${RS1}:443 1`, `${RS2}:443 1`]);
      await listedBecomes(8080, [`${RS1}:80 2`, `${RS2}:80 2`]);
    };

    it('serves every port from both real servers once their checks pass', async () => {
      await allUp();
      assert.deepEqual([...new Set(requests(80, 6))].sort(), [1, 2]);
      assert.deepEqual([...new Set(requests(443, 6))].sort(), [1, 2]);
      assert.deepEqual([...new Set(requests(8080, 6))].sort(), [1, 2]);
    });

    it('a link that goes down (checks time out): no new connection reaches the server until it is back', async () => {
      s.lab.run(s.lab.ns.director, ['ip', 'link', 'set', 'rs1', 'down']);
      await listedBecomes(80, [`${RS2}:80 1`]);
      await listedBecomes(443, [`${RS2}:443 1`]);
      const reason = (JSON.parse(s.director.adm('-L --json')) as Listing).services
        .find((svc) => svc.port === 80)!
        .realServers.find((d) => d.address === RS1)!.checks!.lastChange!.reason;
      assert.match(reason, /^HTTP_GET .*(time|within)/i, 'a timeout, not a refusal');
      assert.deepEqual(requests(80, 10), Array(10).fill(2), 'every request answered, by the live server');
      assert.deepEqual(requests(443, 10), Array(10).fill(2));
      // Quorum 3 - hysteresis 1 = 2 is still met by the other server's weight 2: no sorry server.
      await listedBecomes(8080, [`${RS2}:80 2`]);
      assert.deepEqual(requests(8080, 4), Array(4).fill(2));

      s.lab.run(s.lab.ns.director, ['ip', 'link', 'set', 'rs1', 'up']);
      await allUp();
      // Its DOWN line, then its UP line.
      await fifoSays(
        new RegExp(
          `^RS \\[${RS1}\\]:tcp:80 \\[${VIP}\\]:tcp:80 DOWN\n(.*\n)*RS \\[${RS1}\\]:tcp:80 \\[${VIP}\\]:tcp:80 UP$`,
          'm',
        ),
      );
      assert.deepEqual([...new Set(requests(80, 6))].sort(), [1, 2]);
    });

    it('a page that answers 500: taken out, no client request reaches it, back once it answers 200', async () => {
      configure(1, 500, true);
      nginx(1, '-s', 'reload');
      await listedBecomes(80, [`${RS1}:80 1`]);
      const hitsBefore = clientHits(1);
      assert.deepEqual(
        requests(80, 10),
        Array(10).fill(1),
        'every request answered 200, by the other server',
      );
      assert.equal(clientHits(1), hitsBefore, 'no client request reached the failed server');
      // Its TLS server still passes SSL_GET: only the checks that fail take it out.
      assert.deepEqual(listed(443), [`${RS1}:443 1`, `${RS2}:443 1`]);

      configure(1, 200, true);
      nginx(1, '-s', 'reload');
      await allUp();
      assert.deepEqual([...new Set(requests(80, 6))].sort(), [1, 2]);
    });

    it('a TLS handshake that fails: SSL_GET takes the server out of :443 only, and back once TLS works', async () => {
      configure(0, 200, false);
      nginx(0, '-s', 'reload');
      await listedBecomes(443, [`${RS2}:443 1`]);
      assert.deepEqual(requests(443, 10), Array(10).fill(2), 'every TLS client served, by the other server');
      assert.deepEqual(listed(80), [`${RS1}:80 1`, `${RS2}:80 1`]);

      configure(0, 200, true);
      nginx(0, '-s', 'reload');
      await allUp();
      assert.deepEqual([...new Set(requests(443, 6))].sort(), [1, 2]);
    });

    it('with --expire-nodest-conn 1, a connection held open to a server that fails its check ends with the failure', async () => {
      // Half a request now, the rest once the server has failed: with expire_nodest_conn 0 the
      // old nginx worker would still answer it (its connection draining), with 1 it must not.
      const client = s.lab.spawn(s.lab.ns.client, ['socat', '-t', '3', '-', `TCP:${VIP}:80`], {
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      let answer = '';
      client.stdout!.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
      const exited = once(client, 'exit');
      client.stdin!.write('GET / HTTP/1.1\r\nHost: vip\r\n');
      let held = '';
      for (const end = Date.now() + 5000; Date.now() < end && !held; await sleep(50))
        held =
          s.director.connections().find((c) => c.state === 'ESTABLISHED' && c.virtual === `${VIP}:80`)
            ?.destination ?? '';
      assert.ok(held, 'the held connection is established');
      const failing = held.startsWith(RS1) ? 0 : 1;
      const other = failing === 0 ? RS2 : RS1;
      configure(failing, 500, true);
      nginx(failing, '-s', 'reload');
      await listedBecomes(80, [`${other}:80 1`]);
      assert.deepEqual(
        // Its service's only: the :8080 service's entries on the same server are not its.
        s.director.connections().filter((c) => c.virtual === `${VIP}:80` && c.destination === held),
        [],
        'its connection ended with the failure',
      );
      client.stdin!.end('Connection: close\r\n\r\n');
      await exited;
      assert.equal(answer, '', 'the rest of the request never reached the failed server');

      configure(failing, 200, true);
      nginx(failing, '-s', 'reload');
      await allUp();
    });

    it('quorum lost switches :8080 to the sorry server; the hysteresis holds it until quorum + 1 is back', async () => {
      nginx(0, '-s', 'stop');
      nginx(1, '-s', 'stop');
      await listedBecomes(8080, [`${RS3}:80 1`]);
      assert.deepEqual(requests(8080, 6), Array(6).fill(3), 'the sorry server answers everything');
      await fifoSays(new RegExp(`^VS \\[${VIP}\\]:tcp:8080 DOWN$`, 'm'));

      // One server back: weight 2 < quorum 3 + hysteresis 1, the sorry server stays.
      nginx(0);
      await listedBecomes(80, [`${RS1}:80 1`]);
      await aliveIn8080(RS1);
      assert.deepEqual(listed(8080), [`${RS3}:80 1`]);
      assert.deepEqual(requests(8080, 6), Array(6).fill(3));

      nginx(1);
      await listedBecomes(8080, [`${RS1}:80 2`, `${RS2}:80 2`]);
      assert.deepEqual(
        [...new Set(requests(8080, 6))].sort(),
        [1, 2],
        'the real servers again, not the sorry one',
      );
      await fifoSays(new RegExp(`^VS \\[${VIP}\\]:tcp:8080 DOWN\n(.*\n)*VS \\[${VIP}\\]:tcp:8080 UP$`, 'm'));
    });

    /** Waits until :8080's checks find `addr` alive (in sorry mode it stays out of -Ln). */
    async function aliveIn8080(addr: string): Promise<void> {
      for (const end = Date.now() + DETECTION_BOUND_MS; Date.now() < end; await sleep(100)) {
        const listing = JSON.parse(s.director.adm('-L --json')) as Listing;
        const rs = listing.services
          .find((svc) => svc.port === 8080)
          ?.realServers.find((d) => d.address === addr);
        if (rs?.checks?.alive) return;
      }
      assert.fail(`${addr} not found alive on :8080 within ${DETECTION_BOUND_MS} ms`);
    }
  },
);

interface Listing {
  services: Array<{
    port: number;
    realServers: Array<{
      address: string;
      checks?: { alive: boolean; lastChange: { up: boolean; reason: string } | null };
    }>;
  }>;
}
