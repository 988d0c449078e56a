import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { addr4, addr6 } from '../../../src/core/inet.js';
import { foldAddr, hash32, hsiphashU32, type SipKey } from '../../../src/core/sched/hash.js';

/** SipHash-1-3 of a 4-byte message on BigInt, written from the SipHash paper, as a reference. */
function referenceSipHash13(value: number, k0: bigint, k1: bigint): number {
  const mask = (1n << 64n) - 1n;
  const rotl = (x: bigint, b: bigint) => ((x << b) | (x >> (64n - b))) & mask;
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  const round = () => {
    v0 = (v0 + v1) & mask;
    v1 = rotl(v1, 13n) ^ v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & mask;
    v3 = rotl(v3, 16n) ^ v2;
    v0 = (v0 + v3) & mask;
    v3 = rotl(v3, 21n) ^ v0;
    v2 = (v2 + v1) & mask;
    v1 = rotl(v1, 17n) ^ v2;
    v2 = rotl(v2, 32n);
  };
  const b = (4n << 56n) | BigInt(value >>> 0);
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xffn;
  round();
  round();
  round();
  return Number((v0 ^ v1 ^ v2 ^ v3) & 0xffffffffn);
}

const zeroKey: SipKey = { k0hi: 0, k0lo: 0, k1hi: 0, k1lo: 0 };

describe('hash_32', () => {
  it('matches the kernel multiply-shift', () => {
    assert.equal(hash32(0x0a000001, 8), 39);
    assert.equal(hash32(0x0b000001, 8), 110);
    assert.equal(hash32(0xc0a80001, 8), 192);
    assert.equal(hash32(0, 8), 0);
  });

  it('folds IPv6 addresses by XOR and keeps IPv4 as is', () => {
    assert.equal(foldAddr(addr4(0xc0a80001)), 0xc0a80001);
    assert.equal(foldAddr(addr6(0x20010db8, 0, 0xffff0000, 1)), (0x20010db8 ^ 0xffff0000 ^ 1) >>> 0);
  });
});

describe('hsiphash (SipHash-1-3, 64-bit kernel)', () => {
  it('matches CPython siphash13 with a zero key (PYTHONHASHSEED=0, hash(bytes) low 32 bits)', () => {
    assert.equal(hsiphashU32(0x04030201, zeroKey), 906734036);
    assert.equal(hsiphashU32(0, zeroKey), 2596571888);
    assert.equal(hsiphashU32(0xffffffff, zeroKey), 1959450338);
    assert.equal(hsiphashU32(0x9e3779b1, zeroKey), 192631512);
  });

  it('matches a BigInt reference for any key and message', () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(u32, u32, u32, u32, u32, (value, k0hi, k0lo, k1hi, k1lo) => {
        const k0 = (BigInt(k0hi) << 32n) | BigInt(k0lo);
        const k1 = (BigInt(k1hi) << 32n) | BigInt(k1lo);
        assert.equal(hsiphashU32(value, { k0hi, k0lo, k1hi, k1lo }), referenceSipHash13(value, k0, k1));
      }),
      { numRuns: 500 },
    );
  });
});
