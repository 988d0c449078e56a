import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fwmarkDeviceName } from '../../src/dataplane/device.js';
import { HostNetwork } from '../../src/dataplane/host.js';
import { HostJournalError } from '../../src/dataplane/host-journal.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import { serviceSnapshot } from '../helpers/snapshots.js';
import { FakeSystem } from './fake-system.js';

const STATE = '/var/lib/lvsd-test';
const JOURNAL = `${STATE}/host-journal.json`;

const service = serviceSnapshot;

function setup(): { system: FakeSystem; host: HostNetwork } {
  const system = new FakeSystem();
  system.files.set('/proc/sys/net/ipv4/ip_forward', '0\n');
  system.files.set('/proc/sys/net/ipv4/tcp_early_demux', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/all/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/default/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/accept_local', '0\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/rp_filter', '0\n');
  system.files.set('/proc/sys/net/ipv4/conf/eth0/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/eth1/send_redirects', '1\n');
  system.routes.set('198.18.0.1', { type: 'local', dev: 'lo' });
  system.routes.set('198.18.1.11', { type: 'unicast', dev: 'eth1' });
  system.routes.set('198.18.1.12', { type: 'unicast', dev: 'eth1' });
  return { system, host: new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' }) };
}

const web = service('198.18.0.1', IPPROTO_TCP, 80, [
  ['198.18.1.11', 80],
  ['198.18.1.12', 80],
]);

describe('HostNetwork', () => {
  it('does not steer the replies of a tunnelled real server: it answers the client itself', () => {
    const { system, host } = setup();
    const mixed = service('198.18.0.1', IPPROTO_TCP, 80, [
      ['198.18.1.11', 80],
      ['198.18.1.12', 80],
    ]);
    mixed.dests[0]!.method = 'tunnel';
    host.sync([mixed]);
    const facts = system.state().facts;
    assert.ok(facts.includes('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    assert.ok(!facts.some((f) => f.includes('198.18.1.11')), 'no reply or ICMP match for the tunnelled one');
    assert.ok(facts.includes('nft element inet lvsd real4 198.18.1.12 . tcp . 80'));
  });

  it('steers only the service and its real servers replies, with forwarding on and redirects off', () => {
    const { system, host } = setup();
    host.sync([web]);
    const facts = system.state().facts;
    assert.ok(facts.includes('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    assert.ok(facts.includes('nft element inet lvsd real4 198.18.1.11 . tcp . 80'));
    assert.ok(facts.includes('nft element inet lvsd real4 198.18.1.12 . tcp . 80'));
    assert.ok(facts.includes('ip -4 route default dev lvs0 table 19542'));
    assert.ok(facts.includes('ip -4 rule pref 90 fwmark 19542 lookup 19542'));
    // The local table now comes after our mark rule, and still exists.
    assert.ok(!facts.includes('ip -4 rule pref 0 lookup local'));
    assert.ok(facts.includes('ip -4 rule pref 100 lookup local'));
    assert.equal(system.files.get('/proc/sys/net/ipv4/ip_forward'), '1');
    for (const dev of ['all', 'default', 'lvs0', 'eth1']) {
      assert.equal(system.files.get(`/proc/sys/net/ipv4/conf/${dev}/send_redirects`), '0', dev);
    }
    assert.equal(system.files.get('/proc/sys/net/ipv4/conf/lvs0/accept_local'), '1');
    // A local VIP needs no route of its own nor proxy ARP.
    assert.ok(!facts.some((f) => f.includes('neigh') || f.includes('198.18.0.1/32')));
    const ruleset = /table inet lvsd \{[\s\S]*\}/.exec(system.calls.join('\n'));
    assert.equal(ruleset, null, 'the ruleset goes through stdin, not argv');
  });

  it('stop leaves the host exactly as found, sysctls included', () => {
    const { system, host } = setup();
    const before = system.state();
    host.sync([web, service('198.18.0.9', IPPROTO_UDP, 53, [['198.18.1.11', 53]])]);
    assert.notDeepEqual(system.state(), before);
    host.stop();
    assert.deepEqual(system.state(), before);
  });

  it('a non-local VIP gets a host route to the device and proxy ARP on the client side', () => {
    const { system, host } = setup();
    host.sync([service('198.18.0.9', IPPROTO_TCP, 80, [])]);
    assert.ok(system.facts.has('ip -4 route 198.18.0.9/32 dev lvs0'));
    assert.ok(system.facts.has('ip -4 neigh proxy 198.18.0.9 dev eth0'));
    host.sync([web]);
    assert.ok(!system.facts.has('ip -4 route 198.18.0.9/32 dev lvs0'));
    assert.ok(!system.facts.has('ip -4 neigh proxy 198.18.0.9 dev eth0'));
  });

  it('a floating VIP (VRRP owns it) gets neither a route nor proxy ARP, present or not', () => {
    const system = setup().system;
    const host = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0', floatingVips: true });
    const before = system.state();
    // 198.18.0.9 is absent here (this director is VRRP's backup); 198.18.0.1 is present.
    host.sync([service('198.18.0.9', IPPROTO_TCP, 80, [['198.18.1.11', 80]]), web]);
    assert.ok(!system.facts.has('ip -4 route 198.18.0.9/32 dev lvs0'));
    assert.ok(![...system.facts].some((f) => f.includes('neigh proxy')));
    assert.ok(system.facts.has('nft element inet lvsd svc4 198.18.0.9 . tcp . 80'));
    // It may become local at any time: TCP early demux must not catch its packets.
    assert.equal(system.files.get('/proc/sys/net/ipv4/tcp_early_demux'), '0');
    host.stop();
    assert.deepEqual(system.state(), before);
  });

  it('per-service steering follows deletions; the last service takes everything with it', () => {
    const { system, host } = setup();
    const before = system.state();
    const dns = service('198.18.0.1', IPPROTO_UDP, 53, [['198.18.1.12', 53]]);
    host.sync([web, dns]);
    const oneReal = { ...web, dests: web.dests.slice(1) };
    host.sync([oneReal, dns]);
    assert.ok(!system.facts.has('nft element inet lvsd real4 198.18.1.11 . tcp . 80'));
    assert.ok(system.facts.has('nft element inet lvsd real4 198.18.1.12 . tcp . 80'));
    host.sync([dns]);
    assert.ok(!system.facts.has('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    assert.ok(system.facts.has('nft element inet lvsd svc4 198.18.0.1 . udp . 53'));
    assert.ok(system.facts.has('ip -4 rule pref 90 fwmark 19542 lookup 19542'));
    host.sync([]);
    assert.deepEqual(system.state(), before);
  });

  it('journals before changing, so a new process undoes what a crashed one left', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    system.files.set('/proc/sys/net/ipv6/conf/eth0/proxy_ndp', '0\n');
    const fwmark = fwmarkService(system, 0xffff_ffff);
    const before = system.state();
    host.sync([
      web,
      fwmark,
      service('198.18.0.9', IPPROTO_TCP, 80, []),
      service('2001:db8::9', IPPROTO_TCP, 80, []),
    ]);
    assert.ok(system.files.has(JOURNAL));
    // The first process dies here; the next one starts over the same state directory.
    const next = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    assert.ok(next.recover() > 0);
    assert.deepEqual(system.state(), before);
    assert.equal(next.recover(), 0);
  });

  it('a command that fails leaves nothing journaled for it and the rest undoable', () => {
    const { system, host } = setup();
    const before = system.state();
    system.failing = 'ip -4 rule add pref 90';
    assert.throws(() => host.sync([web]), /injected failure/);
    const journal = JSON.parse(system.files.get(JOURNAL)!) as { entries: { key: string }[] };
    assert.ok(!journal.entries.some((e) => e.key === 'rule:4'));
    system.failing = null;
    host.stop();
    assert.deepEqual(system.state(), before);
  });

  it('an IPv6 service turns on v6 forwarding and v6 rules, and undoes them', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    system.routes.set('2001:db8::1', { type: 'local', dev: 'lo' });
    const before = system.state();
    host.sync([service('2001:db8::1', IPPROTO_TCP, 443, [['2001:db8:1::11', 443]])]);
    assert.equal(system.files.get('/proc/sys/net/ipv6/conf/all/forwarding'), '1');
    assert.ok(system.facts.has('ip -6 rule pref 90 fwmark 19542 lookup 19542'));
    assert.ok(system.facts.has('nft element inet lvsd real6 2001:db8:1::11 . tcp . 443'));
    host.stop();
    assert.deepEqual(system.state(), before);
  });
});

const EARLY_DEMUX = '/proc/sys/net/ipv4/tcp_early_demux';
const FWMARK_TABLE = 0x4c56_0000;

/** A fwmark service: marked packets of any protocol; the worker has made its device. */
function fwmarkService(system: FakeSystem, mark: number, af: 4 | 6 = 4, reals: [string, number][] = []) {
  const dev = fwmarkDeviceName(mark);
  for (const name of ['send_redirects', 'accept_local', 'rp_filter']) {
    system.files.set(`/proc/sys/net/ipv4/conf/${dev}/${name}`, name === 'send_redirects' ? '1\n' : '0\n');
  }
  return service(af === 4 ? '0.0.0.0' : '::', 0, 0, reals, mark);
}

describe('HostNetwork: a local VIP taken over from a local server (TIME_WAIT and early demux)', () => {
  it('a TCP service on a local VIP turns TCP early demux off, and its removal turns it back on', () => {
    const { system, host } = setup();
    host.sync([web]);
    assert.equal(system.files.get(EARLY_DEMUX), '0');
    const dns = service('198.18.0.1', IPPROTO_UDP, 53, [['198.18.1.12', 53]]);
    host.sync([dns]);
    assert.equal(system.files.get(EARLY_DEMUX), '1\n', 'a UDP service needs no change');
    host.sync([web, dns]);
    host.stop();
    assert.equal(system.files.get(EARLY_DEMUX), '1\n');
  });

  it('an IPv6 TCP service on a local VIP does the same (the IPv4 sysctl governs both)', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    system.routes.set('2001:db8::1', { type: 'local', dev: 'lo' });
    host.sync([service('2001:db8::1', IPPROTO_TCP, 443, [['2001:db8:1::11', 443]])]);
    assert.equal(system.files.get(EARLY_DEMUX), '0');
  });

  it('a VIP that is no local address has no local sockets: early demux stays on', () => {
    const { system, host } = setup();
    host.sync([service('198.18.0.9', IPPROTO_TCP, 80, [['198.18.1.11', 80]])]);
    assert.equal(system.files.get(EARLY_DEMUX), '1\n');
  });
});

describe('HostNetwork: the journal is data', () => {
  const crafted = (entries: unknown): string =>
    JSON.stringify({ format: 'lvsd-host-journal', version: 2, entries });

  it('is written as known kinds of changes, never as command lines', () => {
    const { system, host } = setup();
    host.sync([web, service('198.18.0.9', IPPROTO_TCP, 80, [])]);
    const journal = JSON.parse(system.files.get(JOURNAL)!) as {
      format: string;
      entries: { key: string; changes: { kind: string }[] }[];
    };
    assert.equal(journal.format, 'lvsd-host-journal');
    const kinds = new Set(journal.entries.flatMap((e) => e.changes.map((c) => c.kind)));
    assert.deepEqual([...kinds].sort(), [
      'nft-table',
      'proxy-neigh',
      'route',
      'rule',
      'rule-removed',
      'sysctl',
    ]);
    assert.doesNotMatch(system.files.get(JOURNAL)!, /"(undo|argv)"|\[\s*"(ip|nft|sh)"/);
  });

  it('an old journal of command lines is refused and nothing in it runs', () => {
    const { system } = setup();
    const before = system.state();
    const old = [{ key: 'x', kind: 'added', undo: [['sh', '-c', 'touch /tmp/pwned']] }];
    system.files.set(JOURNAL, JSON.stringify(old));
    const host = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    assert.throws(
      () => host.recover(),
      (e: Error) => e instanceof HostJournalError && /command lines/.test(e.message),
    );
    assert.deepEqual(system.calls, []);
    assert.equal(system.files.get(JOURNAL), JSON.stringify(old), 'the journal is kept for the operator');
    system.files.delete(JOURNAL);
    assert.deepEqual(system.state(), before);
  });

  const bad: [string, unknown][] = [
    [
      'a sysctl lvsd never writes',
      { kind: 'sysctl', path: 'kernel/core_pattern', value: '1', previous: '0' },
    ],
    [
      'a sysctl path escaping /proc/sys',
      { kind: 'sysctl', path: 'net/ipv4/conf/../../../../etc/passwd/rp_filter', value: '0', previous: '1' },
    ],
    [
      'a sysctl value that is no number',
      { kind: 'sysctl', path: 'net/ipv4/ip_forward', value: '1', previous: '|/bin/sh' },
    ],
    ['another nft table', { kind: 'nft-table', table: 'filter' }],
    [
      'a device that is no fwmark device',
      {
        kind: 'route',
        family: 4,
        blackhole: false,
        dst: 'default',
        dev: 'lvsf4294967296',
        table: 19542,
        metric: null,
      },
    ],
    ['an unknown kind', { kind: 'exec', argv: ['sh', '-c', 'reboot'] }],
    ['an extra field', { kind: 'nft-table', table: 'lvsd', argv: ['reboot'] }],
    ['a rule to the main table', { kind: 'rule', family: 4, pref: 90, fwmark: null, lookup: 254 }],
    [
      'a rule removed that is not the local one',
      { kind: 'rule-removed', family: 4, pref: 32766, lookup: 'main' },
    ],
    ['a family that is neither', { kind: 'rule', family: 5, pref: 90, fwmark: null, lookup: 'local' }],
    [
      'a route through a foreign device',
      { kind: 'route', family: 4, blackhole: false, dst: 'default', dev: 'eth0', table: 19542, metric: null },
    ],
    [
      'the default route of the main table',
      { kind: 'route', family: 4, blackhole: false, dst: 'default', dev: 'lvs0', table: null, metric: null },
    ],
    [
      'a network route in the main table',
      {
        kind: 'route',
        family: 4,
        blackhole: false,
        dst: '198.18.0.0/24',
        dev: 'lvs0',
        table: null,
        metric: null,
      },
    ],
    [
      'a table outside ours',
      { kind: 'route', family: 4, blackhole: true, dst: 'default', dev: null, table: 100, metric: 1 },
    ],
    [
      'an address that is not one',
      { kind: 'proxy-neigh', family: 4, addr: '198.18.0.9 dev eth0; reboot', dev: 'eth0' },
    ],
    ['an address of the other family', { kind: 'proxy-neigh', family: 6, addr: '198.18.0.9', dev: 'eth0' }],
    [
      'an interface name that is not one',
      { kind: 'proxy-neigh', family: 4, addr: '198.18.0.9', dev: 'eth0 extra words' },
    ],
    ['a number that is not', { kind: 'rule', family: 4, pref: '90; reboot', fwmark: null, lookup: 'local' }],
  ];
  for (const [what, change] of bad) {
    it(`refuses ${what}, running nothing`, () => {
      const { system } = setup();
      // A valid entry first: nothing of it runs either.
      const valid = { key: 'nft', changes: [{ kind: 'nft-table', table: 'lvsd' }] };
      system.files.set(JOURNAL, crafted([valid, { key: 'crafted', changes: [change] }]));
      const host = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
      assert.throws(
        () => host.recover(),
        /refusing the host journal .*entry 2 \(crafted\), change 1: .+ Nothing in it was run/,
      );
      assert.deepEqual(system.calls, []);
    });
  }

  it('refuses what is not a journal: corrupt JSON, another format, a repeated key', () => {
    for (const text of [
      '{"format": "lvsd-host-journal", "vers',
      '{"format": "other", "version": 2, "entries": []}',
      crafted([
        { key: 'nft', changes: [] },
        { key: 'nft', changes: [] },
      ]),
      crafted([{ key: 'bad key; rm', changes: [] }]),
    ]) {
      const { system } = setup();
      system.files.set(JOURNAL, text);
      assert.throws(
        () => new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' }).recover(),
        HostJournalError,
      );
      assert.deepEqual(system.calls, []);
    }
  });

  it('a corrupted journal is refused whole or undone as lvsd would undo it, never anything else', () => {
    const { system, host } = setup();
    host.sync([web, service('198.18.0.9', IPPROTO_TCP, 80, [['198.18.1.11', 80]])]);
    const text = system.files.get(JOURNAL)!;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(text.length - 1), fc.string({ minLength: 1, maxLength: 1 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (edits) => {
          const chars = [...text];
          for (const [at, c] of edits) chars[at] = c;
          const next = new FakeSystem();
          next.files.set(JOURNAL, chars.join(''));
          try {
            new HostNetwork({ system: next, stateDir: STATE, tunName: 'lvs0' }).recover();
          } catch (error) {
            assert.ok(error instanceof HostJournalError, String(error));
            assert.deepEqual(next.calls, []);
            return;
          }
          for (const call of next.calls) {
            assert.match(call, /^(ip -[46] (rule|route|neigh) (add|del) |nft delete table inet lvsd$)/, call);
          }
          for (const path of next.files.keys()) assert.match(path, /^\/proc\/sys\/net\/|host-journal/, path);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('HostNetwork: fwmark services go to their own device', () => {
  it('a routing table per mark with its device, its rule, its blackhole and sysctls; all undone with the service', () => {
    const { system, host } = setup();
    const before = system.state();
    const seven = fwmarkService(system, 7, 4, [['198.18.1.11', 80]]);
    const eight = fwmarkService(system, 8);
    const nine = fwmarkService(system, 9);
    const withDevices = system.state();
    host.sync([web, seven, eight]);
    const t7 = FWMARK_TABLE;
    const t8 = FWMARK_TABLE + 1;
    for (const [mark, table] of [
      [7, t7],
      [8, t8],
    ] as const) {
      assert.ok(system.facts.has(`ip -4 route default dev lvsf${mark} table ${table}`), `${mark}`);
      assert.ok(system.facts.has(`ip -4 route blackhole default table ${table} metric 4294967295`));
      assert.ok(system.facts.has(`ip -4 rule pref 90 fwmark ${mark} lookup ${table}`));
      assert.ok(!system.facts.has(`ip -4 rule pref 90 fwmark ${mark} lookup 19542`));
      assert.equal(system.files.get(`/proc/sys/net/ipv4/conf/lvsf${mark}/send_redirects`), '0');
      assert.equal(system.files.get(`/proc/sys/net/ipv4/conf/lvsf${mark}/accept_local`), '1');
      assert.equal(system.files.get(`/proc/sys/net/ipv4/conf/lvsf${mark}/rp_filter`)?.trim(), '0');
    }
    // Their real servers' replies still come back through the main device.
    assert.ok(system.facts.has('nft element inet lvsd real4 198.18.1.11 . udp . 80'));
    host.sync([web, eight]);
    assert.ok(!system.facts.has(`ip -4 route default dev lvsf7 table ${t7}`));
    assert.ok(!system.facts.has(`ip -4 route blackhole default table ${t7} metric 4294967295`));
    assert.ok(!system.facts.has(`ip -4 rule pref 90 fwmark 7 lookup ${t7}`));
    assert.equal(system.files.get('/proc/sys/net/ipv4/conf/lvsf7/accept_local'), '0\n');
    // A new mark takes the free table.
    host.sync([web, eight, nine]);
    assert.ok(system.facts.has(`ip -4 rule pref 90 fwmark 9 lookup ${t7}`));
    host.stop();
    assert.deepEqual(system.state().facts, before.facts);
    assert.deepEqual(system.state().files, withDevices.files);
  });

  it('an IPv6 fwmark service gets a v6 table, device route and rule', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    host.sync([fwmarkService(system, 5, 6)]);
    assert.ok(system.facts.has(`ip -6 route default dev lvsf5 table ${FWMARK_TABLE}`));
    assert.ok(system.facts.has(`ip -6 rule pref 90 fwmark 5 lookup ${FWMARK_TABLE}`));
    assert.ok(system.facts.has(`ip -6 route blackhole default table ${FWMARK_TABLE} metric 4294967295`));
  });

  it('names the device of a mark for the worker', () => {
    assert.equal(fwmarkDeviceName(7), 'lvsf7');
    assert.equal(fwmarkDeviceName(0xffff_ffff), 'lvsf4294967295');
    assert.ok(fwmarkDeviceName(0xffff_ffff).length <= 15, 'IFNAMSIZ');
  });

  it('refuses lvsd own steering mark as a service mark, changing nothing', () => {
    const { system, host } = setup();
    const before = system.state();
    assert.throws(
      () => host.sync([fwmarkService(system, 0x4c56)]),
      /fwmark 19542 is the mark lvsd's own steering sets/,
    );
    system.files.delete('/proc/sys/net/ipv4/conf/lvsf19542/send_redirects');
    system.files.delete('/proc/sys/net/ipv4/conf/lvsf19542/accept_local');
    system.files.delete('/proc/sys/net/ipv4/conf/lvsf19542/rp_filter');
    assert.deepEqual(system.state(), before);
  });

  it('a device that is missing fails the change and leaves nothing journaled for it', () => {
    const { system, host } = setup();
    const svc = fwmarkService(system, 3);
    system.failing = 'ip -4 route add default dev lvsf3';
    assert.throws(() => host.sync([web, svc]), /injected failure/);
    assert.ok(!system.facts.has(`ip -4 route blackhole default table ${FWMARK_TABLE} metric 4294967295`));
    assert.equal(system.files.get('/proc/sys/net/ipv4/conf/lvsf3/accept_local'), '0\n');
    assert.doesNotMatch(system.files.get(JOURNAL)!, /fwmark:4:3/);
  });
});

describe('HostNetwork: fail closed', () => {
  it('every lvsd table ends in a blackhole that outlives the device (lvsd killed)', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    system.routes.set('2001:db8::1', { type: 'local', dev: 'lo' });
    host.sync([web, service('2001:db8::1', IPPROTO_TCP, 443, [['2001:db8:1::11', 443]])]);
    // The process dies: its TUN device goes, and the kernel drops the routes through it.
    system.linkDown('lvs0');
    for (const family of [4, 6]) {
      const table = [...system.facts].filter(
        (f) => f.startsWith(`ip -${family} route `) && f.includes('table 19542'),
      );
      assert.deepEqual(table, [`ip -${family} route blackhole default table 19542 metric 4294967295`]);
      // ...while the rule sending marked packets to that table stays.
      assert.ok(system.facts.has(`ip -${family} rule pref 90 fwmark 19542 lookup 19542`));
    }
  });
});

describe('HostNetwork: verify and repair', () => {
  it('finds nothing missing right after a sync, and repairs nothing', () => {
    const { system, host } = setup();
    host.sync([web]);
    system.calls.length = 0;
    assert.deepEqual(host.verify(), []);
    assert.deepEqual(host.repair(), { repaired: [], failed: [] });
    assert.ok(
      system.calls.every((c) => / -j /.test(` ${c} `)),
      'only listings were run',
    );
  });

  it('a sysctls-only repair puts back a reset sysctl without listing anything, and leaves the rest to a full one', () => {
    const { system, host } = setup();
    host.sync([web]);
    const steered = system.state();
    system.files.set('/proc/sys/net/ipv4/ip_forward', '0');
    system.flushRuleset();
    system.calls.length = 0;
    assert.deepEqual(host.repair('sysctls'), { repaired: ['sysctl net.ipv4.ip_forward=1'], failed: [] });
    assert.deepEqual(system.calls, [], 'no ip, no nft');
    assert.equal(system.files.get('/proc/sys/net/ipv4/ip_forward'), '1');
    assert.deepEqual(host.repair(), { repaired: ['nft table inet lvsd'], failed: [] });
    assert.deepEqual(system.state(), steered);
  });

  it('after a firewall reload (nft flush ruleset), puts the table back whole with its elements', () => {
    const { system, host } = setup();
    host.sync([web]);
    const steered = system.state();
    system.flushRuleset();
    assert.deepEqual(host.verify(), ['nft table inet lvsd']);
    assert.deepEqual(host.repair(), { repaired: ['nft table inet lvsd'], failed: [] });
    assert.deepEqual(system.state(), steered);
    assert.deepEqual(host.verify(), []);
  });

  it('notices lost set elements or rules in a table that is still there', () => {
    const { system, host } = setup();
    host.sync([web]);
    system.facts.delete('nft element inet lvsd svc4 198.18.0.1 . tcp . 80');
    assert.deepEqual(host.verify(), ['nft table inet lvsd']);
    host.repair();
    assert.ok(system.facts.has('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    system.nftTables.set('inet lvsd', { chains: 3, rules: 0 });
    assert.deepEqual(host.verify(), ['nft table inet lvsd']);
    host.repair();
    assert.deepEqual(host.verify(), []);
  });

  it('after the device went down and up, puts back exactly the routes through it', () => {
    const { system, host } = setup();
    host.sync([web, service('198.18.0.9', IPPROTO_TCP, 80, [])]);
    const steered = system.state();
    system.linkDown('lvs0');
    const missing = ['ip -4 route default dev lvs0 table 19542', 'ip -4 route 198.18.0.9/32 dev lvs0'];
    assert.deepEqual(host.verify(), missing);
    system.calls.length = 0;
    assert.deepEqual(host.repair(), { repaired: missing, failed: [] });
    assert.deepEqual(
      system.calls.filter((c) => !c.includes(' -j ')),
      ['ip -4 route add default dev lvs0 table 19542', 'ip -4 route add 198.18.0.9/32 dev lvs0'],
    );
    assert.deepEqual(system.state(), steered);
  });

  it('puts back sysctls, rules and proxy neighbours that someone changed', () => {
    const { system, host } = setup();
    host.sync([service('198.18.0.9', IPPROTO_TCP, 80, [['198.18.1.11', 80]])]);
    const steered = system.state();
    system.files.set('/proc/sys/net/ipv4/ip_forward', '0\n');
    system.facts.delete('ip -4 rule pref 90 fwmark 19542 lookup 19542');
    system.facts.add('ip -4 rule pref 0 lookup local');
    system.facts.delete('ip -4 neigh proxy 198.18.0.9 dev eth0');
    const missing = [
      'sysctl net.ipv4.ip_forward=1',
      'no ip -4 rule pref 0 lookup local',
      'ip -4 rule pref 90 fwmark 19542 lookup 19542',
      'ip -4 neigh proxy 198.18.0.9 dev eth0',
    ];
    assert.deepEqual(host.verify(), missing);
    assert.deepEqual(host.repair().repaired, missing);
    assert.deepEqual(system.state(), steered);
  });

  it('reports what it cannot put back and goes on with the rest', () => {
    const { system, host } = setup();
    host.sync([web, fwmarkService(system, 4)]);
    system.flushRuleset();
    system.linkDown('lvsf4');
    system.failing = 'ip -4 route add default dev lvsf4';
    const report = host.repair();
    assert.deepEqual(report.repaired, ['nft table inet lvsd']);
    assert.equal(report.failed.length, 1);
    assert.match(report.failed[0]!, /^ip -4 route default dev lvsf4 table 1280704512: .*injected failure/);
  });
});

/** The FakeSystem, keeping the nft scripts it was given. */
function scriptedSetup(system = setup().system) {
  const scripts: string[] = [];
  const run = system.run.bind(system);
  system.run = (argv, input) => {
    if (input !== undefined && argv.join(' ') === 'nft -f -') scripts.push(input);
    return run(argv, input);
  };
  return { system, host: new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' }), scripts };
}

/** A direct flow the kernel remembered: the client 198.18.0.2:45994 asked 198.18.1.11:80 itself. */
const DIRECT_FLOW = '198.18.1.11 . tcp . 80 . 198.18.0.2 . 45994';

describe('HostNetwork: flows that reach a real server directly', () => {
  it('are remembered by the kernel and their replies pass, never those of lvsd own connections', () => {
    const { host, scripts } = scriptedSetup();
    host.sync([web]);
    const lines = scripts[0]!.split('\n').map((line) => line.trim());
    const at = (pattern: RegExp): number => {
      const found = lines.findIndex((line) => pattern.test(line));
      assert.ok(found >= 0, `${pattern} in the ruleset`);
      return found;
    };
    assert.match(
      scripts[0]!,
      /set pass4 \{ type ipv4_addr \. inet_proto \. inet_service \. ipv4_addr \. inet_service; size 4096; flags dynamic, timeout; \}/,
    );
    assert.match(scripts[0]!, /set pass6 \{ type ipv6_addr \. inet_proto/);
    // lvsd's own connection to a real server (out of any of its devices, a fwmark service's too)
    // ends a direct flow on its tuple, and is never taken for a direct request.
    const devices = '\\{ "lvs0", "lvsf\\*" \\}';
    const returns = [at(/^iifname "lvs0" notrack return$/), at(/^iifname "lvsf\*" return$/)];
    for (const family of ['4', '6']) {
      const deletes = at(
        new RegExp(
          `^iifname ${devices} delete @pass${family} \\{ ip6? daddr \\. meta l4proto \\. th dport \\. ip6? saddr \\. th sport \\}$`,
        ),
      );
      assert.ok(returns.every((i) => deletes < i));
      assert.ok(returns.every((i) => i < at(new RegExp(`@real${family} add @pass${family} `))));
    }
    // A direct flow's replies return before any rule steers a real server's replies.
    const passes = at(/^ip saddr \. meta l4proto \. th sport \. ip daddr \. th dport @pass4 return$/);
    const steers = lines.flatMap((line, i) =>
      /^ip6? saddr .*@real[46].*meta mark set/.test(line) ? [i] : [],
    );
    assert.equal(steers.length, 4);
    assert.ok(steers.every((i) => i > passes));
    // Requests are remembered only when nothing steered them, short at first, longer once a flow.
    assert.match(
      scripts[0]!,
      /meta mark != 19542 ip daddr \. meta l4proto \. th dport @real4 add @pass4 \{ [^}]+ timeout 60s \}/,
    );
    assert.match(
      scripts[0]!,
      /meta mark != 19542 ip daddr [^@]+@pass4 update @pass4 \{ [^}]+ timeout 300s \} return/,
    );
    // A real server's ICMP errors are steered after conntrack, unless it relates them to a direct
    // flow (what lvsd gives back to the kernel is not steered again).
    assert.match(
      scripts[0]!,
      /chain errors \{\n\s+type filter hook prerouting priority mangle - 10;[^\n]*\n(\s+iifname "lvs0" [^\n]+ drop\n){4}\s+iifname \{ "lvs0", "lvsf\*" \} return\n\s+ip saddr @rip4 icmp type \{[^}]+\} fib daddr type != local ct state != related meta mark set 19542 notrack/,
    );
    // A real server's packet that the director read off the wire and gave back (--dataplane packet)
    // is tracked, and leaves only as the reply of a flow conntrack saw (lvsd's are never tracked).
    for (const [ip, real, rip, icmp] of [
      ['ip', 'real4', 'rip4', 'icmp'],
      ['ip6', 'real6', 'rip6', 'icmpv6'],
    ] as const) {
      const tracked = at(
        new RegExp(`^iifname "lvs0" ${ip} saddr \\. meta l4proto \\. th sport @${real} return$`),
      );
      const trackedError = at(new RegExp(`^iifname "lvs0" ${ip} saddr @${rip} ${icmp} type .* return$`));
      assert.ok(tracked < returns[0]! && trackedError < returns[0]!);
      at(
        new RegExp(
          `^iifname "lvs0" ${ip} saddr \\. meta l4proto \\. th sport @${real} ct state != established drop$`,
        ),
      );
      at(new RegExp(`^iifname "lvs0" ${ip} saddr @${rip} ${icmp} type .* ct state != related drop$`));
    }
    assert.ok(!lines.some((line) => /^ip6? saddr @rip[46] /.test(line) && !/ct state != related/.test(line)));
  });

  it('go on through a restart: the hold lets them pass and the next lvsd takes them with the time they had left', () => {
    const { system, host, scripts } = scriptedSetup();
    host.sync([web]);
    system.facts.add(`nft element inet lvsd pass4 ${DIRECT_FLOW} timeout 250s`);
    // A listing the kernel would never give: not copied into nft input.
    system.facts.add('nft element inet lvsd pass4 198.18.1.11 . tcp . 80 . 198.18.0.2 } flush ruleset { . 1');
    host.hold(30_000);
    const hold = scripts.at(-1)!;
    assert.match(
      hold,
      /set pass4 \{ type ipv4_addr \. inet_proto \. inet_service \. ipv4_addr \. inet_service; flags timeout; \}/,
    );
    const lines = hold.split('\n').map((line) => line.trim());
    const accepted = lines.indexOf('ip saddr . meta l4proto . th sport . ip daddr . th dport @pass4 accept');
    const dropped = lines.indexOf('ip saddr . meta l4proto . th sport @real4 fib daddr type != local drop');
    assert.ok(accepted >= 0 && accepted < dropped, hold);
    assert.ok(lines.includes(`add element inet lvsd_hold pass4 { ${DIRECT_FLOW} timeout 250s }`), hold);
    assert.ok(!hold.includes('flush ruleset'));
    host.stop({ keepHold: true });
    assert.ok(system.facts.has(`nft element inet lvsd_hold pass4 ${DIRECT_FLOW} timeout 250s`));

    const next = scriptedSetup(system);
    next.host.recover();
    next.host.sync([web]);
    assert.ok(next.scripts[0]!.includes(`add element inet lvsd pass4 { ${DIRECT_FLOW} timeout 250s }`));
    next.host.releaseHold();
    assert.ok(system.facts.has(`nft element inet lvsd pass4 ${DIRECT_FLOW} timeout 250s`));
    assert.ok(![...system.facts].some((fact) => fact.includes('lvsd_hold')));
  });

  it('a repair that recreates the table keeps them; a firewall reload that removed them does not bring them back', () => {
    const { system, host, scripts } = scriptedSetup();
    host.sync([web]);
    system.facts.add(`nft element inet lvsd pass4 ${DIRECT_FLOW} timeout 120s`);
    system.nftTables.get('inet lvsd')!.rules--;
    assert.deepEqual(host.repair().repaired, ['nft table inet lvsd']);
    assert.ok(scripts.at(-1)!.includes(`add element inet lvsd pass4 { ${DIRECT_FLOW} timeout 120s }`));
    system.flushRuleset();
    assert.deepEqual(host.repair().repaired, ['nft table inet lvsd']);
    assert.ok(!scripts.at(-1)!.includes('add element inet lvsd pass4'));
  });
});

describe('HostNetwork: the restart hold', () => {
  const holdSetup = () => scriptedSetup();
  const dns = service('198.18.0.1', IPPROTO_UDP, 53, [['198.18.1.11', 53]]);
  /** A run that steered the web service, stopped for a restart; the host as it was before it. */
  function heldAndStopped() {
    const { system, host } = holdSetup();
    const before = system.state();
    host.sync([web]);
    host.hold(30_000);
    host.stop({ keepHold: true });
    return { system, host, before };
  }
  const HOLD_TABLE = 'nft table inet lvsd_hold';

  it('drops what lvsd steered, both ways, with kernel-timed elements, and outlives the stop', () => {
    const { system, host, scripts } = holdSetup();
    const before = system.state();
    host.sync([web, dns]);
    host.hold(20_000);
    const script = scripts.at(-1)!;
    assert.match(script, /set svc4 \{ type ipv4_addr \. inet_proto \. inet_service; timeout 20s; \}/);
    assert.match(script, /type filter hook prerouting priority raw - 10;/);
    assert.match(script, /ip daddr \. meta l4proto \. th dport @svc4 drop/);
    assert.match(script, /ip saddr \. meta l4proto \. th sport @real4 fib daddr type != local drop/);
    assert.match(
      script,
      /add element inet lvsd_hold svc4 \{ 198\.18\.0\.1 \. tcp \. 80, 198\.18\.0\.1 \. udp \. 53 \}/,
    );
    assert.match(script, /add element inet lvsd_hold real4 \{ [^}]*198\.18\.1\.12 \. tcp \. 80[^}]*\}/);
    host.stop({ keepHold: true });
    // Everything else is undone; the hold and its journal entry stay for the next lvsd.
    const after = system.state();
    assert.deepEqual(
      after.facts.filter((f) => !f.startsWith('nft element inet lvsd_hold ') && f !== HOLD_TABLE),
      before.facts,
    );
    assert.ok(after.facts.includes(HOLD_TABLE));
    assert.deepEqual(JSON.parse(system.files.get(JOURNAL)!).entries, [
      { key: 'hold', changes: [{ kind: 'nft-hold', table: 'lvsd_hold' }] },
    ]);
  });

  it('the next lvsd keeps the hold through its recovery and set-up, and ends it when it takes over', () => {
    const { system, before } = heldAndStopped();

    const next = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    assert.equal(next.recover(), 1);
    assert.ok(system.facts.has(HOLD_TABLE), 'recovery keeps the hold');
    next.sync([web]);
    assert.ok(system.facts.has(HOLD_TABLE), 'still held while the connections are put back');
    assert.deepEqual(next.verify(), [], 'the hold is not part of what verify compares');
    assert.deepEqual(next.repair().repaired, []);
    next.releaseHold();
    assert.ok(!system.facts.has(HOLD_TABLE));
    next.releaseHold();
    next.stop();
    assert.deepEqual(system.state(), before, 'the host as found');
  });

  it('a stop that is no restart, or a run that never steers, still leaves the host as found', () => {
    const { system, host, before } = heldAndStopped();
    // The next lvsd fails to start after its recovery (its configuration is refused, say).
    const next = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    next.recover();
    next.stop();
    assert.deepEqual(system.state(), before);
    // Nothing steered: nothing to hold, nothing journaled.
    host.hold(30_000);
    assert.deepEqual(system.state(), before);
  });

  it('a hold the host refuses is not journaled', () => {
    const { system, host } = holdSetup();
    host.sync([web]);
    const journal = system.files.get(JOURNAL);
    system.failing = 'nft -f -';
    assert.throws(() => host.hold(30_000), /injected failure/);
    assert.equal(system.files.get(JOURNAL), journal);
  });

  it('a journal naming another table as the hold is refused', () => {
    const { system } = setup();
    system.files.set(
      JOURNAL,
      JSON.stringify({
        format: 'lvsd-host-journal',
        version: 2,
        entries: [{ key: 'hold', changes: [{ kind: 'nft-hold', table: 'filter' }] }],
      }),
    );
    const host = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    assert.throws(() => host.recover(), /nft table "filter" is not lvsd's restart hold/);
  });
});

describe('HostNetwork: the restart hold on the layer-2 plane', () => {
  it('gives the plane no interfaces while held (its frames come before the hold), and its plan back after', () => {
    const system = setup().system;
    const run = system.run.bind(system);
    // The VIP on eth0, as the lab has it.
    system.run = (argv, input) =>
      argv.join(' ') === 'ip -j addr show'
        ? JSON.stringify([{ ifname: 'eth0', addr_info: [{ local: '198.18.0.1' }] }])
        : run(argv, input);
    const options = { system, stateDir: STATE, tunName: 'lvs0', linkLayer: true };
    const host = new HostNetwork(options);
    host.sync([web]);
    const plan = host.linkPlan();
    assert.deepEqual(plan.interfaces, ['eth0', 'eth1']);
    host.hold(30_000);
    assert.deepEqual(host.linkPlan().interfaces, [], 'the stopping run reads nothing past the hold');
    host.stop({ keepHold: true });

    const next = new HostNetwork(options);
    next.recover();
    next.sync([web]);
    assert.deepEqual(next.linkPlan().interfaces, [], 'nor the next run before it takes over');
    next.releaseHold();
    assert.deepEqual(next.linkPlan(), plan);
  });
});
