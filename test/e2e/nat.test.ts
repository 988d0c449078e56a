// LVS-NAT through the real data plane in a namespace lab: curl and socat on the client, nginx
// and socat on the real servers, the director's worker + TUN + host plumbing in between.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { formatAddr } from '../../src/core/inet.js';
import { hostState, ROOT_SKIP, setupLab, type Setup } from './harness.js';

const VIP = '198.18.0.1';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';
const BULK_MB = 50;

/** Which real server answered each line of curl output. */
function servers(output: string): number[] {
  return [...output.matchAll(/This is Real Server (\d+), you are (\S+)/g)].map((m) => Number(m[1]));
}

function count(list: number[], n: number): number {
  return list.filter((x) => x === n).length;
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

describe('LVS-NAT end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  /** `n` fresh connections from the client, one request each. */
  const requests = (n: number, path = '/'): number[] => {
    const urls = Array.from({ length: n }, () => `http://${VIP}${path}`);
    return servers(s.curl(urls[0]!, ['-H', 'Connection: close', ...urls.slice(1)]));
  };
  /** A request held open for `holdMs` before it is completed; resolves to what came back. */
  const heldRequest = (holdMs: number): { done: Promise<string> } => {
    const script =
      `(printf 'GET / HTTP/1.1\\r\\nHost: vip\\r\\n'; sleep ${holdMs / 1000}; ` +
      `printf 'Connection: close\\r\\n\\r\\n'; sleep 1) | socat -t 3 - TCP:${VIP}:80`;
    const child = s.lab.spawn(s.lab.ns.client, ['sh', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    return { done: once(child, 'exit').then(() => out) };
  };
  /** The real server of the one ESTABLISHED connection in the table. */
  const establishedServer = async (): Promise<string> => {
    for (let i = 0; i < 50; i++) {
      const conns = (await s.director.snapshot(true)).connections ?? [];
      const open = conns.filter((c) => c.state === 'ESTABLISHED');
      if (open.length === 1) return formatAddr(open[0]!.daddr);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('no single ESTABLISHED connection');
  };

  before(async () => {
    s = await setupLab({ bulkFileMb: BULK_MB });
  });
  after(async () => {
    await s?.teardown();
  });
  afterEach(async () => {
    if (!s.director.closed) await s.director.adm('-C');
  });

  it('rr alternates and the real servers see the client address', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
    const out = s.curl(`http://${VIP}/`, [
      '-H',
      'Connection: close',
      `http://${VIP}/`,
      `http://${VIP}/`,
      `http://${VIP}/`,
    ]);
    const seen = servers(out);
    assert.equal(seen.length, 4, out);
    assert.notEqual(seen[0], seen[1]);
    assert.deepEqual(seen.slice(2), seen.slice(0, 2));
    assert.ok(
      [...out.matchAll(/you are (\S+)/g)].every((m) => m[1] === s.lab.addr.client),
      out,
    );
    for (const i of [0, 1])
      assert.ok(s.lab.accessLog(i).some((line) => line.startsWith(`${s.lab.addr.client} / 200`)));
  });

  it('wrr 3:1 over 300 connections, and --stats count them', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s wrr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m -w 3`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m -w 1`);
    const seen = requests(300);
    assert.equal(seen.length, 300);
    assert.equal(count(seen, 1), 225);
    assert.equal(count(seen, 2), 75);
    const [svc] = (await s.director.snapshot()).services;
    assert.equal(svc!.stats.conns, 300);
    // Each connection is at least SYN, ACK, request, FIN, ACK from the client (GSO may merge none here).
    assert.ok(svc!.stats.inPkts >= 300 * 4, JSON.stringify(svc!.stats));
    assert.ok(svc!.stats.outPkts >= 300 * 3);
    // The request alone is ~70 bytes of payload plus 40+ bytes of headers per packet.
    assert.ok(svc!.stats.inBytes >= 300 * (70 + 4 * 40));
    assert.ok(svc!.stats.outBytes > svc!.stats.inBytes, 'responses are larger than requests');
    const byDest = new Map(svc!.dests.map((d) => [formatAddr(d.addr), d.stats.conns]));
    assert.deepEqual(
      byDest,
      new Map([
        [RS1, 225],
        [RS2, 75],
      ]),
    );
  });

  it('-p keeps a client on one real server', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr -p 60`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
    const seen = requests(20);
    assert.equal(seen.length, 20);
    assert.equal(new Set(seen).size, 1);
    const conns = (await s.director.snapshot(true)).connections ?? [];
    assert.ok(
      conns.some((c) => c.template),
      'a persistence template is listed',
    );
  });

  it('weight 0 takes no new connections while an open one continues; -Lnc shows it ESTABLISHED', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
    const held = heldRequest(1500);
    const quiesced = await establishedServer();
    await s.director.adm(`-e -t ${VIP}:80 -r ${quiesced}:80 -m -w 0`);
    const other = quiesced === RS1 ? 2 : 1;
    assert.deepEqual(requests(6), [other, other, other, other, other, other]);
    const answer = await held.done;
    assert.match(answer, new RegExp(`This is Real Server ${other === 1 ? 2 : 1},`));
  });

  it('-d ends the connections of the deleted real server', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
    const held = heldRequest(1500);
    const deleted = await establishedServer();
    await s.director.adm(`-d -t ${VIP}:80 -r ${deleted}:80`);
    const remaining = deleted === RS1 ? 2 : 1;
    assert.deepEqual(requests(3), [remaining, remaining, remaining]);
    assert.doesNotMatch(await held.done, /This is Real Server/);
  });

  it('-e weight change applies to new connections', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s wrr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m -w 1`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m -w 1`);
    const before = requests(20);
    assert.equal(count(before, 1), 10);
    await s.director.adm(`-e -t ${VIP}:80 -r ${RS2}:80 -m -w 4`);
    const afterEdit = requests(50);
    assert.equal(count(afterEdit, 2), 40);
    assert.equal(count(afterEdit, 1), 10);
  });

  it('the director itself still reaches a real server port directly (as a health check does)', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    const direct = s.lab.run(s.lab.ns.director, ['curl', '-sS', '--max-time', '5', `http://${RS1}/`]);
    assert.match(direct, /This is Real Server 1, you are 198\.18\.1\.1$/m);
  });

  it('other ports of the VIP (the director own address) still reach the director; local clients go through', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    const listener = s.lab.spawn(s.lab.ns.director, [
      'socat',
      'TCP-LISTEN:2222,reuseaddr,fork',
      'SYSTEM:echo director-here',
    ]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const reply = s.lab.run(s.lab.ns.client, ['socat', '-t', '2', '-', `TCP:${VIP}:2222`], { input: '' });
      assert.equal(reply.trim(), 'director-here');
      // curl on the director itself, to its own address: the output hook steers it too.
      const local = s.lab.run(s.lab.ns.director, ['curl', '-sS', '--max-time', '5', `http://${VIP}/`]);
      assert.match(local, /This is Real Server 1, you are 198\.18\.0\.1/);
      assert.equal(servers(s.curl(`http://${VIP}/`))[0], 1);
    } finally {
      listener.kill();
    }
  });

  it(`a ${BULK_MB} MB download and upload arrive intact`, async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-A -t ${VIP}:9000 -s rr`);
    await s.director.adm(`-a -t ${VIP}:9000 -r ${RS2}:9000 -m`);
    const sink = s.lab.spawn(s.lab.ns.realServers[1]!, [
      'socat',
      '-t',
      '10',
      'TCP-LISTEN:9000,reuseaddr,fork',
      'EXEC:sha256sum',
    ]);
    try {
      const expected = sha256(readFileSync(s.lab.bulkFile!));
      const downloaded = s.lab.run(
        s.lab.ns.client,
        ['sh', '-c', `curl -sS --max-time 60 http://${VIP}/files/bulk.bin | sha256sum`],
        {
          timeoutMs: 70_000,
        },
      );
      assert.equal(downloaded.split(' ')[0], expected);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const upload = `socat -t 30 -T 60 - TCP:${VIP}:9000 < ${s.lab.bulkFile!}`;
      const uploaded = s.lab.run(s.lab.ns.client, ['sh', '-c', upload], {
        timeoutMs: 70_000,
      });
      assert.equal(uploaded.split(' ')[0], expected);
    } finally {
      sink.kill();
    }
  });

  it('many concurrent connections (wrk, 5 s)', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s wlc`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
    const logged = [0, 1].map((i) => s.lab.accessLog(i).length);
    const out = s.lab.run(
      s.lab.ns.client,
      [
        'wrk',
        '-t',
        '2',
        '-c',
        '200',
        '-d',
        '5s',
        '--timeout',
        '3s',
        '-H',
        'Connection: close',
        `http://${VIP}/`,
      ],
      { timeoutMs: 30_000 },
    );
    const total = Number(/(\d+) requests in/.exec(out)?.[1]);
    assert.ok(total > 1000, out);
    assert.doesNotMatch(out, /Non-2xx/, out);
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const errorCount = errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
    assert.ok(errorCount <= total / 100, out);
    // Every request wrk counted reached a real server, each of them a good share.
    const served = [0, 1].map((i) => s.lab.accessLog(i).length - logged[i]!);
    assert.ok(served[0]! + served[1]! >= total, `${served} served for ${total}`);
    assert.ok(
      served.every((n) => n > total / 4),
      `${served}`,
    );
    const [svc] = (await s.director.snapshot()).services;
    // Client ports come round again within the test and the director reuses their entries, so
    // fewer connections than requests are counted; never more than were made.
    assert.ok(
      svc!.stats.conns > 0 && svc!.stats.conns <= total + 200,
      `${svc!.stats.conns} conns for ${total}`,
    );
    assert.ok(svc!.stats.inPkts >= total * 4);
  });

  it('a UDP service echoes datagrams, one larger than the MTU included', async () => {
    await s.director.adm(`-A -u ${VIP}:7 -s rr`);
    await s.director.adm(`-a -u ${VIP}:7 -r ${RS1}:7 -m`);
    const echo = s.lab.spawn(s.lab.ns.realServers[0]!, ['socat', 'UDP4-RECVFROM:7,fork', 'PIPE']);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const size of [32, 1400, 4000]) {
        const payload = Buffer.alloc(size, `datagram-${size}-`);
        const back = s.lab.run(s.lab.ns.client, ['socat', '-T', '2', '-b', '65536', '-', `UDP:${VIP}:7`], {
          input: payload,
          timeoutMs: 5000,
        });
        assert.equal(back.length, size, `echo of ${size} bytes`);
        assert.equal(back, payload.toString());
      }
      const conns = (await s.director.snapshot(true)).connections ?? [];
      assert.ok(conns.some((c) => c.state === 'UDP' && c.vport === 7 && formatAddr(c.daddr) === RS1));
    } finally {
      echo.kill();
    }
  });

  it('stopping the data plane removes every rule, route, set and sysctl it added', async () => {
    await s.director.adm(`-A -t ${VIP}:80 -s rr`);
    await s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    await s.director.adm(`-A -u 198.18.0.77:53 -s rr`);
    await s.director.adm(`-a -u 198.18.0.77:53 -r ${RS2}:53 -m`);
    assert.notEqual(hostState(s.lab), s.stateBefore);
    await s.director.close();
    assert.equal(hostState(s.lab), s.stateBefore);
  });
});
