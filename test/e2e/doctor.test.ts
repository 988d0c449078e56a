// `lvsadm doctor` in a lab where each fault is built on purpose: the healthy lab gives a clean
// report (exit 0), and each pitfall of the seeds is named on the real server or host it concerns
// (exit 1): a real server that refuses or does not answer, replies that go around the director
// (its default route is not the DIP), a client on the real servers' subnet, strict rp_filter,
// forwarding off on an interface, and a firewall chain that drops the service's packets.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport, DestReport } from '../../src/core/doctor.js';
import { ROOT_SKIP, setupLab, type Setup } from './harness.js';

const LVSADM = fileURLToPath(new URL('../../src/bin/lvsadm.js', import.meta.url));

describe('lvsadm doctor (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  before(async () => {
    s = await setupLab({ prefix: 'lvq12doc' });
    const { vip, realServers } = s.lab.addr;
    s.director.adm(`-A -t ${vip}:80 -s rr`);
    for (const rs of realServers) s.director.adm(`-a -t ${vip}:80 -r ${rs}:80 -m`);
  });
  after(async () => {
    await s?.teardown();
  });

  const doctor = (...args: string[]) => {
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

  it("strict rp_filter, forwarding off on the real servers' interface: host problems, and back to clean", () => {
    sysctl('net.ipv4.conf.all.rp_filter=1');
    sysctl(`net.ipv4.conf.${s.lab.dev.internal}.forwarding=0`);
    try {
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
    const { vip } = s.lab.addr;
    s.lab.run(s.lab.ns.director, ['nft', '-f', '-'], {
      input:
        'table ip lvq12fw {\n chain forwarding {\n  type filter hook forward priority 0; policy drop;\n' +
        '  ct state established,related accept\n }\n}\n',
    });
    try {
      // The fault is real: the service is down.
      assert.throws(() => s.lab.run(s.lab.ns.client, ['curl', '-sS', '--max-time', '2', `http://${vip}/`]));
      const { status, report: r, text } = report();
      assert.equal(status, 1, text);
      const svc = r.services.find((x) => x.service === `TCP ${vip}:80`)!;
      assert.deepEqual(checks(svc.findings), ['firewall']);
      assert.match(
        text,
        /PROBLEM \[firewall\] the firewall chain ip lvq12fw forwarding \(hook forward\) drops/,
      );
      assert.match(text, /client -> 198.18.0.1:80: policy drop/);
    } finally {
      s.lab.run(s.lab.ns.director, ['nft', 'delete', 'table', 'ip', 'lvq12fw']);
    }
  });

  it("a real server whose default route is not the DIP: SYNs forwarded, no SYN-ACK back (seed 000's trap)", () => {
    const { vip, realServers } = s.lab.addr;
    const rs1 = s.lab.ns.realServers[0]!;
    s.director.adm('-Z');
    s.lab.run(rs1, ['ip', 'route', 'replace', 'default', 'via', '198.18.1.254']);
    try {
      // rr sends one of the two to rs1, whose SYN-ACK goes to a gateway that is not the director.
      const results = [0, 1].map(
        () =>
          spawnSync('ip', [
            'netns',
            'exec',
            s.lab.ns.client,
            'curl',
            '-sS',
            '--max-time',
            '2',
            `http://${vip}/`,
          ]).status,
      );
      assert.deepEqual(results.sort(), [0, 28]);
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
