import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  completePartialChecksum,
  crc32c,
  csumReplace16,
  csumReplace32,
  finish,
  ipv4HeaderChecksum,
  onesSum,
  readU16,
  readU32,
} from '../../../src/core/packet/checksum.js';
import { buildPacket, completeAsKernel, hex, l4ChecksumValid } from '../../helpers/packets.js';

test('onesSum and finish match the RFC 1071 worked example', () => {
  const bytes = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assert.equal(finish(onesSum(bytes, 0, bytes.length)), ~0xddf2 & 0xffff);
});

test('an odd last byte is summed as if padded with zero', () => {
  const odd = Uint8Array.from([0x12, 0x34, 0x56]);
  const padded = Uint8Array.from([0x12, 0x34, 0x56, 0x00]);
  assert.equal(finish(onesSum(odd, 0, 3)), finish(onesSum(padded, 0, 4)));
});

test('a 64 KB buffer of 0xff sums without losing carries', () => {
  const bytes = new Uint8Array(65535).fill(0xff);
  assert.equal(finish(onesSum(bytes, 0, bytes.length)), 0xff);
});

test('ipv4HeaderChecksum reproduces the checksum of a built header, options included', () => {
  const packet = buildPacket({
    src: '10.1.2.3',
    dst: '198.18.0.1',
    ipOptions: Uint8Array.from([1, 1, 1, 1]),
  });
  assert.equal(ipv4HeaderChecksum(packet, 0, 24), readU16(packet, 10));
});

test('RFC 1624 updates equal a recomputation, for 16- and 32-bit fields', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 8, maxLength: 64 }).map((b) => b.subarray(0, b.length & ~3)),
      fc.nat(),
      fc.integer({ min: 0, max: 0xffffffff }),
      (data, at, value) => {
        const word = (at % (data.length / 4)) * 4;
        const before = finish(onesSum(data, 0, data.length));
        const changed = data.slice();
        changed.set([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255], word);
        const expected = finish(onesSum(changed, 0, changed.length));
        // 0 and 0xffff are the same number in ones complement.
        assert.equal(csumReplace32(before, readU32(data, word), value) % 0xffff, expected % 0xffff);
        const value16 = value >>> 16;
        const changed16 = data.slice();
        changed16.set([value16 >>> 8, value16 & 255], word);
        const expected16 = finish(onesSum(changed16, 0, changed16.length));
        assert.equal(csumReplace16(before, readU16(data, word), value16) % 0xffff, expected16 % 0xffff);
      },
    ),
    { numRuns: 500 },
  );
});

test('crc32c matches the standard check value', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789'), 0, 9), 0xe3069283);
});

test('completePartialChecksum finishes a NEEDS_CSUM seed into a valid checksum, as the kernel does', () => {
  for (const [src, dst] of [
    ['10.0.0.1', '10.0.0.2'],
    ['fd00::1', 'fd00::2'],
  ] as const) {
    const packet = buildPacket({
      src,
      dst,
      payload: Uint8Array.from({ length: 999 }, (_, i) => i),
      partial: true,
    });
    const l4 = src.includes(':') ? 40 : 20;
    const expected = completeAsKernel(packet, l4, 16);
    completePartialChecksum(packet, l4, l4 + 16, packet.length);
    assert.equal(hex(packet), hex(expected));
    assert.ok(l4ChecksumValid(packet));
  }
});
