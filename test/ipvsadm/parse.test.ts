import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseArgs } from '../../src/ipvsadm/parse.js';
import type { Command, ParseResult } from '../../src/ipvsadm/parse.js';
import { addr4, parseAddr } from '../../src/core/inet.js';
import { SVC_F_ONEPACKET, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2 } from '../../src/core/model.js';
import type { ControlOp } from '../../src/core/ops.js';

function op(argv: string[]): ControlOp {
  const result = parseArgs(argv);
  assert.equal(result.kind, 'execute', JSON.stringify(result));
  return (result as Extract<Command, { kind: 'execute' }>).op;
}

function usageError(argv: string[]): { text: string; exit: number } {
  const result = parseArgs(argv);
  assert.equal(result.kind, 'usage-error', JSON.stringify(result));
  return result as { text: string; exit: number };
}

test('-A defaults: scheduler wlc, not persistent, /32 mask', () => {
  const o = op(['-A', '-t', '198.18.0.1:80']);
  assert.deepEqual(o, {
    op: 'add-service',
    key: { af: 4, protocol: 6, addr: addr4(0xc6120001), port: 80, fwmark: 0 },
    settings: { scheduler: 'wlc', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
  });
});

test('bare -p is 360 seconds, -p N and --persistent=N take N, -p300 attached', () => {
  for (const [argv, timeout] of [
    [['-A', '-t', '198.18.0.1:80', '-p'], 360],
    [['-A', '-t', '198.18.0.1:80', '-p', '-s', 'rr'], 360],
    [['-A', '-t', '198.18.0.1:80', '-p', '300'], 300],
    [['-A', '-t', '198.18.0.1:80', '--persistent=45'], 45],
    [['-A', '-t', '198.18.0.1:80', '-p300'], 300],
  ] as const) {
    const o = op([...argv]) as Extract<ControlOp, { op: 'add-service' }>;
    assert.equal(o.settings.timeout, timeout, argv.join(' '));
    assert.equal(o.settings.flags & SVC_F_PERSISTENT, SVC_F_PERSISTENT);
  }
});

test('-E sends the full settings with defaults, as ipvsadm does', () => {
  const o = op(['-E', '-u', '198.18.0.1:53', '-o', '-s', 'sh', '-b', 'sh-fallback,sh-port']) as Extract<
    ControlOp,
    { op: 'edit-service' }
  >;
  assert.deepEqual(o.settings, {
    scheduler: 'sh',
    flags: SVC_F_ONEPACKET | SVC_F_SCHED1 | SVC_F_SCHED2,
    timeout: 0,
    netmaskPrefix: 32,
    pe: null,
  });
});

test('-a defaults: weight 1, direct routing, port of the service; -g/-i force the service port', () => {
  const a = op(['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1']) as Extract<ControlOp, { op: 'add-dest' }>;
  assert.equal(a.port, 80);
  assert.deepEqual(a.settings, { method: 'route', weight: 1, uThreshold: 0, lThreshold: 0 });
  const g = op(['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1:8080', '-g']) as Extract<
    ControlOp,
    { op: 'add-dest' }
  >;
  assert.equal(g.port, 80);
  const i = op(['-e', '-t', '198.18.0.1:80', '-r', '198.19.0.1:8080', '-i']) as Extract<
    ControlOp,
    { op: 'edit-dest' }
  >;
  assert.equal(i.port, 80);
  const m = op(['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1:8080', '-m', '-w', '7']) as Extract<
    ControlOp,
    { op: 'add-dest' }
  >;
  assert.equal(m.port, 8080);
  assert.equal(m.settings.method, 'masq');
  assert.equal(m.settings.weight, 7);
  const f = op(['-a', '-f', '5', '-r', '198.19.0.1:8080', '-g']) as Extract<ControlOp, { op: 'add-dest' }>;
  assert.equal(f.port, 8080, 'fwmark services keep the given port');
});

test('fwmark and IPv6 keys', () => {
  const f6 = op(['-A', '-f', '2', '-6']) as Extract<ControlOp, { op: 'add-service' }>;
  assert.deepEqual(f6.key, { af: 6, protocol: 0, addr: parseAddr('::')!, port: 0, fwmark: 2 });
  assert.equal(f6.settings.netmaskPrefix, 128);
  const v6 = op(['-A', '-t', '[2001:db8::1]:443', '-p', '-M', '64']) as Extract<
    ControlOp,
    { op: 'add-service' }
  >;
  assert.deepEqual(v6.key.addr, parseAddr('2001:db8::1'));
  assert.equal(v6.settings.netmaskPrefix, 64);
  const v4mask = op(['-A', '-t', '198.18.0.1:80', '-p', '-M', '255.255.0.0']) as Extract<
    ControlOp,
    { op: 'add-service' }
  >;
  assert.equal(v4mask.settings.netmaskPrefix, 16);
});

test('clustered list options and list targets', () => {
  const cases: [string[], Partial<Extract<Command, { kind: 'list' }>>][] = [
    [['-Ln'], { what: 'services' }],
    [['-Lnc'], { what: 'connections' }],
    [['-L', '--timeout'], { what: 'timeout' }],
    [['-l', '--daemon'], { what: 'daemon' }],
  ];
  for (const [argv, expected] of cases) {
    const result = parseArgs(argv) as Extract<Command, { kind: 'list' }>;
    assert.equal(result.kind, 'list');
    assert.equal(result.what, expected.what, argv.join(' '));
  }
  const lnc = parseArgs(['-Lnc']) as Extract<Command, { kind: 'list' }>;
  assert.equal(lnc.format.numeric, true);
  const stats = parseArgs(['-L', '-n', '--stats', '--exact']) as Extract<Command, { kind: 'list' }>;
  assert.equal(stats.format.stats && stats.format.exact, true);
});

test('--set takes three timeouts; -Z with and without a service', () => {
  assert.deepEqual(op(['--set', '900', '120', '300']), {
    op: 'set-timeouts',
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  });
  assert.deepEqual(op(['-Z']), { op: 'zero' });
  assert.equal((op(['-Z', '-t', '198.18.0.1:80']) as Extract<ControlOp, { op: 'zero' }>).key?.port, 80);
});

test('host and service names come from the injected lookup', () => {
  const names = {
    hostToAddr: (n: string) => (n === 'vip.example' ? addr4(0xc6120001) : null),
    serviceToPort: (n: string) => (n === 'http' ? 80 : null),
  };
  const result = parseArgs(['-A', '-t', 'vip.example:http'], { names }) as Extract<
    Command,
    { kind: 'execute' }
  >;
  assert.deepEqual((result.op as Extract<ControlOp, { op: 'add-service' }>).key.port, 80);
  assert.equal(parseArgs(['-A', '-t', 'vip.example:http']).kind, 'usage-error', 'no lookup, no names');
});

test('ipvsadm texts and exit statuses for bad command lines', () => {
  assert.deepEqual(usageError(['-L', '-x', '5']), {
    kind: 'usage-error',
    text: "Illegal 'u-threshold' option with the 'list' command",
    exit: 2,
    endsRestore: true,
  });
  assert.equal(usageError(['-n', '-L']).exit, 255);
  assert.equal(usageError([]).text, "Try `lvsadm -h' or 'lvsadm --help' for more information.");
  assert.equal(parseArgs(['-x'], { program: 'ipvsadm' }).kind, 'usage-error');
  assert.equal(
    (parseArgs(['-x'], { program: 'ipvsadm' }) as { text: string }).text,
    "Try `ipvsadm -h' or 'ipvsadm --help' for more information.",
  );
  assert.equal(
    usageError(['-A', '-t', '198.18.0.1:80', '-w', '1']).text,
    "Illegal 'weight' option with the 'add-service' command",
  );
  assert.equal(usageError(['-L', '-t']).text, '-t: missing argument');
});

test('-h and --help, -v; --lvsadm-help', () => {
  assert.deepEqual(parseArgs(['-h']), { kind: 'help', lvsadm: false });
  assert.deepEqual(parseArgs(['--help']), { kind: 'help', lvsadm: false });
  assert.deepEqual(parseArgs(['--lvsadm-help']), { kind: 'help', lvsadm: true });
  assert.equal(usageError(['-L', '--lvsadm-help']).text, "invalid option `--lvsadm-help'");
  assert.deepEqual(parseArgs(['-v', 'junk']), { kind: 'version' });
});

const OPTION_WORDS = [
  '-A',
  '-E',
  '-D',
  '-C',
  '-R',
  '-S',
  '-a',
  '-e',
  '-d',
  '-L',
  '-l',
  '-Z',
  '--set',
  '-h',
  '-v',
  '-t',
  '-u',
  '-f',
  '-6',
  '-s',
  '-p',
  '-M',
  '-b',
  '-o',
  '-r',
  '-g',
  '-i',
  '-m',
  '-w',
  '-x',
  '-y',
  '-c',
  '-n',
  '--timeout',
  '--daemon',
  '--stats',
  '--rate',
  '--thresholds',
  '--persistent-conn',
  '--exact',
  '--sort',
  '--nosort',
  '--start-daemon',
  '--stop-daemon',
  '--syncid',
  '--mcast-group',
  '--sctp-service',
  '--pe',
  '--tun-type',
  '--json',
  '-Lnc',
  '--',
  '-',
  '=',
  '198.18.0.1:80',
  '[2001:db8::1]:80',
  '2001:db8::1',
  '1',
  '0',
  '65536',
  'master',
  'rr',
  'sh-port',
  '255.255.255.0',
];

test('random command lines never throw: a Command or a usage error', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constantFrom(...OPTION_WORDS), fc.string({ maxLength: 12 })), { maxLength: 10 }),
      (argv) => {
        const result: ParseResult = parseArgs(argv);
        assert.ok(typeof result.kind === 'string');
        if (result.kind === 'usage-error') {
          assert.ok([2, 255].includes(result.exit));
          assert.ok(result.text.length > 0);
        }
      },
    ),
    { numRuns: 3000 },
  );
});

