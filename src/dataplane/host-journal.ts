// The host journal as data: each change lvsd makes to the kernel is recorded as one of a few known
// kinds (a sysctl, our nftables table, a policy rule, a route, a proxy neighbour), never as a
// command line. HostNetwork derives the commands that apply, check and undo a change from its kind.
//
// A journal read back at start is validated entry by entry against what this lvsd itself could have
// written (its table names, its devices, the sysctls it touches, well-formed addresses and numbers);
// anything else refuses the whole journal, so a crafted or corrupt file makes lvsd run nothing.

import { formatAddr, parseAddr, type Family } from '../core/inet.js';

/** One change to the host, with enough to undo it. */
export type HostChange =
  /** `/proc/sys/<path>` set to `value`; `previous` is written back on undo. */
  | { kind: 'sysctl'; path: string; value: string; previous: string }
  /** Our nftables table (family inet), created whole; undo deletes it. */
  | { kind: 'nft-table'; table: string }
  /** `ip rule add pref P [fwmark M] lookup L`; undo deletes it. */
  | { kind: 'rule'; family: Family; pref: number; fwmark: number | null; lookup: number | 'local' }
  /** `ip rule del pref P lookup local` (the local table moved after our rules); undo adds it back. */
  | { kind: 'rule-removed'; family: Family; pref: number; lookup: 'local' }
  /** `ip route add [blackhole] DST [dev D] [table T] [metric M]`; undo deletes it. `table` null is main. */
  | {
      kind: 'route';
      family: Family;
      blackhole: boolean;
      dst: string;
      dev: string | null;
      table: number | null;
      metric: number | null;
    }
  /** `ip neigh add proxy ADDR dev D`; undo deletes it. */
  | { kind: 'proxy-neigh'; family: Family; addr: string; dev: string }
  /**
   * The restart hold (nft table `<ours>_hold`): the services' traffic dropped while no lvsd runs,
   * each element expiring on its own in the kernel; undo deletes the table. Never repaired.
   */
  | { kind: 'nft-hold'; table: string }
  /**
   * The layer-2 plane's ingress drop (nft table `netdev <ours>`, one chain per interface lvsd
   * reads frames from), remade whole when the services change; undo deletes it.
   */
  | { kind: 'nft-netdev'; table: string };

/** The changes made for one purpose (a family's activation, a VIP, a fwmark service), undone together. */
export interface JournalEntry {
  key: string;
  changes: HostChange[];
}

/** What the journal may name: the tables and devices of this lvsd. */
export interface JournalLimits {
  nftTable: string;
  /** The main policy-routing table. */
  table: number;
  /** The per-fwmark tables: first .. first + count - 1. */
  fwmarkTables: { first: number; count: number };
  /** Whether a device name is one of ours (the main device or a fwmark service's). */
  ownDevice(name: string): boolean;
}

export class HostJournalError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(
      `refusing the host journal ${path}: ${reason}. Nothing in it was run. Undo by hand what an earlier ` +
        `lvsd left (nft list ruleset, ip rule, ip route show table all, sysctl), then remove the file.`,
    );
    this.name = 'HostJournalError';
  }
}

export const JOURNAL_FORMAT = 'lvsd-host-journal';

/** The nftables table of the restart hold beside our own (a name nft and the journal both take). */
export function holdTableName(nftTable: string): string {
  return `${nftTable}_hold`;
}
export const JOURNAL_VERSION = 2;

export function serializeJournal(entries: readonly JournalEntry[]): string {
  return JSON.stringify({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION, entries }, null, 1);
}

/** A change as an operator would read it (and type it to check it). */
export function describeChange(change: HostChange): string {
  switch (change.kind) {
    case 'sysctl':
      return `sysctl ${change.path.replaceAll('/', '.')}=${change.value}`;
    case 'nft-table':
      return `nft table inet ${change.table}`;
    case 'rule':
    case 'rule-removed': {
      const mark = change.kind === 'rule' && change.fwmark !== null ? ` fwmark ${change.fwmark}` : '';
      const rule = `ip -${change.family} rule pref ${change.pref}${mark} lookup ${change.lookup}`;
      return change.kind === 'rule' ? rule : `no ${rule}`;
    }
    case 'route': {
      const parts = [`ip -${change.family} route`, change.blackhole ? 'blackhole' : null, change.dst];
      if (change.dev !== null) parts.push(`dev ${change.dev}`);
      if (change.table !== null) parts.push(`table ${change.table}`);
      if (change.metric !== null) parts.push(`metric ${change.metric}`);
      return parts.filter((p) => p !== null).join(' ');
    }
    case 'proxy-neigh':
      return `ip -${change.family} neigh proxy ${change.addr} dev ${change.dev}`;
    case 'nft-hold':
      return `nft table inet ${change.table} (restart hold)`;
    case 'nft-netdev':
      return `nft table netdev ${change.table}`;
  }
}

