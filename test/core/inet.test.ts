import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  addr4,
  addr6,
  addrMask,
  formatAddr,
  formatAddrPort,
  isUnicast,
  netmaskPrefix,
  parseAddr,
  parseInetAton,
  parseIPv4,
  parseIPv6,
  prefixNetmask,
} from '../../src/core/inet.js';

test('IPv4 parses and prints dotted quads, refusing what inet_pton refuses', () => {
  assert.deepEqual(parseIPv4('192.168.2.146'), addr4(0xc0a80292));
  assert.equal(formatAddr(addr4(0xc0a80292)), '192.168.2.146');
  for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', 'a.b.c.d', '', ' 1.2.3.4']) {
    assert.equal(parseIPv4(bad), null, bad);
  }
});

test('IPv6 parses every textual form and prints RFC 5952', () => {
  const cases: [string, string][] = [
    ['2001:db8::1', '2001:db8::1'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::', 'fe80::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    // IPv4-compatible: dotted, as glibc's inet_ntop (but ::1 and ::0.0.1.2 are not).
    ['::198.18.0.1', '::198.18.0.1'],
    ['::c612:1', '::198.18.0.1'],
    ['::0.1.0.0', '::0.1.0.0'],
    ['::0.0.1.2', '::102'],
    ['64:ff9b::198.18.0.1', '64:ff9b::c612:1'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
  ];
  for (const [input, printed] of cases) {
    const parsed = parseIPv6(input);
    assert.ok(parsed, input);
    assert.equal(formatAddr(parsed), printed, input);
  }
  for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', ':1', 'g::1', '1:2:3:4:5:6:7::8:9']) {
    assert.equal(parseIPv6(bad), null, bad);
  }
});

test('formatting and parsing round-trip for any address', () => {
  const v4 = fc.integer({ min: 0, max: 0xffffffff }).map((a) => addr4(a));
  const word = fc.integer({ min: 0, max: 0xffffffff });
  const v6 = fc.tuple(word, word, word, word).map(([a, b, c, d]) => addr6(a, b, c, d));
  fc.assert(
    fc.property(fc.oneof(v4, v6), (addr) => {
      assert.deepEqual(parseAddr(formatAddr(addr)), addr);
    }),
  );
});

test('addr:port prints IPv6 in brackets', () => {
  assert.equal(formatAddrPort(parseAddr('198.18.0.1')!, 80), '198.18.0.1:80');
  assert.equal(formatAddrPort(parseAddr('2001:db8::1')!, 80), '[2001:db8::1]:80');
});

test('masks keep the prefix only, and netmasks convert to prefixes', () => {
  assert.equal(formatAddr(addrMask(parseAddr('198.18.7.9')!, 24)), '198.18.7.0');
  assert.equal(formatAddr(addrMask(parseAddr('2001:db8:1:2:3:4:5:6')!, 48)), '2001:db8:1::');
  assert.equal(formatAddr(addrMask(parseAddr('2001:db8:1:2:3:4:5:6')!, 128)), '2001:db8:1:2:3:4:5:6');
  assert.equal(netmaskPrefix(parseAddr('255.255.255.0')!), 24);
  assert.equal(netmaskPrefix(parseAddr('255.255.255.255')!), 32);
  assert.equal(netmaskPrefix(parseAddr('0.0.0.0')!), 0);
  assert.equal(netmaskPrefix(parseAddr('255.0.255.0')!), -1);
  assert.equal(formatAddr(prefixNetmask(20)), '255.255.240.0');
});

test('inet_aton: one to four parts, decimal, octal or hex; whitespace ends the address', () => {
  const cases: [string, number, boolean][] = [
    ['198.18.0.1', 0xc6120001, false],
    ['198.022.0.010', 0xc6120008, true],
    ['198.18.3', 0xc6120003, false],
    ['198.1179651', 0xc6120003, false],
    ['3323068417', 0xc6120001, false],
    ['0xc6120001', 0xc6120001, false],
    ['0XC6.0x12.0.1', 0xc6120001, false],
    ['0', 0, false],
    ['00', 0, true],
    ['198.18.0.1 anything', 0xc6120001, false],
    ['198.18.0.1\tx', 0xc6120001, false],
    ['255.255.255.255', 0xffffffff, false],
    ['4294967295', 0xffffffff, false],
  ];
  for (const [text, value, octal] of cases)
    assert.deepEqual(parseInetAton(text), { addr: addr4(value), octal }, text);
  for (const bad of [
    '',
    ' 1.2.3.4',
    '1.2.3.4.5',
    '1..2',
    '1.2.',
    '08',
    '0x',
    '1.256.0.0',
    '1.2.65536',
    '4294967296',
    '1.2.3.4x',
    '-1',
    '+1',
    'a',
  ])
    assert.equal(parseInetAton(bad), null, bad);
});

test('unicast: what the kernel takes for a real server', () => {
  for (const text of [
    '198.19.0.1',
    '127.0.0.1',
    '240.0.0.1',
    '2001:db8::1',
    '::1',
    '::198.19.0.1',
    'fec0::1',
    'fc00::1',
  ])
    assert.equal(isUnicast(parseAddr(text)!), true, text);
  for (const text of [
    '0.0.0.0',
    '0.1.2.3',
    '255.255.255.255',
    '224.0.0.1',
    '239.255.255.255',
    '::',
    'ff02::1',
    'fe80::1',
    'febf::1',
    '::ffff:198.19.0.1',
  ])
    assert.equal(isUnicast(parseAddr(text)!), false, text);
});

test('inet_aton reads any address written in any of its forms', () => {
  const base = fc.constantFrom(10, 8, 16);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(base, { minLength: 4, maxLength: 4 }),
      (value, parts, bases) => {
        const lastBytes = 5 - parts;
        const values = [
          ...Array.from({ length: parts - 1 }, (_, i) => (value >>> (24 - 8 * i)) & 0xff),
          lastBytes === 4 ? value : value % 2 ** (8 * lastBytes),
        ];
        const texts = values.map((v, i) =>
          bases[i] === 16 ? `0x${v.toString(16)}` : bases[i] === 8 ? `0${v.toString(8)}` : String(v),
        );
        const octal = texts.some((t) => /^0[0-7]+$/.test(t));
        assert.deepEqual(parseInetAton(texts.join('.')), { addr: addr4(value), octal });
      },
    ),
  );
});