// ---- Issue 14: where lvsadm once differed from ipvsadm 1.31 ----

test('short options written -s=rr, -p=600, -w=3: popt skips the =', () => {
  const svc = op(['-A', '-t', '198.18.0.1:80', '-s=rr', '-p=600']) as Extract<
    ControlOp,
    { op: 'add-service' }
  >;
  assert.equal(svc.settings.scheduler, 'rr');
  assert.equal(svc.settings.timeout, 600);
  const dest = op(['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1', '-m', '-w=3']) as Extract<
    ControlOp,
    { op: 'add-dest' }
  >;
  assert.equal(dest.settings.weight, 3);
  // `-s=` is an empty name: the default scheduler, as ipvsadm.
  const bare = op(['-A', '-t', '198.18.0.1:80', '-s=']) as Extract<ControlOp, { op: 'add-service' }>;
  assert.equal(bare.settings.scheduler, 'wlc');
});

test('addresses through inet_aton: octal, short forms, hex, trailing words, brackets', () => {
  const addrOf = (text: string) =>
    (op(['-A', '-t', text, '-p']) as Extract<ControlOp, { op: 'add-service' }>).key;
  assert.deepEqual(addrOf('198.022.0.010:80').addr, addr4(0xc6120008));
  assert.deepEqual(addrOf('198.18.3:80').addr, addr4(0xc6120003));
  assert.deepEqual(addrOf('198.1179648:80').addr, addr4(0xc6120000));
  assert.deepEqual(addrOf('0xc6120004:80').addr, addr4(0xc6120004));
  assert.deepEqual(addrOf('198.18.0.5 junk:80').addr, addr4(0xc6120005));
  // ipvsadm loses the port after brackets around an IPv4 address.
  assert.deepEqual(addrOf('[198.18.0.6]:80'), addrOf('198.18.0.6'));
  assert.equal(addrOf('[198.18.0.6]:80').port, 0);
  for (const bad of [
    '198.18.0.08:80',
    '198.18.256.1:80',
    '198.18.0.1.1:80',
    '198..1:80',
    ' 198.18.0.1:80',
    '0x:80',
  ])
    assert.equal(usageError(['-A', '-t', bad]).text, 'illegal virtual server address[:port] specified', bad);
});

