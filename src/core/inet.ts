// IPv4 and IPv6 addresses as four 32-bit words, so that comparisons, hashing and masking are
// integer operations on the packet path. An IPv4 address lives in word `a`; b, c and d are 0.

export type Family = 4 | 6;

export interface Addr {
  readonly af: Family;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
}

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_SCTP = 132;

export type Protocol = typeof IPPROTO_TCP | typeof IPPROTO_UDP | typeof IPPROTO_SCTP;

export function addr4(value: number): Addr {
  return { af: 4, a: value >>> 0, b: 0, c: 0, d: 0 };
}

export function addr6(a: number, b: number, c: number, d: number): Addr {
  return { af: 6, a: a >>> 0, b: b >>> 0, c: c >>> 0, d: d >>> 0 };
}

export function addrEquals(x: Addr, y: Addr): boolean {
  return x.af === y.af && x.a === y.a && x.b === y.b && x.c === y.c && x.d === y.d;
}

/** Orders as libipvs sorts: by family, then numerically. */
export function addrCompare(x: Addr, y: Addr): number {
  return x.af - y.af || x.a - y.a || x.b - y.b || x.c - y.c || x.d - y.d;
}

/** A string usable as a Map key. */
export function addrKey(x: Addr): string {
  return x.af === 4 ? `${x.a}` : `${x.a}:${x.b}:${x.c}:${x.d}`;
}

function prefixMask(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/** The address with all but its first `prefix` bits cleared. */
export function addrMask(x: Addr, prefix: number): Addr {
  if (x.af === 4) return addr4((x.a & prefixMask(prefix)) >>> 0);
  return addr6(
    x.a & prefixMask(prefix),
    x.b & prefixMask(prefix - 32),
    x.c & prefixMask(prefix - 64),
    x.d & prefixMask(prefix - 96),
  );
}

/**
 * Whether the kernel takes this address for a real server (ip_vs_new_dest): not 0.0.0.0/8,
 * 255.255.255.255 or multicast; for IPv6 not ::, multicast, link-local or IPv4-mapped.
 */
export function isUnicast(x: Addr): boolean {
  if (x.af === 4) return x.a >>> 24 !== 0 && x.a !== 0xffffffff && x.a >>> 28 !== 0xe;
  if (x.a >>> 24 === 0xff || x.a >>> 22 === 0xfe80 >>> 6) return false;
  if (x.a === 0 && x.b === 0) return !((x.c === 0 && x.d === 0) || x.c === 0xffff);
  return true;
}

/** Prefix length of a contiguous IPv4 netmask (255.255.255.0 -> 24), or -1 if it is not contiguous. */
export function netmaskPrefix(mask: Addr): number {
  if (mask.af !== 4) return -1;
  const inverted = ~mask.a >>> 0;
  if ((inverted & (inverted + 1)) !== 0) return -1;
  return Math.clz32(inverted);
}

export function prefixNetmask(prefix: number): Addr {
  return addr4(prefixMask(prefix));
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIPv4(text: string): Addr | null {
  const m = IPV4_RE.exec(text);
  if (!m) return null;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255 || (m[i]!.length > 1 && m[i]![0] === '0')) return null;
    value = value * 256 + octet;
  }
  return addr4(value);
}

/** What inet_aton read: the address, and whether a zero-padded part was taken as octal. */
export interface InetAtonResult {
  addr: Addr;
  octal: boolean;
}

// The largest value of the last part, by the number of parts: it fills the remaining bytes.
const LAST_PART_MAX = [0xffffffff, 0xffffff, 0xffff, 0xff];

/**
 * IPv4 text as glibc's inet_aton(3) reads it (ipvsadm's addresses and masks): one to four
 * parts, each decimal, octal (leading 0) or hex (0x); `10.1` is 10.0.0.1, `0x7f000001` is
 * 127.0.0.1, `010` is 8. Whitespace ends the address and whatever follows it is ignored.
 */
export function parseInetAton(text: string): InetAtonResult | null {
  const space = text.search(/[ \t\n\v\f\r]/);
  const parts = (space < 0 ? text : text.slice(0, space)).split('.');
  if (parts.length > 4) return null;
  let octal = false;
  const values: number[] = [];
  for (const part of parts) {
    let value: number;
    if (/^0[xX][0-9a-fA-F]+$/.test(part)) value = parseInt(part.slice(2), 16);
    else if (/^0[0-7]*$/.test(part)) {
      value = parseInt(part, 8);
      if (part.length > 1) octal = true;
    } else if (/^[1-9][0-9]*$/.test(part)) value = Number(part);
    else return null;
    values.push(value);
  }
  const last = values.pop()!;
  if (values.some((v) => v > 0xff) || last > LAST_PART_MAX[values.length]!) return null;
  const high = values.reduce((acc, v, i) => acc + v * 2 ** (24 - 8 * i), 0);
  return { addr: addr4(high + last), octal };
}

export function parseIPv6(text: string): Addr | null {
  if (text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  let body = text;
  if (body.includes('.')) {
    // A dotted IPv4 tail (::ffff:1.2.3.4) stands for the last two groups.
    const lastColon = body.lastIndexOf(':');
    const v4 = parseIPv4(body.slice(lastColon + 1));
    if (!v4) return null;
    body = `${body.slice(0, lastColon + 1)}${(v4.a >>> 16).toString(16)}:${(v4.a & 0xffff).toString(16)}`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const rest = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    if (head.length + rest.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    if (head.length !== 8) return null;
    groups = head;
  }
  const word = (i: number) => ((groups[i]! << 16) | groups[i + 1]!) >>> 0;
  return addr6(word(0), word(2), word(4), word(6));
}

export function parseAddr(text: string): Addr | null {
  return parseIPv4(text) ?? (text.includes(':') ? parseIPv6(text) : null);
}

export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/** RFC 5952 text: lower case, the longest run of two or more zero groups shortened to `::`. */
export function formatIPv6(x: Addr): string {
  const groups = [
    x.a >>> 16,
    x.a & 0xffff,
    x.b >>> 16,
    x.b & 0xffff,
    x.c >>> 16,
    x.c & 0xffff,
    x.d >>> 16,
    x.d & 0xffff,
  ];
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) addresses print their tail
  // dotted, as glibc's inet_ntop does.
  if (bestStart === 0 && bestLen === 5 && groups[5] === 0xffff) return `::ffff:${formatIPv4(x.d)}`;
  if (bestStart === 0 && bestLen === 6) return `::${formatIPv4(x.d)}`;
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function formatAddr(x: Addr): string {
  return x.af === 4 ? formatIPv4(x.a) : formatIPv6(x);
}

/** addr:port as ipvsadm prints it, with IPv6 in brackets. */
export function formatAddrPort(x: Addr, port: number): string {
  return x.af === 4 ? `${formatIPv4(x.a)}:${port}` : `[${formatIPv6(x)}]:${port}`;
}
