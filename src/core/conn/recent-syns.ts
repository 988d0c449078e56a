// The SYNs seen lately, as a Bloom filter in two generations: while the data plane cannot keep up
// with a flood (its receive queue overflows, and drops a legitimate client's packets as readily as
// the flood's), the SYN proxy answers a SYN only when it is a retransmission, one seen before.
// A flood's SYNs come from ever new sources and never repeat; a real client's does after a second
// (RFC 6298's initial RTO). Not answering costs a SYN a lookup, where answering it costs a
// transmit, so the director catches up, and the client is answered on its first retry.

/** A generation is kept this long, then becomes the previous one: a SYN is remembered 4 to 8 s, past two retransmissions. */
export const RECENT_SYN_GENERATION_MS = 4000;
/**
 * Bits per generation: 8M (1 MB). A flood of 100,000 SYNs a second sets at most 800,000 of them
 * over two generations; two hashes then take about 3% of new SYNs for seen ones.
 */
const BITS_LOG2 = 23;
const WORD_MASK = (1 << (BITS_LOG2 - 5)) - 1;

export class RecentSyns {
  private current = new Uint32Array(1 << (BITS_LOG2 - 5));
  private previous = new Uint32Array(1 << (BITS_LOG2 - 5));
  private generationStart: number;

  constructor(
    private readonly seed: number,
    nowMs: number,
  ) {
    this.generationStart = nowMs;
  }

  /**
   * Whether this SYN (client address and port, virtual address and port, initial sequence number)
   * was seen in the last two generations; it is remembered either way.
   */
  seenBefore(caddr: number, ports: number, vaddr: number, isn: number, nowMs: number): boolean {
    if (nowMs - this.generationStart >= RECENT_SYN_GENERATION_MS) this.rotate(nowMs);
    let h = mix(this.seed, caddr);
    h = mix(h, ports);
    h = mix(h, vaddr);
    h = mix(h, isn);
    const h1 = h >>> 0;
    const h2 = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
    const seen = isSet(this.current, h1, h2) || isSet(this.previous, h1, h2);
    set(this.current, h1);
    set(this.current, h2);
    return seen;
  }

  private rotate(nowMs: number): void {
    const expired = this.previous;
    this.previous = this.current;
    expired.fill(0);
    this.current = expired;
    // After a long quiet spell both generations are stale.
    if (nowMs - this.generationStart >= 2 * RECENT_SYN_GENERATION_MS) this.previous.fill(0);
    this.generationStart = nowMs;
  }
}

function mix(hash: number, word: number): number {
  const h = Math.imul(hash ^ word, 0x85ebca6b);
  return h ^ (h >>> 13);
}

const bit = (h: number): number => 1 << (h & 31);
const word = (h: number): number => (h >>> 5) & WORD_MASK;

function isSet(bits: Uint32Array, h1: number, h2: number): boolean {
  return (bits[word(h1)]! & bit(h1)) !== 0 && (bits[word(h2)]! & bit(h2)) !== 0;
}

function set(bits: Uint32Array, h: number): void {
  bits[word(h)]! |= bit(h);
}
