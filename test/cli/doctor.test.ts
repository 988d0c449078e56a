// lvsadm doctor's adapter side: nft's JSON ruleset and iptables-legacy-save read into chains, facts
// collected through fakes of lvsd and the host, the report printed and the exit status (0 no
// problem, 1 problems, 2 usage).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runDoctor } from '../../src/cli/doctor.js';
import { parseIptablesSave, parseNetdevIngress, parseNftRuleset } from '../../src/cli/doctor-firewall.js';
import type { HostReader } from '../../src/cli/doctor.js';
import type { ControlApi } from '../../src/control/api.js';
import { probeKey } from '../../src/core/doctor.js';
import type { ProbeFact } from '../../src/core/doctor.js';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import { zeroDeviceCounters, type Snapshot } from '../../src/core/ops.js';
import { addrKey, dataPath, dest, service, snapshot } from '../helpers/snapshots.js';

// `nft -j list ruleset` of nftables 1.0.6 for a typical host firewall, and lvsd's own table.
const RULESET = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'fw', handle: 1 } },
    {
      chain: {
        family: 'inet',
        table: 'fw',
        name: 'fwd_chain',
        type: 'filter',
        hook: 'forward',
        prio: 0,
        policy: 'drop',
      },
    },
    { chain: { family: 'inet', table: 'fw', name: 'other' } },
    {
      chain: {
        family: 'inet',
        table: 'fw',
        name: 'in',
        type: 'filter',
        hook: 'input',
        prio: 0,
        policy: 'drop',
      },
    },
    {
      chain: {
        family: 'inet',
        table: 'lvsd',
        name: 'prerouting',
        type: 'filter',
        hook: 'prerouting',
        prio: -300,
        policy: 'accept',
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
          { accept: null },
        ],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          {
            match: {
              op: '==',
              left: { payload: { protocol: 'ip', field: 'daddr' } },
              right: { prefix: { addr: '198.18.1.0', len: 24 } },
            },
          },
          {
            match: {
              op: '==',
              left: { payload: { protocol: 'tcp', field: 'dport' } },
              right: { set: [80, 443] },
            },
          },
          { counter: { packets: 0, bytes: 0 } },
          { accept: null },
        ],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth9' } }, { drop: null }],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          {
            match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '198.18.1.11' },
          },
          { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'sport' } }, right: 81 } },
          { reject: { type: 'icmp', expr: 'port-unreachable' } },
        ],
      },
    },
    { rule: { family: 'inet', table: 'fw', chain: 'fwd_chain', expr: [{ jump: { target: 'other' } }] } },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'other',
        expr: [
          { match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 53 } },
          { goto: { target: 'other' } },
        ],
      },
    },
    { rule: { family: 'inet', table: 'fw', chain: 'other', expr: [{ return: null }] } },
    { rule: { family: 'inet', table: 'fw', chain: 'in', expr: [{ drop: null }] } },
    {
      chain: {
        family: 'ip6',
        table: 'six',
        name: 'pre',
        type: 'filter',
        hook: 'prerouting',
        prio: 0,
        policy: 'accept',
      },
    },
    {
      chain: { family: 'arp', table: 'a', name: 'x', type: 'filter', hook: 'input', prio: 0, policy: 'drop' },
    },
  ],
});

