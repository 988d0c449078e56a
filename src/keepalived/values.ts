// keepalived's value readers (read_unsigned, read_timer, check_true_false, inet_stosockaddr) as
// functions that return null on a bad value; the parser turns null into an error at the line.

import { parseAddr, type Addr } from '../core/inet.js';

/** A decimal integer in [min, max], or null. */
export function readUnsigned(text: string | undefined, min: number, max: number): number | null {
  if (text === undefined || !/^\d{1,15}$/.test(text)) return null;
  const value = Number(text);
  return value >= min && value <= max ? value : null;
}

/** Timers are read in microseconds, with up to six decimals (TIMER_HZ_DIGITS). */
const TIMER_DIGITS = 6;
export const TIMER_MAX_US = Number.MAX_SAFE_INTEGER;

/** A timer in seconds (`5`, `0.25`) as milliseconds, within [minUs, maxUs] microseconds; or null. */
export function readTimerMs(text: string | undefined, minUs: number, maxUs: number): number | null {
  const m = text === undefined ? null : /^(\d{1,12})(?:\.(\d+))?$/.exec(text);
  if (!m) return null;
  const fraction = (m[2] ?? '').padEnd(TIMER_DIGITS, '0');
  let us = Number(m[1]) * 10 ** TIMER_DIGITS + Number(fraction.slice(0, TIMER_DIGITS));
  // read_decimal_unsigned_long_func rounds on the seventh decimal.
  if (fraction.length > TIMER_DIGITS && fraction[TIMER_DIGITS]! >= '5') us++;
  if (us < minUs || us > maxUs) return null;
  return us / 1000;
}

/** check_true_false; a missing value means true. */
export function readBool(text: string | undefined): boolean | null {
  if (text === undefined) return true;
  if (text === 'true' || text === 'on' || text === 'yes') return true;
  if (text === 'false' || text === 'off' || text === 'no') return false;
  return null;
}

/** A numeric address, IPv6 with or without brackets. */
export function readAddr(text: string | undefined): Addr | null {
  if (text === undefined) return null;
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  return parseAddr(bare);
}

/** A port as alloc_vs reads it: absent or all zeros is 0; else 1..65535. */
export function readPort(text: string | undefined): number | null {
  if (text === undefined || /^0+$/.test(text)) return 0;
  return readUnsigned(text, 1, 65535);
}

/** read_hex_str without wildcards: pairs of hex digits, blanks between bytes allowed. */
export function readHex(text: string): Uint8Array | null {
  const bytes: number[] = [];
  let i = 0;
  while (i < text.length) {
    while (text[i] === ' ' || text[i] === '\t') i++;
    if (i >= text.length) break;
    const high = hexDigit(text[i++]);
    if (high < 0) return null;
    if (i < text.length && text[i] !== ' ' && text[i] !== '\t') {
      const low = hexDigit(text[i++]);
      if (low < 0) return null;
      bytes.push(high * 16 + low);
    } else {
      bytes.push(high);
    }
  }
  return bytes.length > 0 ? Uint8Array.from(bytes) : null;
}

function hexDigit(c: string | undefined): number {
  return c !== undefined && /^[0-9A-Fa-f]$/.test(c) ? parseInt(c, 16) : -1;
}
