// Who may act through the dashboard: the holder of the token in `lvsd --http-token-file`, sent as
// `Authorization: Bearer TOKEN`. Compared in constant time (both sides hashed to one length first,
// so neither the content nor the length leaks through timing); clients that send wrong tokens
// are refused for a while once they have sent a few, by address, with a bounded table.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Shortest token accepted: a guessable one would make the rate limit the only defence. */
export const MIN_TOKEN_LENGTH = 16;

export class Token {
  private readonly hash: Buffer;

  constructor(secret: string) {
    this.hash = digest(secret);
  }

  /** Whether an Authorization header carries this token. */
  matches(header: string | undefined): boolean {
    const m = /^Bearer +(\S+) *$/i.exec(header ?? '');
    // Hashed even when absent, so that no header and a wrong one take the same time.
    return timingSafeEqual(this.hash, digest(m?.[1] ?? '')) && m !== null;
  }
}

/** The token of a --http-token-file: its first line, at least MIN_TOKEN_LENGTH printable characters. */
export function parseTokenFile(text: string, file: string): string {
  const token = text.split('\n', 1)[0]!.replace(/\r$/, '').trim();
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new Error(`${file}: the token (first line) must be at least ${MIN_TOKEN_LENGTH} characters`);
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new Error(`${file}: the token must be printable ASCII without spaces`);
  }
  return token;
}

/** Reads a token file; a file others may read is accepted with a warning (returned). */
export async function readTokenFile(file: string): Promise<{ token: Token; warning: string | null }> {
  const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
  const token = new Token(parseTokenFile(text, file));
  const warning =
    info.mode & 0o077
      ? `${file} may be read by others (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`
      : null;
  return { token, warning };
}

export interface FailureLimits {
  /** Wrong tokens an address may send within windowMs before it is refused... */
  maxFailures: number;
  windowMs: number;
  /** ...for this long, right token or not. */
  blockMs: number;
  /** Addresses remembered at most; past this the oldest is forgotten (no unbounded table). */
  maxTracked: number;
}

export const DEFAULT_FAILURE_LIMITS: FailureLimits = {
  maxFailures: 5,
  windowMs: 60_000,
  blockMs: 60_000,
  maxTracked: 1024,
};

interface Record {
  failures: number;
  windowStart: number;
  blockedUntil: number;
}

/** Counts wrong tokens by client address. Times come from the caller (ms, any monotonic clock). */
export class FailureLimiter {
  private readonly byAddress = new Map<string, Record>();

  constructor(private readonly limits: FailureLimits = DEFAULT_FAILURE_LIMITS) {}

  /** Milliseconds `address` must still wait, or 0 when it may try. */
  blockedFor(address: string, now: number): number {
    const record = this.byAddress.get(address);
    return record && record.blockedUntil > now ? record.blockedUntil - now : 0;
  }

  /** Notes a wrong token; true when this one blocks the address. */
  fail(address: string, now: number): boolean {
    let record = this.byAddress.get(address);
    if (!record || now - record.windowStart >= this.limits.windowMs) {
      record = { failures: 0, windowStart: now, blockedUntil: record?.blockedUntil ?? 0 };
    }
    // Re-inserted: the Map's order is then least recently failed first.
    this.byAddress.delete(address);
    this.byAddress.set(address, record);
    if (this.byAddress.size > this.limits.maxTracked) {
      this.byAddress.delete(this.byAddress.keys().next().value!);
    }
    record.failures++;
    if (record.failures < this.limits.maxFailures) return false;
    record.blockedUntil = now + this.limits.blockMs;
    record.failures = 0;
    record.windowStart = now;
    return true;
  }

  /** Addresses remembered now (for tests of the bound). */
  get tracked(): number {
    return this.byAddress.size;
  }
}
