// A restart that keeps connections, end to end: a rate-limited 20 MB download (curl, nginx) and a
// UDP flow (socat) run through lvsd; lvsd gets SIGTERM and a new lvsd starts on the same state
// directory, as `systemctl restart` does. The download completes byte for byte with no reset
// reaching the client, and both flows stay on their real servers. A stop with no start after it
// holds the VIP's traffic only for --restart-hold, and the next start leaves the host as found.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanupStaleLabs, type Lab } from '../../src/lab/lab.js';
import { hostState, Lvsd, nftCounters, ROOT_SKIP, setupLab, type Setup } from './harness.js';

const PREFIX = 'lvr11';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The output of a child run in the lab, once it has exited. */
function collect(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout, stderr }));
}

/** A UDP echo on port 7 that says, on each line, which real server answered. */
function udpEcho(lab: Lab, i: number): ChildProcess {
  const script = [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    "s.bind(('0.0.0.0', 7))",
    'while True:',
    '    data, peer = s.recvfrom(2048)',
    // Each line: socat may put two of the client's lines in one datagram when it starts late.
    `    s.sendto(b''.join(b'rs${i + 1}:' + line for line in data.splitlines(True)), peer)`,
  ].join('\n');
  return lab.spawn(lab.ns.realServers[i]!, ['python3', '-c', script], { stdio: 'ignore' });
}

/**
 * One keep-alive HTTP connection that asks for / every 100 ms for 14 s: the client talks during
 * the restart too. Prints which real server answered each request, or the error that ended it.
 */
