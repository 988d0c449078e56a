// The kernel's hash functions for the hashing schedulers, bit for bit: hash_32 (sh, dh) and
// hsiphash (mh), which on 64-bit kernels is SipHash-1-3 returning the low 32 bits.

import type { Addr } from '../inet.js';
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../inet.js';

const GOLDEN_RATIO_32 = 0x61c88647;

/** include/linux/hash.h hash_32: the top `bits` bits of value * GOLDEN_RATIO_32 mod 2^32. */
export function hash32(value: number, bits: number): number {
  return Math.imul(value, GOLDEN_RATIO_32) >>> (32 - bits);
}

/** The address as one host-order word; IPv6 XORs its four words, as the schedulers' hashkeys. */
export function foldAddr(addr: Addr): number {
  return addr.af === 4 ? addr.a : (addr.a ^ addr.b ^ addr.c ^ addr.d) >>> 0;
}

/** The source port a hashing scheduler may mix in: only TCP, UDP and SCTP carry one. */
export function hashablePort(protocol: number, port: number): number {
  return protocol === IPPROTO_TCP || protocol === IPPROTO_UDP || protocol === IPPROTO_SCTP ? port : 0;
}

/** A 128-bit SipHash key as two 64-bit words, each split into high and low 32 bits. */
export interface SipKey {
  readonly k0hi: number;
  readonly k0lo: number;
  readonly k1hi: number;
  readonly k1lo: number;
}

// "somepseudorandomlygeneratedbytes", the SipHash initial state.
const C0_HI = 0x736f6d65;
const C0_LO = 0x70736575;
const C1_HI = 0x646f7261;
const C1_LO = 0x6e646f6d;
const C2_HI = 0x6c796765;
const C2_LO = 0x6e657261;
const C3_HI = 0x74656462;
const C3_LO = 0x79746573;

// SipHash state v0..v3 as (hi, lo) u32 pairs: [v0h, v0l, v1h, v1l, v2h, v2l, v3h, v3l]. One
// module-level array keeps hashing allocation-free; JavaScript runs it on one thread.
const sip = new Uint32Array(8);

/** rotl64 of the pair at index i by n (0 < n < 32). */
function rotl(i: number, n: number): void {
  const hi = sip[i]!;
  const lo = sip[i + 1]!;
  sip[i] = (hi << n) | (lo >>> (32 - n));
  sip[i + 1] = (lo << n) | (hi >>> (32 - n));
}

/** The pair at a += the pair at b, mod 2^64. */
function add(a: number, b: number): void {
  const lo = (sip[a + 1]! + sip[b + 1]!) >>> 0;
  sip[a] = sip[a]! + sip[b]! + (lo < sip[a + 1]! ? 1 : 0);
  sip[a + 1] = lo;
}

/** The pair at a ^= the pair at b. */
function xor(a: number, b: number): void {
  sip[a] = sip[a]! ^ sip[b]!;
  sip[a + 1] = sip[a + 1]! ^ sip[b + 1]!;
}

function swapHalves(i: number): void {
  const hi = sip[i]!;
  sip[i] = sip[i + 1]!;
  sip[i + 1] = hi;
}

const V0 = 0;
const V1 = 2;
const V2 = 4;
const V3 = 6;

function sipRound(): void {
  add(V0, V1);
  rotl(V1, 13);
  xor(V1, V0);
  swapHalves(V0);
  add(V2, V3);
  rotl(V3, 16);
  xor(V3, V2);
  add(V0, V3);
  rotl(V3, 21);
  xor(V3, V0);
  add(V2, V1);
  rotl(V1, 17);
  xor(V1, V2);
  swapHalves(V2);
}

/**
 * hsiphash(&v, 4, key) of a 64-bit kernel: SipHash-1-3 of the four little-endian bytes of the
 * u32 `value`, truncated to its low 32 bits.
 */
export function hsiphashU32(value: number, key: SipKey): number {
  sip[0] = C0_HI ^ key.k0hi;
  sip[1] = C0_LO ^ key.k0lo;
  sip[2] = C1_HI ^ key.k1hi;
  sip[3] = C1_LO ^ key.k1lo;
  sip[4] = C2_HI ^ key.k0hi;
  sip[5] = C2_LO ^ key.k0lo;
  sip[6] = C3_HI ^ key.k1hi;
  sip[7] = C3_LO ^ key.k1lo;
  // The only block is the final one: the length (4) in the top byte, the message below.
  const lengthHi = 4 << 24;
  sip[6] ^= lengthHi;
  sip[7] ^= value;
  sipRound();
  sip[0] ^= lengthHi;
  sip[1] ^= value;
  sip[5] ^= 0xff;
  sipRound();
  sipRound();
  sipRound();
  return (sip[1]! ^ sip[3]! ^ sip[5]! ^ sip[7]!) >>> 0;
}

/** A key whose two 64-bit words both hold the 32-bit `word`, as ip_vs_mh's fixed secrets. */
export function sipKeyOfWord(word: number): SipKey {
  return { k0hi: 0, k0lo: word >>> 0, k1hi: 0, k1lo: word >>> 0 };
}
