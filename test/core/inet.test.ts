import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  addr4,
  addr6,
  addrMask,
  formatAddr,
  formatAddrPort,
  netmaskPrefix,
  parseAddr,
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
