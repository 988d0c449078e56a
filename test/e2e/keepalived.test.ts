// lvsd run from a keepalived.conf in a namespace lab: HTTP_GET checks of two real nginx, a real
// server whose nginx stops leaves the scheduling and comes back when it starts again, lvsadm's
// drain keeps an open connection and takes no new ones, and SIGHUP reloads a changed weight
// (a broken file changes nothing).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nginxCommand } from '../../src/lab/lab.js';
import { pageChecker, ROOT_SKIP, setupLab, type Setup } from './harness.js';

const VIP = '198.18.0.1';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';
/** Generous bounds on what is documented as delay_loop + connect_timeout (2 s here). */
const DETECTION_BOUND_MS = 15_000;

function keepalivedConf(weights: [number, number]): string {
  const realServer = (addr: string, weight: number) => `
    real_server ${addr} 80 {
        weight ${weight}
        ${pageChecker('HTTP_GET')}
    }`;
  return `! lvsd e2e: two nginx checked with HTTP_GET
global_defs {
    router_id lvsd_e2e
}
virtual_server ${VIP} 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
${realServer(RS1, weights[0])}
${realServer(RS2, weights[1])}
}
`;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Which real server answered each line of curl output. */
function servers(output: string): number[] {
  return [...output.matchAll(/This is Real Server (\d+), you are (\S+)/g)].map((m) => Number(m[1]));
}

describe('lvsd --keepalived-conf end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  let confPath = '';
  const requests = (n: number): number[] => {
    const urls = Array.from({ length: n }, () => `http://${VIP}/`);
    return servers(s.curl(urls[0]!, ['-H', 'Connection: close', ...urls.slice(1)]));
  };
  /** `-Ln`'s real servers of the one service, as "addr:port weight". */
  const listed = (): string[] =>
    s.director.list().flatMap((svc) => svc.dests.map((d) => `${d.dest} ${d.weight}`));
  /** Waits (bounded) until `-Ln` lists exactly `expected`. */
  const listedBecomes = async (expected: string[]): Promise<void> => {
    let last: string[] = [];
    for (const end = Date.now() + DETECTION_BOUND_MS; Date.now() < end; await sleep(100)) {
      last = listed().sort();
      if (JSON.stringify(last) === JSON.stringify([...expected].sort())) return;
    }
    assert.deepEqual(last, [...expected].sort(), `-Ln within ${DETECTION_BOUND_MS} ms\n${s.director.log}`);
  };
  const nginx = (i: number, extra: string[] = []) =>
    s.lab.run(s.lab.ns.realServers[i]!, [...nginxCommand(join(s.lab.tmpDir, `rs${i + 1}`)), ...extra]);

  before(async () => {
    s = await setupLab({
      prefix: 'lvsw10',
      lvsdArgs: (lab) => {
        confPath = join(lab.tmpDir, 'keepalived.conf');
        writeFileSync(confPath, keepalivedConf([1, 1]));
        return ['--keepalived-conf', confPath];
      },
    });
  });
  after(async () => {
    await s?.teardown();
  });

  it('runs the file: both real servers listed and serving', async () => {
    await listedBecomes([`${RS1}:80 1`, `${RS2}:80 1`]);
    const answered = requests(10);
    assert.equal(answered.length, 10);
    assert.deepEqual([...new Set(answered)].sort(), [1, 2]);
  });

  it('refuses configuration changes through lvsadm: the file owns them', () => {
    assert.throws(
      () => s.director.adm(`-a -t ${VIP}:80 -r 198.18.1.13:80 -m`),
      /the configuration comes from .*keepalived\.conf/,
    );
    assert.deepEqual(listed().sort(), [`${RS1}:80 1`, `${RS2}:80 1`]);
  });

  it('takes a real server whose nginx stopped out of scheduling, and back when it starts', async () => {
    nginx(0, ['-s', 'stop']);
    await listedBecomes([`${RS2}:80 1`]);
    const during = requests(10);
    assert.deepEqual(during, Array(10).fill(2), 'every request answered, by the live server');
    const listing = JSON.parse(s.director.adm('-L --json')) as {
      services: Array<{
        realServers: Array<{
          address: string;
          scheduled: boolean;
          health: string;
          checks?: { lastChange: { up: boolean; reason: string; time: string } | null };
        }>;
      }>;
    };
    const stopped = listing.services[0]!.realServers.find((d) => d.address === RS1)!;
    assert.equal(stopped.scheduled, false);
    assert.equal(stopped.health, 'down');
    assert.equal(stopped.checks?.lastChange?.up, false);
    assert.match(stopped.checks?.lastChange?.reason ?? '', /^HTTP_GET /);
    assert.ok(!Number.isNaN(Date.parse(stopped.checks?.lastChange?.time ?? '')));
    nginx(0);
    await listedBecomes([`${RS1}:80 1`, `${RS2}:80 1`]);
    assert.deepEqual([...new Set(requests(10))].sort(), [1, 2]);
  });

  it('lvsadm --drain keeps an open connection and sends no new ones there', async () => {
    // A request held open, then completed after the drain.
    const script =
      `(printf 'GET / HTTP/1.1\\r\\nHost: vip\\r\\n'; sleep 3; ` +
      `printf 'Connection: close\\r\\n\\r\\n'; sleep 1) | socat -t 3 - TCP:${VIP}:80`;
    const child = s.lab.spawn(s.lab.ns.client, ['sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const exited = once(child, 'exit');
    let held = '';
    for (const end = Date.now() + 2500; Date.now() < end && !held; await sleep(50)) {
      const open = s.director.connections().filter((c) => c.state === 'ESTABLISHED');
      if (open.length === 1) held = open[0]!.destination;
    }
    assert.ok(held, 'the held connection is established');
    const drained = JSON.parse(s.director.adm(`--drain -t ${VIP}:80 -r ${held} --json`)) as {
      services: Array<{ realServers: Array<{ admin: string; weight: number; configuredWeight: number }> }>;
    };
    assert.deepEqual(
      drained.services.flatMap((svc) => svc.realServers.map((d) => [d.admin, d.weight, d.configuredWeight])),
      [['drain', 0, 1]],
    );
    const other = held.startsWith(RS1) ? 2 : 1;
    assert.deepEqual(requests(10), Array(10).fill(other), 'new connections go to the other server');
    await exited;
    assert.match(out, /HTTP\/1\.1 200 OK[\s\S]*This is Real Server/, 'the held request completed');
    s.director.adm(`--ready -t ${VIP}:80 -r ${held}`);
    assert.deepEqual([...new Set(requests(10))].sort(), [1, 2]);
  });

  it('reloads a changed weight on SIGHUP, keeping an operator drain; a broken file changes nothing', async () => {
    s.director.adm(`--drain -t ${VIP}:80 -r ${RS2}:80`);
    writeFileSync(confPath, keepalivedConf([3, 1]));
    s.director.reload();
    await listedBecomes([`${RS1}:80 3`, `${RS2}:80 0`]);

    writeFileSync(confPath, keepalivedConf([5, 1]).replace('lb_algo rr', 'lb_algo rr {'));
    s.director.reload();
    for (const end = Date.now() + DETECTION_BOUND_MS; Date.now() < end; await sleep(100))
      if (/reload of .*keepalived\.conf refused/.test(s.director.log)) break;
    assert.match(s.director.log, /reload of .*keepalived\.conf refused: nothing was changed/);
    assert.deepEqual(listed().sort(), [`${RS1}:80 3`, `${RS2}:80 0`]);

    s.director.adm(`--ready -t ${VIP}:80 -r ${RS2}:80`);
    assert.deepEqual(listed().sort(), [`${RS1}:80 3`, `${RS2}:80 1`]);
  });
});