test("nft's JSON: prerouting/forward base chains and regular chains outside lvsd's table; matches, prefixes, sets, verdicts, jumps", () => {
  const chains = parseNftRuleset(RULESET);
  assert.deepEqual(
    chains.map((c) => [c.name, c.family, c.hook, c.policy]),
    [
      ['inet fw fwd_chain', 'both', 'forward', 'drop'],
      ['inet fw other', 'both', null, 'accept'],
      ['ip6 six pre', 6, 'prerouting', 'accept'],
    ],
  );
  const rules = chains[0]!.rules;
  assert.deepEqual(
    rules.map((r) => [r.text, r.verdict, r.opaque, r.target]),
    [
      ['ct state established,related accept', 'accept', false, undefined],
      ['ip daddr 198.18.1.0/24 tcp dport { 80, 443 } accept', 'accept', false, undefined],
      ['meta iifname eth9 drop', 'drop', true, undefined],
      ['ip saddr 198.18.1.11 tcp sport 81 reject', 'drop', false, undefined],
      ['jump other', 'jump', false, 'inet fw other'],
    ],
  );
  assert.deepEqual(
    chains[1]!.rules.map((r) => [r.text, r.verdict, r.target]),
    [
      ['udp dport 53 goto other', 'goto', 'inet fw other'],
      ['return', 'return', undefined],
    ],
  );
  assert.deepEqual(rules[1]!.matches, [
    { field: 'daddr', values: [{ prefix: '198.18.1.0', len: 24 }] },
    { field: 'dport', values: [80, 443] },
    { field: 'protocol', values: [6] },
  ]);
  assert.deepEqual(parseNftRuleset('not json'), []);
});

// iptables-legacy-save of iptables 1.8.9 (Debian 12), as an older host firewall writes it.
const LEGACY = `# Generated by iptables-save v1.8.9 on Tue Dec  1 16:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.1.99
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [12:720]
:OUTPUT ACCEPT [0:0]
:web - [0:0]
-A INPUT -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth9 -j DROP
-A FORWARD -m comment --comment "the web, by \\"port\\"" -j LOG --log-prefix "fwd: "
-A FORWARD -d 198.18.1.0/24 -p tcp -m multiport --dports 80,443 -j web
-A FORWARD ! -s 10.0.0.0/8 -p udp -m udp --dport 5000:5010 -j REJECT --reject-with icmp-port-unreachable
-A FORWARD -s 198.18.1.11/32 -p tcp -m tcp --sport 80 -g web
-A web -p tcp -m tcp --dport 443 -j RETURN
-A web -j ACCEPT
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5300 -j DROP
COMMIT
`;

test('iptables-legacy-save: the raw/mangle/filter chains on prerouting and forward and their user chains', () => {
  const chains = parseIptablesSave(LEGACY, 4);
  assert.deepEqual(
    chains.map((c) => [c.name, c.family, c.hook, c.policy]),
    [
      ['iptables-legacy filter FORWARD', 4, 'forward', 'drop'],
      ['iptables-legacy filter web', 4, null, 'accept'],
      ['iptables-legacy raw PREROUTING', 4, 'prerouting', 'accept'],
    ],
  );
  const forward = chains[0]!.rules;
  assert.deepEqual(
    forward.map((r) => [r.verdict, r.opaque, r.target]),
    [
      ['accept', false, undefined],
      ['drop', true, undefined],
      ['continue', false, undefined],
      ['jump', false, 'iptables-legacy filter web'],
      ['drop', true, undefined],
      ['goto', false, 'iptables-legacy filter web'],
    ],
  );
  assert.deepEqual(forward[0]!.matches, [{ field: 'ctstate', values: ['related', 'established'] }]);
  assert.deepEqual(forward[3]!.matches, [
    { field: 'daddr', values: [{ prefix: '198.18.1.0', len: 24 }] },
    { field: 'protocol', values: [6] },
    { field: 'dport', values: [80, 443] },
  ]);
  assert.deepEqual(forward[5]!.matches, [
    { field: 'saddr', values: ['198.18.1.11'] },
    { field: 'protocol', values: [6] },
    { field: 'sport', values: [80] },
  ]);
  assert.equal(forward[3]!.text, '-d 198.18.1.0/24 -p tcp -m multiport --dports 80,443 -j web');
  assert.deepEqual(chains[2]!.rules[0]!.matches, [
    { field: 'protocol', values: [17] },
    { field: 'dport', values: [5300] },
  ]);
  const six = parseIptablesSave(
    '*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -d 2001:db8:1::11/128 -j DROP\nCOMMIT\n',
    6,
  );
  assert.deepEqual(
    six.map((c) => [c.name, c.family]),
    [['ip6tables-legacy filter FORWARD', 6]],
  );
  assert.deepEqual(six[0]!.rules[0]!.matches, [{ field: 'daddr', values: ['2001:db8:1::11'] }]);
  assert.deepEqual(parseIptablesSave('', 4), []);
});