test('a zero-padded address part is read as octal, with a warning', () => {
  const warnings: string[] = [];
  parseArgs(['-A', '-t', '198.022.0.1:80'], { warn: (t) => warnings.push(t) });
  assert.deepEqual(warnings, [
    'lvsadm: warning: 198.022.0.1 read as 198.18.0.1: a part with a leading 0 is octal, as in ipvsadm',
  ]);
  warnings.length = 0;
  parseArgs(['-A', '-t', '198.18.0.10:80', '-p', '-M', '0xffffff00'], { warn: (t) => warnings.push(t) });
  assert.deepEqual(warnings, []);
});

test('-M through inet_aton; 0.0.0.0 is prefix 0; non-contiguous masks are refused clearly', () => {
  const mask = (text: string) =>
    (op(['-A', '-t', '198.18.0.1:80', '-p', '-M', text]) as Extract<ControlOp, { op: 'add-service' }>)
      .settings.netmaskPrefix;
  assert.equal(mask('255.255.255.0'), 24);
  assert.equal(mask('0xffffff00'), 24);
  assert.equal(mask('255.255.65280'), 24);
  assert.equal(mask('0.0.0.0'), 0);
  assert.equal(mask('0'), 0);
  assert.match(
    usageError(['-A', '-t', '198.18.0.1:80', '-p', '-M', '24']).text,
    /^persistent mask 0\.0\.0\.24 is not contiguous/,
  );
  assert.match(usageError(['-A', '-t', '198.18.0.1:80', '-p', '-M', '255.255.255']).text, /255\.255\.0\.255/);
  assert.equal(
    usageError(['-A', '-t', '198.18.0.1:80', '-p', '-M', 'bogus']).text,
    'illegal virtual server persistent mask specified',
  );
  // IPv6: atoi, as ipvsadm.
  const v6 = (text: string) =>
    (op(['-A', '-t', '[2001:db8::1]:80', '-p', '-M', text]) as Extract<ControlOp, { op: 'add-service' }>)
      .settings.netmaskPrefix;
  assert.equal(v6('64'), 64);
  assert.equal(v6('64abc'), 64);
  assert.equal(
    usageError(['-A', '-t', '[2001:db8::1]:80', '-p', '-M', '0x40']).text,
    'illegal ipv6 netmask specified',
  );
});

