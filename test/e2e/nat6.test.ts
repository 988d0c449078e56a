// LVS-NAT over IPv6 through the real daemon in a dual-stack namespace lab: curl -6 and socat on
// the client, nginx on [::]:80 and socat on the real servers (their IPv6 default gateway the
// director's internal address), lvsd in between, configured with lvsadm's [address]:port.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import type { LabAddresses } from '../../src/lab/lab.js';
import { until } from '../../src/lab/lab.js';
import { hostState, ROOT_SKIP, setupLab, udpProbe, type ServiceStats, type Setup } from './harness.js';

const BULK_MB = 20;
/** A VIP that is no address of the director: it answers neighbour discovery for it (proxy NDP). */
const FOREIGN_VIP = '2001:db8::77';

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Which real server answered each line of curl output, and whom it saw. */
function answers(output: string): { server: number; client: string }[] {
  return [...output.matchAll(/This is Real Server (\d+), you are (\S+)/g)].map((m) => ({
    server: Number(m[1]),
    client: m[2]!,
  }));
}

describe('LVS-NAT over IPv6 end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  let v6: LabAddresses;
  /** `[address]:port`, as lvsadm takes and prints it. */
  const at = (address: string, port: number): string => `[${address}]:${port}`;
  const url = (path = '/', address = v6.vip): string => `http://[${address}]${path}`;
  const curl6 = (urls: string[], extra: string[] = []): string =>
    s.curl(urls[0]!, ['-6', ...extra, ...urls.slice(1)]);
  const serviceStats = (service: string): ServiceStats => {
    const found = s.director.stats().find((svc) => svc.service === service);
    assert.ok(found, `${service} listed`);
    return found;
  };
  const rr = (vip: string, port: number, proto = '-t'): void => {
    s.director.adm(`-A ${proto} ${at(vip, port)} -s rr`);
    for (const rs of v6.realServers) s.director.adm(`-a ${proto} ${at(vip, port)} -r ${at(rs, port)} -m`);
  };

  before(async () => {
    s = await setupLab({ prefix: 'lvs6n', bulkFileMb: BULK_MB, ipv6: true });
    v6 = s.lab.addr6!;
  });
  after(async () => {
    await s?.teardown();
  });
  afterEach(async () => {
    if (!s.director.closed) s.director.adm('-C');
  });

  it('rr alternates, the real servers see the client IPv6 address, -Ln and -Lnc show [v6]:port', () => {
    rr(v6.vip, 80);
    const out = curl6([url(), url(), url(), url()], ['-H', 'Connection: close']);
    const seen = answers(out);
    assert.equal(seen.length, 4, out);
    assert.notEqual(seen[0]!.server, seen[1]!.server);
    assert.deepEqual(seen.slice(2), seen.slice(0, 2));
    assert.ok(
      seen.every((a) => a.client === v6.client),
      out,
    );
    for (const i of [0, 1])
      assert.ok(s.lab.accessLog(i).some((line) => line.startsWith(`${v6.client} / 200`)));
    const [listed] = s.director.list();
    assert.equal(listed!.service, `TCP ${at(v6.vip, 80)}`);
    assert.deepEqual(
      listed!.dests.map((d) => [d.dest, d.forward, d.weight, d.activeConns, d.inactConns]),
      v6.realServers.map((rs) => [at(rs, 80), 'Masq', 1, 0, 2]),
    );
    const flows = s.director.connections();
    assert.equal(flows.length, 4, s.director.adm('-Lnc'));
    assert.ok(
      flows.every(
        (c) =>
          c.proto === 'TCP' &&
          c.state === 'TIME_WAIT' &&
          c.source.startsWith(`[${v6.client}]:`) &&
          c.virtual === at(v6.vip, 80) &&
          v6.realServers.some((rs) => c.destination === at(rs, 80)),
      ),
      s.director.adm('-Lnc'),
    );
    const stats = serviceStats(`TCP ${at(v6.vip, 80)}`);
    assert.equal(stats.conns, 4);
    assert.ok(stats.outBytes >= out.length && stats.outBytes > stats.inBytes, JSON.stringify(stats));
  });

  it(`a ${BULK_MB} MB download and upload arrive intact, and the download again through a 1280-byte client link`, async () => {
    s.director.adm(`-A -t ${at(v6.vip, 80)} -s rr`);
    s.director.adm(`-a -t ${at(v6.vip, 80)} -r ${at(v6.realServers[0]!, 80)} -m`);
    s.director.adm(`-A -t ${at(v6.vip, 9000)} -s rr`);
    s.director.adm(`-a -t ${at(v6.vip, 9000)} -r ${at(v6.realServers[1]!, 9000)} -m`);
    const sink = s.lab.spawn(s.lab.ns.realServers[1]!, [
      'socat',
      '-t',
      '10',
      'TCP6-LISTEN:9000,reuseaddr,fork',
      'EXEC:sha256sum',
    ]);
    const download = (): string =>
      s.lab
        .run(
          s.lab.ns.client,
          ['sh', '-c', `curl -6 -sS --max-time 60 ${url('/files/bulk.bin')} | sha256sum`],
          {
            timeoutMs: 70_000,
          },
        )
        .split(' ')[0]!;
    try {
      const expected = sha256(readFileSync(s.lab.bulkFile!));
      assert.equal(download(), expected);
      await until(
        'the upload sink listening',
        () => s.lab.run(s.lab.ns.realServers[1]!, ['ss', '-Htln', 'sport = :9000']) || undefined,
        5000,
      );
      const upload = `socat -t 30 -T 60 - TCP6:${at(v6.vip, 9000)} < ${s.lab.bulkFile!}`;
      const uploaded = s.lab.run(s.lab.ns.client, ['sh', '-c', upload], { timeoutMs: 70_000 });
      assert.equal(uploaded.split(' ')[0], expected);
      const size = readFileSync(s.lab.bulkFile!).length;
      const down = serviceStats(`TCP ${at(v6.vip, 80)}`);
      const up = serviceStats(`TCP ${at(v6.vip, 9000)}`);
      assert.deepEqual([down.conns, up.conns], [1, 1]);
      for (const bytes of [down.outBytes, up.inBytes])
        assert.ok(bytes >= size && bytes <= size * 1.1, `${bytes} bytes counted for ${size}`);
      // The client announced an MSS for its 1500-byte link; the director's side towards it takes
      // 1280 only: the host's "packet too big" to the VIP must reach the real server as path MTU.
      s.lab.run(s.lab.ns.director, ['ip', 'link', 'set', s.lab.dev.public, 'mtu', '1280']);
      assert.equal(download(), expected);
      const learnt = s.lab.run(s.lab.ns.realServers[0]!, ['ip', '-6', 'route', 'get', v6.client]);
      assert.match(learnt, /mtu 1280/, 'the real server learnt the path MTU to the client');
    } finally {
      s.lab.run(s.lab.ns.director, ['ip', 'link', 'set', s.lab.dev.public, 'mtu', '1500']);
      sink.kill();
    }
  });

  it('a UDP service echoes datagrams over IPv6, ones in fragments included', async () => {
    s.director.adm(`-A -u ${at(v6.vip, 7)} -s rr`);
    s.director.adm(`-a -u ${at(v6.vip, 7)} -r ${at(v6.realServers[0]!, 7)} -m`);
    const echo = s.lab.spawn(s.lab.ns.realServers[0]!, [
      'socat',
      '-b',
      '65536',
      'UDP6-RECVFROM:7,fork',
      'PIPE',
    ]);
    try {
      await until(
        'the echo server listening',
        () => s.lab.run(s.lab.ns.realServers[0]!, ['ss', '-Huln', 'sport = :7']) || undefined,
        5000,
      );
      const sizes = [32, 1400, 4000, 20000];
      for (const size of sizes) {
        const payload = Buffer.alloc(size, `datagram-${size}-`);
        const back = s.lab.run(
          s.lab.ns.client,
          ['socat', '-T', '2', '-b', '65536', '-', `UDP6:${at(v6.vip, 7)}`],
          {
            input: payload,
            timeoutMs: 5000,
          },
        );
        assert.equal(back.length, size, `echo of ${size} bytes`);
        assert.equal(back, payload.toString());
      }
      assert.ok(
        s.director
          .connections()
          .some(
            (c) =>
              c.proto === 'UDP' &&
              c.source.startsWith(`[${v6.client}]:`) &&
              c.virtual === at(v6.vip, 7) &&
              c.destination === at(v6.realServers[0]!, 7),
          ),
        s.director.adm('-Lnc'),
      );
      const udp = serviceStats(`UDP ${at(v6.vip, 7)}`);
      const total = sizes.reduce((a, b) => a + b, 0);
      assert.equal(udp.conns, sizes.length);
      assert.ok(udp.inBytes >= total && udp.outBytes >= total, JSON.stringify(udp));
    } finally {
      echo.kill();
    }
  });

  it('datagrams with Hop-by-Hop and Destination Options headers pass both ways; nothing is dropped', async () => {
    s.director.adm(`-A -u ${at(v6.vip, 7070)} -s rr`);
    s.director.adm(`-a -u ${at(v6.vip, 7070)} -r ${at(v6.realServers[0]!, 7070)} -m`);
    // An 8-byte options header (a PadN option): Next Header and the length are the kernel's to fill.
    const options = (level: string): string[] => [
      `s.setsockopt(socket.IPPROTO_IPV6, ${level}, bytes([0, 0, 1, 4, 0, 0, 0, 0]))`,
    ];
    // IPV6_HOPOPTS 54, IPV6_DSTOPTS 59 (Linux).
    const server = [
      'import socket',
      's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
      ...options('59'),
      "s.bind(('::', 7070))",
      'while True:',
      '    data, peer = s.recvfrom(65536)',
      '    s.sendto(data, peer)',
    ].join('\n');
    const echo = s.lab.spawn(s.lab.ns.realServers[0]!, ['python3', '-c', server]);
    try {
      await until(
        'the echo server listening',
        () => s.lab.run(s.lab.ns.realServers[0]!, ['ss', '-Huln', 'sport = :7070']) || undefined,
        5000,
      );
      const client = [
        'import socket',
        's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
        's.settimeout(3)',
        ...options('54'),
        ...options('59'),
        `s.connect(('${v6.vip}', 7070))`,
        'for size in (16, 3000):',
        "    s.send(b'x' * size)",
        '    print(len(s.recv(65536)))',
      ].join('\n');
      const out = s.lab.run(s.lab.ns.client, ['python3', '-c', client], { timeoutMs: 10_000 });
      assert.deepEqual(out.trim().split('\n'), ['16', '3000']);
      const { dataPath } = JSON.parse(s.director.adm('-L --json')) as { dataPath: { drops: object } };
      assert.deepEqual(dataPath.drops, {});
    } finally {
      echo.kill();
    }
  });

  it("a real server's ICMPv6 port unreachable reaches the client from the VIP (UDP, nothing listening)", () => {
    s.director.adm(`-A -u ${at(v6.vip, 9)} -s rr`);
    s.director.adm(`-a -u ${at(v6.vip, 9)} -r ${at(v6.realServers[0]!, 9)} -m`);
    const outcome = s.lab
      .run(s.lab.ns.client, ['python3', '-c', udpProbe(v6.vip, 9)], { timeoutMs: 10_000 })
      .trim();
    assert.equal(outcome, 'refused', s.director.adm('-Lnc'));
  });

  it("a real server's ICMPv6 packet too big reaches the client from the VIP, about the client's own flow", async () => {
    s.director.adm(`-A -u ${at(v6.vip, 5000)} -s rr`);
    s.director.adm(`-a -u ${at(v6.vip, 5000)} -r ${at(v6.realServers[0]!, 5000)} -m`);
    // The client: a connected UDP socket that sends once, and a raw ICMPv6 socket that reports
    // where the first "packet too big" came from and the MTU it carried.
    const client = [
      'import socket',
      'raw = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)',
      'raw.settimeout(10)',
      'u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
      `u.connect(('${v6.vip}', 5000))`,
      "u.send(b'probe')",
      'print(u.getsockname()[1], flush=True)',
      'while True:',
      '    data, source = raw.recvfrom(2048)',
      '    if data[0] == 2:',
      "        print(source[0], int.from_bytes(data[4:8], 'big'), flush=True)",
      '        break',
    ].join('\n');
    const child = s.lab.spawn(s.lab.ns.client, ['python3', '-c', client], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const exited = once(child, 'exit');
    try {
      const port = await until('the client port', () => /^(\d+)\n/.exec(out)?.[1], 5000);
      // What a router on the real server's path would send: the client's datagram as the real
      // server received it (client -> RS:5000), quoted after "packet too big, mtu 1300".
      const realServer = [
        'import socket, struct',
        'src, dst = socket.inet_pton(socket.AF_INET6, "%s"), socket.inet_pton(socket.AF_INET6, "%s")',
        `udp = struct.pack('!HHHH', ${port}, 5000, 13, 0) + b'probe'`,
        "quoted = struct.pack('!IHBB', 0x60000000, len(udp), 17, 63) + src + dst + udp",
        "error = struct.pack('!BBHI', 2, 0, 0, 1300) + quoted",
        's = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)',
        `s.sendto(error, ('${v6.client}', 0))`,
      ]
        .join('\n')
        .replace('%s', v6.client)
        .replace('%s', v6.realServers[0]!);
      s.lab.run(s.lab.ns.realServers[0]!, ['python3', '-c', realServer]);
      await Promise.race([
        exited,
        until('the error at the client', () => (out.split('\n').length > 2 ? true : undefined), 10_000),
      ]);
      assert.equal(out.split('\n')[1], `${v6.vip} 1300`, out);
      // The client's kernel took it for its flow to the VIP.
      assert.match(s.lab.run(s.lab.ns.client, ['ip', '-6', 'route', 'get', v6.vip]), /mtu 1300/);
    } finally {
      child.kill();
      s.lab.run(s.lab.ns.client, ['ip', '-6', 'route', 'flush', 'cache']);
    }
  });

  it("other ports of the VIP reach the director's own IPv6 services; the director's own clients go through", async () => {
    rr(v6.vip, 80);
    const listener = s.lab.spawn(s.lab.ns.director, [
      'socat',
      'TCP6-LISTEN:2222,reuseaddr,fork',
      'SYSTEM:echo director-here',
    ]);
    try {
      await until(
        'the director listening',
        () => s.lab.run(s.lab.ns.director, ['ss', '-Htln', 'sport = :2222']) || undefined,
        5000,
      );
      const reply = s.lab.run(s.lab.ns.client, ['socat', '-t', '2', '-', `TCP6:${at(v6.vip, 2222)}`], {
        input: '',
      });
      assert.equal(reply.trim(), 'director-here');
      // curl on the director itself, to its own address: the output hook steers it too.
      const local = s.lab.run(s.lab.ns.director, ['curl', '-6', '-sS', '--max-time', '5', url()]);
      assert.deepEqual(
        answers(local).map((a) => a.client),
        [v6.vip],
      );
      // And a real server directly, as a health check does: its reply is the host's.
      const direct = s.lab.run(s.lab.ns.director, [
        'curl',
        '-6',
        '-sS',
        '--max-time',
        '5',
        url('/', v6.realServers[0]),
      ]);
      assert.deepEqual(answers(direct), [{ server: 1, client: v6.dip }]);
    } finally {
      listener.kill();
    }
  });

  it('a VIP that is no address of the director: the director answers neighbour discovery for it', () => {
    rr(FOREIGN_VIP, 80);
    const out = curl6([url('/', FOREIGN_VIP), url('/', FOREIGN_VIP)], ['-H', 'Connection: close']);
    assert.deepEqual(
      answers(out)
        .map((a) => `${a.server} ${a.client}`)
        .sort(),
      [`1 ${v6.client}`, `2 ${v6.client}`],
      out,
    );
  });

  it('stopping lvsd (SIGTERM) removes every IPv6 rule, route, proxy neighbour and sysctl it added, but for the restart hold', async () => {
    rr(v6.vip, 80);
    s.director.adm(`-A -u ${at(FOREIGN_VIP, 53)} -s rr`);
    s.director.adm(`-a -u ${at(FOREIGN_VIP, 53)} -r ${at(v6.realServers[1]!, 53)} -m`);
    const during = hostState(s.lab);
    assert.notEqual(during, s.stateBefore);
    // What lvsd put in place for IPv6 is what hostState compares.
    assert.match(during, /net\.ipv6\.conf\.all\.forwarding = 1/);
    assert.match(during, new RegExp(`${FOREIGN_VIP} dev lvs0`));
    assert.match(during, /net\.ipv6\.conf\.pub0\.proxy_ndp = 1/);
    assert.match(during, new RegExp(`${FOREIGN_VIP} dev pub0 +proxy`));
    assert.equal(await s.director.stop(), 0, s.director.log);
    const hold = ['nft', 'list', 'table', 'inet', 'lvsd_hold'];
    assert.match(s.lab.run(s.lab.ns.director, hold), /2001:db8::77 \. udp \. 53/);
    s.lab.run(s.lab.ns.director, ['nft', 'delete', 'table', 'inet', 'lvsd_hold']);
    assert.equal(hostState(s.lab), s.stateBefore);
  });
});