const U32_MAX = 0xffff_ffff;
/** Keys are lvsd's own: "active:4", "vip:198.18.0.1", "fwmark:6:7", "sysctl:net/ipv4/ip_forward". */
const KEY = /^[a-z][a-z0-9-]*(:[A-Za-z0-9_.:/@-]+)?$/;
/** What the kernel accepts as an interface name (dev_valid_name), minus what we never use. */
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;
/** As read from /proc (with its newline) or written by us. */
const SYSCTL_VALUE = /^-?\d{1,10}\n?$/;
/** The sysctls lvsd writes; `*` is an interface name (or all/default). */
const SYSCTLS: RegExp[] = [
  /^net\/ipv4\/ip_forward$/,
  /^net\/ipv4\/tcp_early_demux$/,
  /^net\/ipv6\/conf\/all\/forwarding$/,
  /^net\/ipv4\/conf\/([^/]+)\/(send_redirects|accept_local|rp_filter)$/,
  /^net\/ipv6\/conf\/([^/]+)\/proxy_ndp$/,
];

export function isInterfaceName(name: string): boolean {
  return IFNAME.test(name) && name !== '.' && name !== '..';
}

function isU32(value: unknown, min = 0): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= U32_MAX;
}

/** Parses and validates a journal; throws HostJournalError naming the first thing wrong. */
export function parseJournal(path: string, text: string, limits: JournalLimits): JournalEntry[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new HostJournalError(path, `it is not JSON (${(error as Error).message})`);
  }
  if (Array.isArray(data)) {
    // The format before version 2 held command lines; those are never run.
    throw new HostJournalError(path, 'it holds command lines (the format of an earlier lvsd)');
  }
  const doc = data as { format?: unknown; version?: unknown; entries?: unknown } | null;
  if (doc === null || typeof doc !== 'object' || doc.format !== JOURNAL_FORMAT) {
    throw new HostJournalError(path, `it is not a ${JOURNAL_FORMAT} document`);
  }
  if (doc.version !== JOURNAL_VERSION) {
    throw new HostJournalError(path, `version ${JSON.stringify(doc.version)} is not ${JOURNAL_VERSION}`);
  }
  if (!Array.isArray(doc.entries)) throw new HostJournalError(path, 'it has no list of entries');
  const seen = new Set<string>();
  return doc.entries.map((raw: unknown, i: number) => {
    const where = `entry ${i + 1}`;
    const entry = raw as { key?: unknown; changes?: unknown } | null;
    if (entry === null || typeof entry !== 'object' || !Array.isArray(entry.changes)) {
      throw new HostJournalError(path, `${where} is not {key, changes}`);
    }
    const { key } = entry;
    if (typeof key !== 'string' || key.length > 128 || !KEY.test(key)) {
      throw new HostJournalError(path, `${where} has an invalid key ${JSON.stringify(key)?.slice(0, 80)}`);
    }
    if (seen.has(key)) throw new HostJournalError(path, `${where} repeats the key ${key}`);
    seen.add(key);
    const changes = entry.changes.map((change: unknown, j: number) => {
      const problem = checkChange(change, limits);
      if (problem !== null)
        throw new HostJournalError(path, `${where} (${key}), change ${j + 1}: ${problem}`);
      return change as HostChange;
    });
    return { key, changes };
  });
}

function exactKeys(change: Record<string, unknown>, keys: string[]): string | null {
  const extra = Object.keys(change).filter((k) => !keys.includes(k));
  const missing = keys.filter((k) => !(k in change));
  if (extra.length > 0) return `unknown field ${extra[0]}`;
  if (missing.length > 0) return `missing field ${missing[0]}`;
  return null;
}

function checkFamily(family: unknown): string | null {
  return family === 4 || family === 6 ? null : `family ${JSON.stringify(family)} is not 4 or 6`;
}

function checkAddr(text: unknown, family: Family): string | null {
  const addr = typeof text === 'string' ? parseAddr(text) : null;
  if (addr === null || addr.af !== family || formatAddr(addr) !== text) {
    return `${JSON.stringify(text)?.slice(0, 60)} is not an IPv${family} address`;
  }
  return null;
}

/** Our tables: the main one or a fwmark service's. */
function isOwnTable(table: unknown, limits: JournalLimits): boolean {
  const { first, count } = limits.fwmarkTables;
  return isU32(table, 1) && (table === limits.table || (table >= first && table < first + count));
}

