// `lvsadm doctor` in a lab where each fault is built on purpose: the healthy lab gives a clean
// report (exit 0), and each pitfall of the seeds is named on the real server or host it concerns
// (exit 1): a real server that refuses or does not answer (TCP and UDP), one that answers from
// another address (a UDP server on a second address, a TCP server that rewrites its replies'
// source), replies that go around the director (its default route is not the DIP), a client on the
// real servers' subnet, strict rp_filter, forwarding off on an interface, and firewall rules that
// drop the service's packets (an nftables chain, one reached by a jump, the legacy iptables). A
// fwmark service is probed on what its connections show. On --dataplane packet the services'
// frames cross neither the kernel's forwarding nor its firewall hooks: the same settings and rules
// leave the service working, and the doctor, checking that plane's own plumbing, blames none of them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport, DestReport } from '../../src/core/doctor.js';
import { until } from '../../src/lab/lab.js';
import { DATAPLANE, ROOT_SKIP, setupLab, type Setup } from './harness.js';

/** Whether the services' frames bypass the kernel's forwarding and firewall (lvsd --dataplane packet). */
const PACKET = DATAPLANE === 'packet';

const LVSADM = fileURLToPath(new URL('../../src/bin/lvsadm.js', import.meta.url));

describe('lvsadm doctor (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  before(async () => {
    s = await setupLab({ prefix: 'lvsdc' });
    const { vip, realServers } = s.lab.addr;
    s.director.adm(`-A -t ${vip}:80 -s rr`);
    for (const rs of realServers) s.director.adm(`-a -t ${vip}:80 -r ${rs}:80 -m`);
  });
  after(async () => {
    await s?.teardown();
  });

  const doctor = (...args: string[]) => {
    const started = performance.now();
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        s.lab.ns.director,
        process.execPath,
        LVSADM,
        '--socket',
        s.director.socket,
        'doctor',
        ...args,
      ],
      { encoding: 'utf8', timeout: 15_000 },
    );
    // The bound is 5 s; printed, not asserted (a loaded machine is slower).
    console.log(`# lvsadm doctor ${args.join(' ')}: ${Math.round(performance.now() - started)} ms`);
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const report = (): { status: number | null; report: DoctorReport; text: string } => {
    const json = doctor('--json');
    assert.equal(json.stderr, '');
    return { status: json.status, report: JSON.parse(json.stdout) as DoctorReport, text: doctor().stdout };
  };
  const dest = (r: DoctorReport, service: string, name: string): DestReport => {
    const found = r.services.find((x) => x.service === service)?.dests.find((d) => d.dest === name);
    assert.ok(found, `${service} -> ${name} in ${JSON.stringify(r)}`);
    return found;
  };
  const checks = (findings: ReadonlyArray<{ check: string }>) => findings.map((f) => f.check);
  const sysctl = (setting: string) => s.lab.run(s.lab.ns.director, ['sysctl', '-qw', setting]);

  it('the healthy lab: no problem, exit 0, each real server answered the probe', () => {
    const { vip } = s.lab.addr;
    for (let i = 0; i < 2; i++) assert.match(s.curl(`http://${vip}/`), /Real Server/);
    const { status, report: r, text } = report();
    assert.equal(status, 0, text);
    assert.equal(r.verdict, 'ok');
    assert.deepEqual(r.host, []);
    for (const rs of s.lab.addr.realServers) {
      const d = dest(r, `TCP ${vip}:80`, `${rs}:80`);
      assert.equal(d.verdict, 'ok');
      assert.ok(
        d.evidence.some((e) => /was answered \(SYN-ACK\)/.test(e)),
        d.evidence.join('\n'),
      );
    }
    assert.match(text, /^lvsd doctor: no problem found\n/);
    assert.match(text, new RegExp(`-> ${s.lab.addr.realServers[0]}:80  ok`));
    const { internal, public: pub } = s.lab.dev;
    assert.match(
      text,
      PACKET
        ? new RegExp(
            `\nhost \\(the packet data plane\\):\n  ok \\(the packet plane's netdev ingress drop and link on ${internal}, ${pub}\\)\n`,
          )
        : /\nhost \(the tun data plane\):\n {2}ok \(forwarding, rp_filter, send_redirects\)\n/,
    );
  });

  it('a real server that refuses the port (RST) and one that does not answer (silence) are named', () => {
    const { vip, realServers } = s.lab.addr;
    s.director.adm(`-A -t ${vip}:81 -s rr`);
    s.director.adm(`-a -t ${vip}:81 -r ${realServers[0]}:81 -m`);
    s.director.adm(`-a -t ${vip}:81 -r 198.18.1.13:81 -m`);
    try {
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      assert.deepEqual(checks(dest(r, `TCP ${vip}:81`, `${realServers[0]}:81`).findings), ['refused']);
      const silent = dest(r, `TCP ${vip}:81`, '198.18.1.13:81');
      assert.deepEqual(checks(silent.findings), ['silent']);
      assert.match(text, /PROBLEM \[refused\] refuses connections on port 81 \(RST\)/);
      assert.match(text, /PROBLEM \[silent\] does not answer/);
      // The other service is not blamed.
      assert.equal(r.services.find((x) => x.service === `TCP ${vip}:80`)!.verdict, 'ok');
    } finally {
      s.director.adm(`-D -t ${vip}:81`);
    }
  });

  /** curl's exit status for two requests to the VIP (rr: one to each real server), sorted; 28 is a timeout. */
  const twoRequests = () =>
    [0, 1]
      .map(
        () =>
          spawnSync('ip', [
            'netns',
            'exec',
            s.lab.ns.client,
            'curl',
            '-sS',
            '--max-time',
            '2',
            `http://${s.lab.addr.vip}/`,
          ]).status,
      )
      .sort();

  /**
   * With a host fault of the TUN path in place (a firewall rule, a sysctl): on the packet plane the
   * service works on (the fault is not on its path) and the report is clean; the report's text is
   * returned for the TUN plane's own assertions.
   */
  const notOnPacketPath = (): boolean => {
    if (!PACKET) return false;
    assert.deepEqual(twoRequests(), [0, 0], 'both real servers answer through the packet plane');
    const { status, report: r, text } = report();
    assert.equal(status, 0, text);
    assert.deepEqual([r.host, r.services.flatMap((svc) => svc.findings)], [[], []], text);
    return true;
  };

  /** With a firewall fault in place: the service is down (the fault is real), and the report blames its firewall. */
  const firewallReport = (): string => {
    const { vip } = s.lab.addr;
    assert.throws(() => s.lab.run(s.lab.ns.client, ['curl', '-sS', '--max-time', '2', `http://${vip}/`]));
    const { status, report: r, text } = report();
    assert.equal(status, 1, text);
    const svc = r.services.find((x) => x.service === `TCP ${vip}:80`)!;
    assert.deepEqual(checks(svc.findings), ['firewall']);
    return text;
  };

  /** A UDP echo bound to every address (so it answers from the route's source), on a real server. */
  const udpEcho = (i: number, port: number): ChildProcess =>
    s.lab.spawn(s.lab.ns.realServers[i]!, [
      'python3',
      '-c',
      [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        `s.bind(('0.0.0.0', ${port}))`,
        'while True:',
        '    data, peer = s.recvfrom(2048)',
        '    s.sendto(data, peer)',
      ].join('\n'),
    ]);

  it('UDP: an echo answers, a port with nothing refuses (ICMP), a second address answers from the first', async () => {
    const { vip, realServers } = s.lab.addr;
    const rs1 = s.lab.ns.realServers[0]!;
    // Real server 1 also holds .31, and the director is told to use that one.
    s.lab.run(rs1, ['ip', 'addr', 'add', '198.18.1.31/24', 'dev', 'eth0']);
    const echoes = [udpEcho(0, 5300), udpEcho(1, 5300)];
    s.director.adm(`-A -u ${vip}:5300 -s rr`);
    s.director.adm(`-a -u ${vip}:5300 -r 198.18.1.31:5300 -m`);
    s.director.adm(`-a -u ${vip}:5300 -r ${realServers[1]}:5300 -m`);
    s.director.adm(`-A -u ${vip}:5301 -s rr`);
    s.director.adm(`-a -u ${vip}:5301 -r ${realServers[0]}:5301 -m`);
    try {
      // The echoes are up once the director's own datagram comes back.
      await until(
        'the UDP echoes answer',
        () => {
          const r = spawnSync(
            'ip',
            ['netns', 'exec', s.lab.ns.director, 'socat', '-T', '0.5', '-', `UDP4:${realServers[1]}:5300`],
            {
              input: 'x\n',
              encoding: 'utf8',
            },
          );
          return r.stdout === 'x\n' ? true : undefined;
        },
        10_000,
      );
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const other = dest(r, `UDP ${vip}:5300`, '198.18.1.31:5300');
      assert.deepEqual(checks(other.findings), ['other-address']);
      assert.match(other.findings[0]!.message, /^answers from 198\.18\.1\.11:5300, not 198\.18\.1\.31:5300/);
      const fine = dest(r, `UDP ${vip}:5300`, `${realServers[1]}:5300`);
      assert.equal(fine.verdict, 'ok', text);
      assert.ok(fine.evidence.some((e) => /probe of UDP 198\.18\.1\.12:5300 was answered in/.test(e)));
      const refused = dest(r, `UDP ${vip}:5301`, `${realServers[0]}:5301`);
      assert.deepEqual(checks(refused.findings), ['refused']);
      assert.match(text, /PROBLEM \[refused\] refuses datagrams on UDP port 5301 \(ICMP port unreachable\)/);
      assert.match(text, /PROBLEM \[other-address\] answers from 198\.18\.1\.11:5300/);
    } finally {
      s.director.adm(`-D -u ${vip}:5300`);
      s.director.adm(`-D -u ${vip}:5301`);
      for (const echo of echoes) echo.kill();
      s.lab.run(rs1, ['ip', 'addr', 'del', '198.18.1.31/24', 'dev', 'eth0']);
    }
  });

  it("TCP: a real server that rewrites its replies' source is named from the SYN-ACK the director saw", () => {
    const { vip, realServers } = s.lab.addr;
    const rs2 = s.lab.ns.realServers[1]!;
    s.lab.run(rs2, ['nft', '-f', '-'], {
      input:
        'table ip lvsdcsnat {\n chain out {\n  type filter hook output priority 0; policy accept;\n' +
        '  tcp sport 80 ip saddr set 198.18.1.32\n }\n}\n',
    });
    try {
      // The fault is real: the client's connection to that server never completes.
      assert.deepEqual(twoRequests(), [0, 28]);
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const nat = dest(r, `TCP ${vip}:80`, `${realServers[1]}:80`);
      assert.deepEqual(checks(nat.findings), ['other-address']);
      assert.ok(
        nat.evidence.some((e) =>
          /probe of TCP 198\.18\.1\.12:80 was answered from 198\.18\.1\.32:80/.test(e),
        ),
        nat.evidence.join('\n'),
      );
      assert.equal(dest(r, `TCP ${vip}:80`, `${realServers[0]}:80`).verdict, 'ok');
    } finally {
      s.lab.run(rs2, ['nft', 'delete', 'table', 'ip', 'lvsdcsnat']);
    }
  });

  it('a fwmark service is probed on the protocol and port its connections show; without any, not probed', () => {
    const { vip, realServers } = s.lab.addr;
    const nft = (rule: string) => s.lab.run(s.lab.ns.director, ['nft', ...rule.split(' ')]);
    nft('add table ip lvsdcmark');
    nft('add chain ip lvsdcmark pre { type filter hook prerouting priority mangle ; }');
    nft(`add rule ip lvsdcmark pre ip daddr ${vip} tcp dport 8080 meta mark set 7`);
    s.director.adm('-A -f 7 -s rr');
    s.director.adm(`-a -f 7 -r ${realServers[0]}:80 -m`);
    // Weight 0: never scheduled, so no connection ever shows how to probe it.
    s.director.adm('-a -f 7 -r 198.18.1.13:81 -m -w 0');
    try {
      assert.match(s.curl(`http://${vip}:8080/`), /Real Server 1/);
      const { report: r, text } = report();
      const marked = dest(r, 'FWM 7', `${realServers[0]}:80`);
      assert.equal(marked.verdict, 'ok', text);
      assert.ok(
        marked.evidence.some((e) => /probe of TCP 198\.18\.1\.11:80 was answered \(SYN-ACK\)/.test(e)),
      );
      const unknown = dest(r, 'FWM 7', '198.18.1.13:81');
      assert.ok(
        unknown.evidence.some((e) => /^not probed: a fwmark service, and no connection/.test(e)),
        text,
      );
    } finally {
      s.director.adm('-D -f 7');
      nft('delete table ip lvsdcmark');
    }
  });

  it("an nftables chain reached by a jump that drops a real server's traffic is followed and named", () => {
    const { vip, realServers } = s.lab.addr;
    s.lab.run(s.lab.ns.director, ['nft', '-f', '-'], {
      input:
        'table ip lvsdcjump {\n chain forwarding {\n  type filter hook forward priority 0; policy accept;\n  jump blocked\n }\n' +
        ` chain blocked {\n  ip daddr ${realServers[0]} tcp dport 80 drop\n }\n}\n`,
    });
    try {
      if (notOnPacketPath()) return;
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const svc = r.services.find((x) => x.service === `TCP ${vip}:80`)!;
      assert.deepEqual(checks(svc.findings), ['firewall']);
      assert.match(
        text,
        /client -> 198\.18\.1\.11:80: rule "ip daddr 198\.18\.1\.11 tcp dport 80 drop" \(in ip lvsdcjump blocked\)/,
      );
      assert.doesNotMatch(text, /client -> 198\.18\.1\.12:80/);
    } finally {
      s.lab.run(s.lab.ns.director, ['nft', 'delete', 'table', 'ip', 'lvsdcjump']);
    }
  });

  it('a legacy iptables rule (iptables-legacy) that drops the service is read and named, and back to clean', () => {
    const { vip } = s.lab.addr;
    const legacy = (...args: string[]) => s.lab.run(s.lab.ns.director, ['iptables-legacy', ...args]);
    legacy('-t', 'raw', '-A', 'PREROUTING', '-d', `${vip}/32`, '-p', 'tcp', '--dport', '80', '-j', 'DROP');
    try {
      if (notOnPacketPath()) return;
      const text = firewallReport();
      assert.match(
        text,
        /PROBLEM \[firewall\] the firewall chain iptables-legacy raw PREROUTING \(hook prerouting\) drops/,
      );
      assert.match(
        text,
        /client -> 198\.18\.0\.1:80: rule "-d 198\.18\.0\.1\/32 -p tcp -m tcp --dport 80 -j DROP"/,
      );
    } finally {
      legacy('-t', 'raw', '-F', 'PREROUTING');
    }
    // Empty legacy tables say nothing.
    assert.equal(report().status, 0);
  });

  it('an IPv6 service: forwarding off on an interface, and accept_ra = 1 under a route learned from RAs', () => {
    const { client, director } = s.lab.ns;
    const rs1 = s.lab.ns.realServers[0]!;
    const { internal, public: pub } = s.lab.dev;
    const addr = (ns: string, cidr: string, dev: string) =>
      s.lab.run(ns, ['ip', '-6', 'addr', 'add', cidr, 'dev', dev, 'nodad']);
    addr(director, '2001:db8:1::1/64', internal);
    addr(director, '2001:db8::1/64', pub);
    addr(rs1, '2001:db8:1::11/64', 'eth0');
    // The client's address is on a prefix the director reaches by a route "learned" from an RA.
    addr(client, '2001:db8::2/64', 'eth0');
    addr(client, '2001:db8:5::2/64', 'eth0');
    s.lab.run(rs1, ['ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1']);
    s.lab.run(client, ['ip', '-6', 'route', 'add', '2001:db8::100/128', 'via', '2001:db8::1']);
    s.lab.run(director, [
      'ip',
      '-6',
      'route',
      'add',
      '2001:db8:5::/64',
      'via',
      '2001:db8::2',
      'dev',
      pub,
      'proto',
      'ra',
    ]);
    s.director.adm('-A -t [2001:db8::100]:80 -s rr');
    s.director.adm('-a -t [2001:db8::100]:80 -r [2001:db8:1::11]:80 -m');
    try {
      // A client's connection (refused: nginx listens on IPv4 only) puts the client in the table,
      // for CLOSE's 10 s: made again before each report, which a loaded machine may start later.
      const curl = [
        'curl',
        '-sS',
        '--max-time',
        '2',
        '--interface',
        '2001:db8:5::2',
        'http://[2001:db8::100]/',
      ];
      const connect = () => spawnSync('ip', ['netns', 'exec', client, ...curl]);
      connect();
      sysctl(`net.ipv6.conf.${pub}.accept_ra=2`);
      const clean = report();
      assert.deepEqual(clean.report.host, [], clean.text);
      sysctl(`net.ipv6.conf.${internal}.forwarding=0`);
      sysctl(`net.ipv6.conf.${pub}.accept_ra=1`);
      connect();
      const { report: r, text } = report();
      // The packet plane's frames are not the kernel's to forward; its route to the clients is still the host's.
      assert.deepEqual(checks(r.host).sort(), PACKET ? ['accept-ra'] : ['accept-ra', 'ip-forward'], text);
      if (!PACKET)
        assert.match(text, new RegExp(`PROBLEM \\[ip-forward\\] IPv6 forwarding is off on ${internal}`));
      assert.match(
        text,
        new RegExp(`WARNING \\[accept-ra\\] the route to IPv6 clients on ${pub} was learned`),
      );
    } finally {
      s.director.adm('-D -t [2001:db8::100]:80');
      sysctl(`net.ipv6.conf.${internal}.forwarding=1`);
    }
  });

  it("strict rp_filter, forwarding off on the real servers' interface: host problems, and back to clean", () => {
    sysctl('net.ipv4.conf.all.rp_filter=1');
    sysctl(`net.ipv4.conf.${s.lab.dev.internal}.forwarding=0`);
    try {
      if (notOnPacketPath()) return;
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      assert.deepEqual(checks(r.host).sort(), ['ip-forward', 'rp-filter']);
      assert.match(text, new RegExp(`forwarding is off on ${s.lab.dev.internal}`));
      assert.match(text, /net.ipv4.conf.all.rp_filter = 1/);
    } finally {
      sysctl('net.ipv4.conf.all.rp_filter=0');
      sysctl(`net.ipv4.conf.${s.lab.dev.internal}.forwarding=1`);
    }
    assert.equal(report().status, 0);
  });

  it('a forward chain that drops by policy and accepts only conntrack states lvsd never has', () => {
    s.lab.run(s.lab.ns.director, ['nft', '-f', '-'], {
      input:
        'table ip lvsdcfw {\n chain forwarding {\n  type filter hook forward priority 0; policy drop;\n' +
        '  ct state established,related accept\n }\n}\n',
    });
    try {
      if (notOnPacketPath()) return;
      const text = firewallReport();
      assert.match(
        text,
        /PROBLEM \[firewall\] the firewall chain ip lvsdcfw forwarding \(hook forward\) drops/,
      );
      assert.match(text, /client -> 198.18.0.1:80: policy drop/);
    } finally {
      s.lab.run(s.lab.ns.director, ['nft', 'delete', 'table', 'ip', 'lvsdcfw']);
    }
  });

  it("a real server whose default route is not the DIP: SYNs forwarded, no SYN-ACK back (seed 000's trap)", () => {
    const { vip, realServers } = s.lab.addr;
    const rs1 = s.lab.ns.realServers[0]!;
    s.director.adm('-Z');
    s.lab.run(rs1, ['ip', 'route', 'replace', 'default', 'via', '198.18.1.254']);
    try {
      // rr sends one of the two to rs1, whose SYN-ACK goes to a gateway that is not the director.
      assert.deepEqual(twoRequests(), [0, 28]);
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const bypass = dest(r, `TCP ${vip}:80`, `${realServers[0]}:80`);
      assert.deepEqual(checks(bypass.findings), ['replies-bypass']);
      assert.match(bypass.findings[0]!.message, /default gateway must be the director \(198.18.1.1\)/);
      assert.ok(bypass.findings[0]!.evidence.some((e) => /was answered \(SYN-ACK\)/.test(e)));
      assert.equal(dest(r, `TCP ${vip}:80`, `${realServers[1]}:80`).verdict, 'ok');
    } finally {
      s.lab.run(rs1, ['ip', 'route', 'replace', 'default', 'via', s.lab.addr.dip]);
    }
  });

  it("a client on the real servers' subnet gets their replies directly (seed 001's warning)", () => {
    const { vip, dip } = s.lab.addr;
    const { client, director } = s.lab.ns;
    // A second link from the client into the real servers' bridge, and the VIP reached through it.
    s.lab.run(director, ['ip', 'link', 'add', 'cbr', 'type', 'veth', 'peer', 'name', 'c1', 'netns', client]);
    s.lab.run(director, ['ip', 'link', 'set', 'cbr', 'master', s.lab.dev.internal, 'up']);
    s.lab.run(client, ['ip', 'addr', 'add', '198.18.1.50/24', 'dev', 'c1']);
    s.lab.run(client, ['ip', 'link', 'set', 'c1', 'up']);
    s.lab.run(client, ['ip', 'route', 'replace', `${vip}/32`, 'via', dip, 'dev', 'c1', 'src', '198.18.1.50']);
    try {
      s.director.adm('-Z');
      spawnSync('ip', ['netns', 'exec', client, 'curl', '-sS', '--max-time', '2', `http://${vip}/`]);
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const all = r.services.flatMap((x) => x.dests.flatMap((d) => d.findings));
      const same = all.filter((f) => f.check === 'same-subnet');
      assert.ok(same.length >= 1, text);
      assert.match(same[0]!.evidence.join('\n'), /client 198.18.1.50: directly connected on br0/);
      assert.match(text, /PROBLEM \[same-subnet\] clients share its subnet/);
    } finally {
      s.lab.run(client, ['ip', 'route', 'del', `${vip}/32`]);
      s.lab.run(director, ['ip', 'link', 'del', 'cbr']);
    }
  });
});