function fakes(
  probes: Record<string, ProbeFact>,
  ruleset: string | null = null,
  legacy: string | null = null,
) {
  const snap: Snapshot = snapshot(
    [service(addrKey(IPPROTO_TCP, '198.18.0.1', 80), [dest('198.18.1.11', 80), dest('198.18.1.12', 80)])],
    {
      connections: [],
      dataPath: dataPath({
        device: zeroDeviceCounters(),
        plane: 'tun',
      }),
    },
  );
  const asked: string[] = [];
  const api = { snapshot: async () => snap } as unknown as ControlApi;
  const host: HostReader = {
    sysctl: async (path) => (/ip_forward$|forwarding$/.test(path) ? '1' : '0'),
    routeGet: async (addr) =>
      addr === '198.18.0.1' ? { dev: 'lo', type: 'local' } : { dev: 'br0', prefsrc: '198.18.1.1' },
    neighbours: async () => [],
    nftRuleset: async () => ruleset,
    netdevTable: async () => null,
    links: async () => new Map(),
    legacyRules: async (family) => (family === 4 ? legacy : null),
    probe: async (targets) =>
      targets.map((t) => {
        asked.push(probeKey(t));
        return probes[probeKey(t)] ?? { result: 'open', ms: 2 };
      }),
  };
  return { api, host, asked, snap };
}

