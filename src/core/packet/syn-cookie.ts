// SYN cookies for the director's SYN proxy (src/core/syn-proxy.ts): the director answers a SYN
// with a SYN-ACK whose sequence number is a keyed MAC of the connection, so it keeps nothing for a
// SYN whose source never answers, and recognises the client's ACK by the cookie it acknowledges.
// As the kernel's syncookies (net/ipv4/syncookies.c): a time counter and the MSS the client can
// take ride in the cookie's low bits, here with the client's SACK permission; window scaling and
// timestamps are not offered, so nothing else has to be remembered.
//
// The MAC is HalfSipHash-2-4 (Aumasson and Bernstein; the kernel's hsiphash), written here on
// 32-bit words: the packet path hashes integers it already holds, with no buffer to fill, which
// no library for byte strings does without allocating.

/** The MSS values a cookie can carry (the kernel's msstab for IPv4); the client gets the largest it allows. */
export const COOKIE_MSS = [536, 1300, 1440, 1460] as const;
/** A cookie's time counter moves on every this many ms; one from the counter before is still good. */
export const COOKIE_PERIOD_MS = 64_000;

const COUNT_BITS = 5;
const COUNT_MASK = (1 << COUNT_BITS) - 1;
const SACK_BIT = 0x04;
const MSS_MASK = 0x03;
const LOW_BITS = 8;

/** What a valid cookie says of the client's SYN. */
export interface CookieContents {
  mss: number;
  sack: boolean;
}

const rotl = (x: number, b: number): number => (x << b) | (x >>> (32 - b));

/** The MSS-table index for a client that announced `mss` (536, the default, when it announced none). */
export function cookieMssIndex(mss: number): number {
  let index = 0;
  while (index + 1 < COOKIE_MSS.length && COOKIE_MSS[index + 1]! <= mss) index++;
  return index;
}

export class SynCookies {
  private readonly words = new Uint32Array(12);
  private v0 = 0;
  private v1 = 0;
  private v2 = 0;
  private v3 = 0;

  /** `k0`, `k1`: the 64-bit secret, random per process. */
  constructor(
    private readonly k0: number,
    private readonly k1: number,
  ) {}

  /**
   * The cookie for a SYN from caddr:cport to vaddr:vport (addresses as four words, IPv4 in the
   * first) with initial sequence number `isn`, at time `nowMs`.
   */
  // prettier-ignore
  make(
    c0: number, c1: number, c2: number, c3: number, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
    isn: number, mssIndex: number, sack: boolean, nowMs: number,
  ): number {
    const count = this.counter(nowMs);
    const low = ((count & COUNT_MASK) << 3) | (sack ? SACK_BIT : 0) | (mssIndex & MSS_MASK);
    return this.seal(c0, c1, c2, c3, cport, v0, v1, v2, v3, vport, isn, count, low);
  }

  /**
   * What `cookie` (the client's ACK number minus one) says, or null when it is not one this
   * director made for this connection within the last two periods.
   */
  // prettier-ignore
  check(
    c0: number, c1: number, c2: number, c3: number, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
    isn: number, cookie: number, nowMs: number,
  ): CookieContents | null {
    const low = cookie & ((1 << LOW_BITS) - 1);
    const count = (low >>> 3) & COUNT_MASK;
    const now = this.counter(nowMs);
    for (const candidate of [now, now - 1]) {
      if (candidate < 0 || (candidate & COUNT_MASK) !== count) continue;
      if (this.seal(c0, c1, c2, c3, cport, v0, v1, v2, v3, vport, isn, candidate, low) === cookie >>> 0) {
        return { mss: COOKIE_MSS[low & MSS_MASK]!, sack: (low & SACK_BIT) !== 0 };
      }
    }
    return null;
  }

  private counter(nowMs: number): number {
    return Math.floor(nowMs / COOKIE_PERIOD_MS);
  }

  // prettier-ignore
  private seal(
    c0: number, c1: number, c2: number, c3: number, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
    isn: number, count: number, low: number,
  ): number {
    const w = this.words;
    w[0] = c0; w[1] = c1; w[2] = c2; w[3] = c3;
    w[4] = v0; w[5] = v1; w[6] = v2; w[7] = v3;
    w[8] = ((cport << 16) | vport) >>> 0;
    w[9] = isn;
    w[10] = count;
    w[11] = low;
    return ((this.halfSipHash(w) & ~((1 << LOW_BITS) - 1)) | low) >>> 0;
  }

  /** HalfSipHash-2-4 with a 32-bit result over whole 32-bit words. */
  private halfSipHash(message: Uint32Array): number {
    this.v0 = this.k0;
    this.v1 = this.k1;
    this.v2 = 0x6c796765 ^ this.k0;
    this.v3 = 0x74656462 ^ this.k1;
    for (let i = 0; i < message.length; i++) this.compress(message[i]!);
    this.compress((message.length * 4) << 24);
    this.v2 ^= 0xff;
    for (let i = 0; i < 4; i++) this.round();
    return (this.v1 ^ this.v3) >>> 0;
  }

  private compress(m: number): void {
    this.v3 ^= m;
    this.round();
    this.round();
    this.v0 ^= m;
  }

  private round(): void {
    let { v0, v1, v2, v3 } = this;
    v0 = (v0 + v1) | 0;
    v1 = rotl(v1, 5) ^ v0;
    v0 = rotl(v0, 16);
    v2 = (v2 + v3) | 0;
    v3 = rotl(v3, 8) ^ v2;
    v0 = (v0 + v3) | 0;
    v3 = rotl(v3, 7) ^ v0;
    v2 = (v2 + v1) | 0;
    v1 = rotl(v1, 13) ^ v2;
    v2 = rotl(v2, 16);
    this.v0 = v0;
    this.v1 = v1;
    this.v2 = v2;
    this.v3 = v3;
  }
}