test('empty -s and --pe are no scheduler and no engine; names lvsd cannot carry are not found', () => {
  const svc = op(['-A', '-t', '198.18.0.1:80', '-s', '', '--pe', '']) as Extract<
    ControlOp,
    { op: 'add-service' }
  >;
  assert.equal(svc.settings.scheduler, 'wlc');
  assert.equal(svc.settings.pe, null);
  for (const argv of [
    ['-A', '-t', '198.18.0.1:80', '-s', 'r r'],
    ['-E', '-t', '198.18.0.1:80', '--pe', 'sïp'],
  ])
    assert.deepEqual(parseArgs(argv), {
      kind: 'usage-error',
      text: 'Scheduler or persistence engine not found',
      exit: 255,
      endsRestore: false,
    });
});

test('-b is read before the command x option table', () => {
  assert.equal(
    usageError(['-D', '-t', '198.18.0.1:80', '-b', 'bogus']).text,
    "invalid scheduler flag `bogus'",
  );
  assert.equal(usageError(['-A', '-b', 'sh-port']).text, "incompatible scheduler flag `sh-port'");
  assert.equal(
    usageError(['-D', '-t', '198.18.0.1:80', '-b', '']).text,
    "Illegal 'sched-flags' option with the 'delete-service' command",
  );
});

test('popt syntax errors after the command let -R go on; fail() and a bad first option end it', () => {
  assert.deepEqual(parseArgs(['-a', '-t', '198.18.0.1:80', '-w']), {
    kind: 'usage-error',
    text: '-w: missing argument',
    exit: 255,
    endsRestore: false,
  });
  assert.equal((parseArgs(['-A', '--bogus']) as { endsRestore: boolean }).endsRestore, false);
  assert.equal((parseArgs(['--bogus']) as { endsRestore: boolean }).endsRestore, true);
  assert.equal((parseArgs(['-A', '-t', 'x']) as { endsRestore: boolean }).endsRestore, true);
});