function keepAlive(lab: Lab): ChildProcess {
  const script = [
    'import socket, time',
    `c = socket.create_connection(('${lab.addr.vip}', 80), timeout=10)`,
    'buf = b""',
    'try:',
    '    for i in range(140):',
    `        c.sendall(b'GET / HTTP/1.1\\r\\nHost: vip\\r\\n\\r\\n')`,
    '        while b"you are" not in buf or b"\\n" not in buf[buf.index(b"you are"):]:',
    '            data = c.recv(4096)',
    '            if not data: raise EOFError("closed by the server")',
    '            buf += data',
    '        end = buf.index(b"\\n", buf.index(b"you are")) + 1',
    '        print(buf[:end].split(b"This is ")[1].split(b",")[0].decode(), flush=True)',
    '        buf = buf[end:]',
    '        time.sleep(0.1)',
    'except Exception as e:',
    '    print("error", repr(e), flush=True)',
  ].join('\n');
  return lab.spawn(lab.ns.client, ['python3', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The restart hold's table in the director namespace, or null when there is none. */
function holdTable(lab: Lab): string | null {
  try {
    return lab.run(lab.ns.director, ['nft', 'list', 'table', 'inet', 'lvsd_hold']);
  } catch {
    return null;
  }
}

async function until(
  what: string,
  condition: () => boolean,
  timeoutMs = 15_000,
  detail = (): string => '',
): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(100)) if (condition()) return;
  throw new Error(`timed out waiting for ${what}\n${detail()}`);
}

describe(
  'lvsd restarted (SIGTERM, then a new lvsd) keeps connections',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    let s: Setup;
    let next: Lvsd | null = null;
    const echoes: ChildProcess[] = [];

    before(async () => {
      cleanupStaleLabs(PREFIX);
      s = await setupLab({ prefix: PREFIX, bulkFileMb: 20 });
      for (let i = 0; i < s.lab.ns.realServers.length; i++) echoes.push(udpEcho(s.lab, i));
    });
    after(async () => {
      for (const echo of echoes) echo.kill();
      try {
        await next?.stop();
      } finally {
        next?.kill();
        await s?.teardown();
      }
    });

    it('a 20 MB download and a UDP flow carry on through the restart, on the same real servers, with no reset', async (t) => {
      const { lab } = s;
      const { vip, client, realServers } = lab.addr;
      const first = s.director;
      first.adm(`-A -t ${vip}:80 -s rr`);
      first.adm(`-A -u ${vip}:7 -s rr`);
      for (const rs of realServers) {
        first.adm(`-a -t ${vip}:80 -r ${rs}:80 -m`);
        first.adm(`-a -u ${vip}:7 -r ${rs}:7 -m`);
      }
      const watch = 'lvr11watch';
      lab.run(lab.ns.client, ['nft', '-f', '-'], {
        input: `table inet ${watch} {
  chain in {
    type filter hook prerouting priority -300; policy accept;
    ip saddr ${vip} tcp flags & rst == rst counter comment "resets"
    ip saddr ${vip} icmp type destination-unreachable counter comment "unreachable"
  }
}
`,
      });

      // 20 MB at 2 MB/s: about ten seconds, the restart in the middle of it.
      const out = join(lab.tmpDir, 'download.bin');
      const download = collect(
        lab.spawn(
          lab.ns.client,
          [
            'curl',
            '-sS',
            '--max-time',
            '60',
            '--limit-rate',
            '2M',
            '-o',
            out,
            `http://${vip}/files/bulk.bin`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      );
      // The same file from a real server's own address, through the director but no flow of lvsd's,
      // paced by the server so that the client sends nothing between its bursts: the kernel passes
      // it, and the restart must not cut it.
      const directOut = join(lab.tmpDir, 'direct.bin');
      const direct = collect(
        lab.spawn(
          lab.ns.client,
          ['curl', '-sS', '--max-time', '60', '-o', directOut, `http://${realServers[0]}/slow/bulk.bin`],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      );
      // One UDP socket (one flow), a datagram every 100 ms for 14 s; socat stops on an ICMP error.
      const flow = collect(
        lab.spawn(
          lab.ns.client,
          [
            'sh',
            '-c',
            `for i in $(seq 1 140); do echo $i; sleep 0.1; done | socat -T 5 - UDP4:${vip}:7,sourceport=40007`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      );
      const requests = collect(keepAlive(lab));
      await until('the download to be under way', () => existsSync(out) && statSync(out).size > 3 << 20);
      const before = first.connections();
      // The download and the keep-alive connection; which is which, nginx's access log says later.
      const tcpBefore = before.filter((c) => c.proto === 'TCP' && c.state === 'ESTABLISHED');
      const udpBefore = before.find((c) => c.proto === 'UDP' && c.source === `${client}:40007`);
      assert.ok(tcpBefore.length === 2 && udpBefore, JSON.stringify(before));
      const sizeAtStop = statSync(out).size;

      assert.equal(await first.stop(), 0, first.log);
      assert.match(first.log, /holding the services' traffic for the next lvsd, 30 s at most/);
      assert.match(first.log, /saved [2-9]\d* connections to .*connections\.json/);
      assert.match(holdTable(lab) ?? '', /198\.18\.0\.1 \. tcp \. 80/, 'the gap is held');

      next = new Lvsd(lab);
      await next.ready();
      await until(
        'the take-over',
        () => /took over \d+ connections/.test(next!.log),
        15_000,
        () => next!.log,
      );
      const taken = Number(/took over (\d+) connections/.exec(next.log)![1]);
      assert.ok(taken >= 3, next.log);
      await until('the hold to end', () => holdTable(lab) === null);
      const after = next.connections();
      for (const conn of tcpBefore) {
        assert.ok(
          after.some((c) => c.source === conn.source && c.destination === conn.destination),
          `${conn.source} is on ${conn.destination} still: ${JSON.stringify(after)}`,
        );
      }
      assert.ok(
        after.some((c) => c.source === udpBefore.source && c.destination === udpBefore.destination),
        `the UDP flow is on ${udpBefore.destination} still`,
      );

      const done = await download;
      assert.equal(done.code, 0, `curl: ${done.stderr}`);
      assert.ok(statSync(out).size > sizeAtStop);
      const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
      assert.equal(sha(out), sha(lab.bulkFile!), 'the file arrived byte for byte');
      const directDone = await direct;
      assert.equal(directDone.code, 0, `curl from ${realServers[0]}: ${directDone.stderr}`);
      assert.equal(sha(directOut), sha(lab.bulkFile!), 'the direct download arrived byte for byte');
      const udp = await flow;
      assert.equal(udp.code, 0, `socat: ${udp.stderr}`);
      const replies = udp.stdout.split('\n').filter(Boolean);
      const udpServer = `rs${realServers.indexOf(udpBefore.destination.split(':')[0]!) + 1}`;
      assert.ok(
        replies.every((r) => r.startsWith(`${udpServer}:`)),
        replies.join(' '),
      );
      const last = Number(replies.at(-1)!.split(':')[1]);
      assert.ok(last >= 130, `replies carried on after the restart, up to datagram ${last} of 140`);

      const answers = (await requests).stdout.split('\n').filter(Boolean);
      assert.equal(
        answers.length,
        140,
        `every request on the keep-alive connection answered: ${answers.at(-1)}`,
      );
      assert.equal(
        new Set(answers).size,
        1,
        `all by the same real server: ${[...new Set(answers)].join(', ')}`,
      );
      const stamp = (log: string, pattern: RegExp) =>
        Date.parse(
          log
            .split('\n')
            .find((l) => pattern.test(l))!
            .split(' ')[0]!,
        );
      const gapMs = stamp(next.log, /took over/) - stamp(first.log, /SIGTERM received/);
      t.diagnostic(`SIGTERM to take-over: ${gapMs} ms; UDP replies: ${replies.length} of 140 datagrams`);
      const seen = nftCounters(lab, lab.ns.client, watch);
      assert.equal(seen.get('resets'), 0, 'no reset reached the client');
      assert.equal(seen.get('unreachable'), 0, 'no ICMP error either');
      const served = realServers.map((_, i) => lab.accessLog(i).filter((l) => l.includes('/files/bulk.bin')));
      const server = served.findIndex((lines) => lines.length > 0);
      assert.deepEqual(served[server], [`${client} /files/bulk.bin 200`]);
      assert.deepEqual(served[1 - server], [], 'the other real server never saw the download');
      // Each connection stayed where it was: the download's server and the keep-alive's are theirs.
      assert.deepEqual(
        [`${realServers[server]}:80`, `${realServers[Number(answers[0]!.split(' ')[2]) - 1]}:80`].sort(),
        tcpBefore.map((c) => c.destination).sort(),
      );
      lab.run(lab.ns.client, ['nft', 'delete', 'table', 'inet', watch]);
      next.adm('-C');
    });

    it('a stop with no start after it holds the VIP only for --restart-hold; the next start leaves the host as found', async () => {
      const { lab } = s;
      const { vip, realServers } = lab.addr;
      await next?.stop();
      const short = new Lvsd(lab, ['--restart-hold', '2']);
      try {
        await short.ready();
        short.adm(`-A -t ${vip}:80 -s rr`);
        short.adm(`-a -t ${vip}:80 -r ${realServers[0]}:80 -m`);
        assert.match(s.curl(`http://${vip}/`), /Real Server 1/);
        assert.equal(await short.stop(), 0);
      } finally {
        short.kill();
      }
      // Held, then the kernel lets the elements go: the host answers for itself again (a reset:
      // nothing listens on the director's own port 80).
      assert.match(holdTable(lab) ?? '', /elements/);
      await until('the hold to expire', () => !/elements/.test(holdTable(lab) ?? ''), 10_000);
      const refused = lab.run(lab.ns.client, [
        'sh',
        '-c',
        `curl -sS --max-time 5 http://${vip}/ 2>&1; echo " exit $?"`,
      ]);
      // Refused at once (curl's exit 7 within a few ms), not dropped until --max-time.
      assert.match(refused, /Failed to connect to .* after \d{1,3} ms.*\n exit 7/);

      next = new Lvsd(lab);
      await next.ready();
      await until('the next lvsd to end the hold', () => holdTable(lab) === null);
      assert.match(next.log, /took over [01] connections/);
      next.adm('-C');
      assert.equal(await next.stop(), 0);
      assert.equal(hostState(lab), s.stateBefore);
    });
  },
);