/** Why this is no change this lvsd makes, or null when it is one. */
function checkChange(raw: unknown, limits: JournalLimits): string | null {
  if (raw === null || typeof raw !== 'object') return 'not an object';
  const change = raw as Record<string, unknown>;
  switch (change.kind) {
    case 'sysctl': {
      const problem = exactKeys(change, ['kind', 'path', 'value', 'previous']);
      if (problem) return problem;
      const { path, value, previous } = change;
      const match = typeof path === 'string' ? SYSCTLS.map((re) => re.exec(path)).find(Boolean) : null;
      if (!match) return `sysctl ${JSON.stringify(path)?.slice(0, 80)} is not one lvsd writes`;
      if (match[1] !== undefined && !isInterfaceName(match[1])) return `${match[1]} is not an interface name`;
      for (const v of [value, previous]) {
        if (typeof v !== 'string' || !SYSCTL_VALUE.test(v))
          return `sysctl value ${JSON.stringify(v)} is not a number`;
      }
      return null;
    }
    case 'nft-table': {
      const problem = exactKeys(change, ['kind', 'table']);
      if (problem) return problem;
      return change.table === limits.nftTable
        ? null
        : `nft table ${JSON.stringify(change.table)} is not lvsd's`;
    }
    case 'nft-hold': {
      const problem = exactKeys(change, ['kind', 'table']);
      if (problem) return problem;
      return change.table === holdTableName(limits.nftTable)
        ? null
        : `nft table ${JSON.stringify(change.table)} is not lvsd's restart hold`;
    }
    case 'nft-netdev': {
      const problem = exactKeys(change, ['kind', 'table']);
      if (problem) return problem;
      return change.table === limits.nftTable
        ? null
        : `nft table ${JSON.stringify(change.table)} is not lvsd's`;
    }
    case 'rule':
    case 'rule-removed': {
      const fields = change.kind === 'rule' ? ['fwmark'] : [];
      const problem =
        exactKeys(change, ['kind', 'family', 'pref', ...fields, 'lookup']) ?? checkFamily(change.family);
      if (problem) return problem;
      if (!isU32(change.pref)) return `rule preference ${JSON.stringify(change.pref)} is not a number`;
      if (change.kind === 'rule-removed') {
        return change.lookup === 'local' ? null : 'only the local table rule is ever removed';
      }
      if (change.fwmark !== null && !isU32(change.fwmark, 1))
        return `fwmark ${JSON.stringify(change.fwmark)} is invalid`;
      return change.lookup === 'local' || isOwnTable(change.lookup, limits)
        ? null
        : `rule table ${JSON.stringify(change.lookup)} is not lvsd's`;
    }
    case 'route': {
      const keys = ['kind', 'family', 'blackhole', 'dst', 'dev', 'table', 'metric'];
      const problem = exactKeys(change, keys) ?? checkFamily(change.family);
      if (problem) return problem;
      const family = change.family as Family;
      const { blackhole, dst, dev, table, metric } = change;
      if (typeof blackhole !== 'boolean') return 'blackhole is not true or false';
      if (metric !== null && !isU32(metric)) return `metric ${JSON.stringify(metric)} is not a number`;
      if (blackhole ? dev !== null : typeof dev !== 'string' || !limits.ownDevice(dev)) {
        return `route device ${JSON.stringify(dev)} is not lvsd's`;
      }
      if (table !== null && !isOwnTable(table, limits))
        return `route table ${JSON.stringify(table)} is not lvsd's`;
      if (dst === 'default') return table === null ? 'lvsd adds no default route to the main table' : null;
      // Outside our tables, lvsd adds only host routes to its own device (a VIP that is no local address).
      const [host, prefix, ...rest] = typeof dst === 'string' ? dst.split('/') : [];
      if (rest.length > 0 || prefix !== String(family === 4 ? 32 : 128) || blackhole) {
        return `route ${JSON.stringify(dst)?.slice(0, 60)} is not a host route lvsd adds`;
      }
      return checkAddr(host, family);
    }
    case 'proxy-neigh': {
      const problem = exactKeys(change, ['kind', 'family', 'addr', 'dev']) ?? checkFamily(change.family);
      if (problem) return problem;
      if (typeof change.dev !== 'string' || !isInterfaceName(change.dev)) {
        return `${JSON.stringify(change.dev)?.slice(0, 60)} is not an interface name`;
      }
      return checkAddr(change.addr, change.family as Family);
    }
    default:
      return `unknown kind ${JSON.stringify(change.kind)?.slice(0, 40)}`;
  }
}