async function doctor(args: string[], f: ReturnType<typeof fakes>) {
  let stdout = '';
  let stderr = '';
  const status = await runDoctor(args, {
    ...f,
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { status, stdout, stderr };
}

test('a clean report exits 0 and probes every real server once', async () => {
  const f = fakes({});
  const r = await doctor([], f);
  assert.equal(r.status, 0);
  assert.deepEqual(f.asked.sort(), ['TCP 198.18.1.11:80', 'TCP 198.18.1.12:80']);
  assert.match(
    r.stdout,
    /^lvsd doctor: no problem found\nhost \(the tun data plane\):\n {2}ok \(forwarding, rp_filter, send_redirects\)\nTCP 198.18.0.1:80 {2}ok\n {2}-> 198.18.1.11:80 {2}ok\n/,
  );
});

test('problems exit 1, in text and in --json; a bad argument is a usage error (2) and nothing is probed', async () => {
  const f = fakes({ 'TCP 198.18.1.12:80': { result: 'refused' } }, RULESET);
  const text = await doctor([], f);
  assert.equal(text.status, 1);
  assert.match(text.stdout, /^lvsd doctor: 1 problems, 1 warnings\n/);
  // The ruleset accepts client -> real server; the rest falls to policy drop past rules it cannot read.
  assert.match(
    text.stdout,
    /WARNING \[firewall\] the firewall chain inet fw fwd_chain \(hook forward\) drops/,
  );
  assert.match(
    text.stdout,
    /client -> 198.18.0.1:80: policy drop \(after 2 rules the doctor cannot evaluate\)/,
  );
  assert.doesNotMatch(text.stdout, /client -> 198.18.1.11:80/);
  assert.match(
    text.stdout,
    / {2}-> 198.18.1.12:80 {2}PROBLEM\n {7}PROBLEM \[refused\] refuses connections on port 80 \(RST\)/,
  );
  const json = await doctor(['--json'], f);
  assert.equal(json.status, 1);
  const report = JSON.parse(json.stdout) as {
    verdict: string;
    services: Array<{ dests: Array<{ verdict: string }> }>;
  };
  assert.equal(report.verdict, 'problem');
  assert.deepEqual(
    report.services[0]!.dests.map((d) => d.verdict),
    ['ok', 'problem'],
  );
  const bad = fakes({});
  const usage = await doctor(['--jsn'], bad);
  assert.deepEqual([usage.status, usage.stdout, usage.stderr], [2, '', 'Usage: lvsadm doctor [--json]\n']);
  assert.deepEqual(bad.asked, []);
});

test('legacy iptables rules are read beside nftables: a drop there is named with its rule', async () => {
  const f = fakes({}, null, LEGACY);
  const r = await doctor([], f);
  // Past rules on an interface and a negated address, a warning (exit 0).
  assert.equal(r.status, 0, r.stdout);
  // The web chain accepts client -> real server; the replies from port 80 go to it too; the rest is policy drop.
  assert.match(
    r.stdout,
    /WARNING \[firewall\] the firewall chain iptables-legacy filter FORWARD \(hook forward\) drops/,
  );
  assert.match(r.stdout, /client -> 198.18.0.1:80: policy drop \(after 2 rules the doctor cannot evaluate\)/);
  assert.doesNotMatch(r.stdout, /client -> 198.18.1.11:80/);
  assert.doesNotMatch(r.stdout, /198.18.1.11:80 -> client/);
  assert.match(r.stdout, /198.18.1.12:80 -> client: policy drop/);
});

// `nft list table netdev lvsd` as lvsd's packet plane leaves it (src/dataplane/l2-filter.ts), sets cut.
const NETDEV_TABLE = `table netdev lvsd {
	chain steer {
		meta pkttype != host return
	}

	chain in0 {
		type filter hook ingress device "br0" priority -500; policy accept;
		jump steer
	}

	chain in1 {
		type filter hook ingress device "pub0" priority -500; policy accept;
		jump steer
	}
}
`;

test("nft's netdev listing: the interfaces of its ingress chains, one device or several a chain", () => {
  assert.deepEqual(parseNetdevIngress(NETDEV_TABLE), ['br0', 'pub0']);
  assert.deepEqual(
    parseNetdevIngress('chain x {\n type filter hook ingress devices = { "eth1", "eth0" } priority -500;'),
    ['eth0', 'eth1'],
  );
  assert.deepEqual(parseNetdevIngress('table netdev lvsd {\n}\n'), []);
});

test("on the packet plane: its netdev table and interfaces are read, the firewall's hooks are not its path", async () => {
  const f = fakes({}, RULESET);
  f.snap.dataPath.plane = 'packet';
  f.snap.dataPath.interfaces = ['br0', 'pub0'];
  const up = { up: true, carrier: true, state: 'UP' };
  const tables: string[] = [];
  f.host.links = async () =>
    new Map([
      ['br0', up],
      ['pub0', up],
      ['eth9', { ...up, up: false }],
    ]);
  f.host.netdevTable = async (name) => {
    tables.push(name);
    return NETDEV_TABLE;
  };
  const clean = await doctor([], f);
  assert.equal(clean.status, 0, clean.stdout);
  assert.deepEqual(tables, ['lvsd']);
  assert.match(
    clean.stdout,
    /^lvsd doctor: no problem found\nhost \(the packet data plane\):\n {2}ok \(the packet plane's netdev ingress drop and link on br0, pub0\)\n/,
  );
  // RULESET's forward chain drops by policy (a warning on the TUN plane): these frames never reach it.
  assert.doesNotMatch(clean.stdout, /firewall/);

  f.host.netdevTable = async () => NETDEV_TABLE.replace(/\tchain in1 \{[^}]*\}\n/, '');
  f.host.links = async () => new Map([['br0', up]]);
  const broken = await doctor(['--json'], f);
  assert.equal(broken.status, 1);
  const report = JSON.parse(broken.stdout) as {
    dataplane: string;
    host: Array<{ check: string; message: string }>;
  };
  assert.equal(report.dataplane, 'packet');
  assert.deepEqual(
    report.host.map((h) => h.check),
    ['link-down', 'netdev-ingress'],
  );
  assert.match(report.host[1]!.message, /ingress drop is missing on pub0:/);
});