test('tunnel options: settings for -i, and ipvsadm checks by method and tunnel type', () => {
  const base = ['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1'];
  const tunnel = (...extra: string[]) =>
    (op([...base, '-i', ...extra]) as Extract<ControlOp, { op: 'add-dest' }>).settings.tunnel;
  assert.deepEqual(tunnel(), { type: 'ipip', port: 0, csum: 'nocsum' });
  assert.deepEqual(tunnel('--tun-type', 'gue', '--tun-port', '6080', '--tun-remcsum'), {
    type: 'gue',
    port: 6080,
    csum: 'remcsum',
  });
  assert.deepEqual(tunnel('--tun-type', 'gre', '--tun-csum'), { type: 'gre', port: 0, csum: 'csum' });
  assert.equal((op([...base, '-m']) as Extract<ControlOp, { op: 'add-dest' }>).settings.tunnel, undefined);
  const cases: [string[], string][] = [
    [['-m', '--tun-type', 'ipip'], 'Tunnel options conflict with forward method'],
    [['--tun-nocsum'], 'Tunnel options conflict with forward method'],
    [['-i', '--tun-type', 'gue'], "You need to supply the 'tun-port' option for the 'gue' tunnel type"],
    [['-i', '--tun-port', '1'], "Illegal 'tun-port' option with the 'ipip' tunnel type"],
    [['-i', '--tun-type', 'gre', '--tun-port', '1'], "Illegal 'tun-port' option with the 'gre' tunnel type"],
    [['-i', '--tun-type', 'gre', '--tun-remcsum'], "Illegal 'tun-remcsum' option with the 'gre' tunnel type"],
    [
      ['-i', '--tun-type', 'gue', '--tun-port', '1', '--tun-nocsum', '--tun-csum'],
      "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
    ],
    [['-i', '--tun-type', 'vxlan'], 'illegal tunnel type specified'],
    [['-i', '--tun-type', 'gue', '--tun-port', '0'], 'illegal tunnel port specified'],
  ];
  for (const [extra, text] of cases)
    assert.equal(usageError([...base, ...extra]).text, text, extra.join(' '));
});

test('-L -c takes --persistent-conn; --timeout and --daemon do not', () => {
  const list = parseArgs(['-L', '-c', '--persistent-conn']) as Extract<Command, { kind: 'list' }>;
  assert.equal(list.what, 'connections');
  assert.equal(list.format.persistentConn, true);
  for (const what of ['--timeout', '--daemon'])
    assert.equal(usageError(['-L', what, '--persistent-conn']).text, 'options conflicts in the list command');
});

test("lvsadm's runtime commands name one real server and change only its runtime state", () => {
  const target = {
    key: { af: 4, protocol: 6, addr: addr4(0xc6120001), port: 80, fwmark: 0 },
    addr: addr4(0xc612010b),
    port: 8080,
  };
  const runtime = (argv: string[]) => {
    const result = parseArgs(argv);
    assert.equal(result.kind, 'runtime', JSON.stringify(result));
    return result as Extract<Command, { kind: 'runtime' }>;
  };
  const rs = ['-t', '198.18.0.1:80', '-r', '198.18.1.11:8080'];
  for (const admin of ['drain', 'ready', 'maint'] as const)
    assert.deepEqual(runtime([`--${admin}`, ...rs]), {
      kind: 'runtime',
      op: { op: 'set-dest-runtime', ...target, change: { admin } },
      json: false,
    });
  assert.deepEqual(runtime(['--set-weight', '7', ...rs, '--json']).op.change, { operatorWeight: 7 });
  assert.equal(runtime(['--set-weight', '7', ...rs, '--json']).json, true);
  assert.deepEqual(runtime(['--clear-weight', ...rs]).op.change, { operatorWeight: null });
  assert.match(usageError(['--set-weight', '70000', ...rs]).text, /illegal weight specified/);
  assert.match(usageError(['--drain', '-t', '198.18.0.1:80']).text, /'real-server' option/);
  assert.match(usageError(['--drain', ...rs, '-w', '3']).text, /Illegal 'weight' option/);
});
