// The connection table a stopping lvsd leaves for the next one (connections.json in the state
// directory, beside lvsd.json): written atomically on stop, read once at start and then removed
// (or, when refused, moved to connections.json.refused), so that no later start takes it again.
//
// The file is a header line and one record a line. The header names the format and version, the
// wall-clock time of the save (the entries' time left counts from it), the number of records and
// the body's length and SHA-256; every record is checked field by field. Anything wrong refuses the
// whole file, never part of it: the daemon then starts with an empty table.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { MAX_CAPACITY } from '../core/conn/table.js';
import { STATE_NAMES } from '../core/conn/tcp-state.js';
import { formatAddr, parseAddr, type Addr, type Family } from '../core/inet.js';
import type { ServiceKey } from '../core/model.js';
import type { ConnRecord } from '../core/ops.js';
import type { SavedConnections } from '../core/restart.js';
import { nodeStateFs, writeFileAtomic, type StateFs } from './state-file.js';

export const CONN_TABLE_FILE_NAME = 'connections.json';
/** Where a refused table is moved, for the operator to look at; it is never read again. */
export const REFUSED_SUFFIX = '.refused';
export const CONN_TABLE_FORMAT = 'lvsd-connections';
export const CONN_TABLE_VERSION = 1;

/** A saved table lvsd will not take: the file and what is wrong with it. */
export class ConnTableError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`refusing the connection table ${file}: ${reason}`);
    this.name = 'ConnTableError';
  }
}

interface Header {
  format: string;
  version: number;
  savedAt: number;
  count: number;
  bytes: number;
  sha256: string;
}

/** A record on disk: addresses as text, everything else as ConnRecord has it. */
interface RecordLine {
  service: { af: Family; protocol: number; addr: string; port: number; fwmark: number };
  af: Family;
  protocol: number;
  caddr: string;
  cport: number;
  vaddr: string;
  vport: number;
  daddr: string;
  dport: number;
  state: string;
  expiresMs: number;
  template: boolean;
  seqOffset?: number;
}

const PROTOCOLS = new Set([0, 6, 17, 132]);
/** Longer than any timer lvsd sets: its timeouts are whole seconds below 2^31. */
const MAX_EXPIRES_MS = 2 ** 31 * 1000;

function recordLine(r: ConnRecord): RecordLine {
  const k = r.service;
  return {
    service: { af: k.af, protocol: k.protocol, addr: formatAddr(k.addr), port: k.port, fwmark: k.fwmark },
    af: r.af,
    protocol: r.protocol,
    caddr: formatAddr(r.caddr),
    cport: r.cport,
    vaddr: formatAddr(r.vaddr),
    vport: r.vport,
    daddr: formatAddr(r.daddr),
    dport: r.dport,
    state: r.state,
    // The data plane's clock counts fractions of a millisecond.
    expiresMs: Math.max(0, Math.round(r.expiresMs)),
    template: r.template,
    ...(r.seqOffset === undefined ? {} : { seqOffset: r.seqOffset }),
  };
}

/** The file's text for these records, saved at wall-clock `savedAtMs`. */
export function encodeConnTable(saved: SavedConnections): string {
  const body = saved.records.map((r) => `${JSON.stringify(recordLine(r))}\n`).join('');
  const sealed = {
    format: CONN_TABLE_FORMAT,
    version: CONN_TABLE_VERSION,
    savedAt: saved.savedAtMs,
    count: saved.records.length,
    bytes: Buffer.byteLength(body),
  };
  const header: Header = { ...sealed, sha256: seal(sealed, body) };
  return `${JSON.stringify(header)}\n${body}`;
}

/** The checksum covers the header's fields too: a save time changed by one digit is refused. */
function seal(header: Omit<Header, 'sha256'>, body: string): string {
  const { format, version, savedAt, count, bytes } = header;
  return createHash('sha256')
    .update(JSON.stringify([format, version, savedAt, count, bytes]))
    .update('\n')
    .update(body)
    .digest('hex');
}

/** Parses and checks a whole file; throws ConnTableError naming the first thing wrong. */
export function decodeConnTable(file: string, text: string): SavedConnections {
  const refuse = (reason: string): never => {
    throw new ConnTableError(file, reason);
  };
  const newline = text.indexOf('\n');
  if (newline < 0) refuse('it has no header line');
  let header: Partial<Header>;
  try {
    header = JSON.parse(text.slice(0, newline)) as Partial<Header>;
  } catch {
    return refuse('its header is not JSON');
  }
  if (header === null || typeof header !== 'object' || header.format !== CONN_TABLE_FORMAT)
    refuse(`it is not a ${CONN_TABLE_FORMAT} file`);
  if (header.version !== CONN_TABLE_VERSION)
    refuse(`version ${JSON.stringify(header.version)} is not ${CONN_TABLE_VERSION}`);
  const { savedAt, count, bytes, sha256: digest } = header;
  if (!Number.isSafeInteger(savedAt) || savedAt! < 0) refuse('its save time is not a time');
  if (!Number.isSafeInteger(count) || count! < 0 || count! > MAX_CAPACITY)
    refuse(`its count ${JSON.stringify(count)} is not 0..${MAX_CAPACITY}`);
  const body = text.slice(newline + 1);
  if (bytes !== Buffer.byteLength(body))
    refuse(`it is ${Buffer.byteLength(body)} bytes long where its header says ${JSON.stringify(bytes)}`);
  if (digest !== seal(header as Header, body)) refuse('its checksum does not match');
  const lines = body === '' ? [] : body.slice(0, -1).split('\n');
  if (!body.endsWith('\n') && body !== '') refuse('its last record is cut short');
  if (lines.length !== count) refuse(`it holds ${lines.length} records where its header says ${count}`);
  // The VIPs and real servers repeat on every line: each is parsed once.
  const addresses = new Map<string, Addr | null>();
  const records = lines.map((line, i) => {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      return refuse(`record ${i + 1} is not JSON`);
    }
    const result = checkRecord(raw, addresses);
    return typeof result === 'string' ? refuse(`record ${i + 1}: ${result}`) : result;
  });
  return { savedAtMs: savedAt!, records };
}

function exactKeys(value: object, keys: readonly string[], optional: readonly string[] = []): string | null {
  const extra = Object.keys(value).find((k) => !keys.includes(k) && !optional.includes(k));
  if (extra !== undefined) return `unknown field ${extra.slice(0, 40)}`;
  const missing = keys.find((k) => !(k in value));
  return missing === undefined ? null : `missing field ${missing}`;
}

const isPort = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535;
const isFamily = (v: unknown): v is Family => v === 4 || v === 6;

function address(text: unknown, family: Family | null, parsed: Map<string, Addr | null>): Addr | null {
  if (typeof text !== 'string') return null;
  let addr = parsed.get(text);
  if (addr === undefined) {
    addr = parseAddr(text);
    parsed.set(text, addr);
  }
  return addr && (family === null || addr.af === family) ? addr : null;
}

const SERVICE_KEYS = ['af', 'protocol', 'addr', 'port', 'fwmark'] as const;
const RECORD_KEYS = [
  'service',
  'af',
  'protocol',
  'caddr',
  'cport',
  'vaddr',
  'vport',
  'daddr',
  'dport',
  'state',
  'expiresMs',
  'template',
] as const;

/** The record, or why it is not one lvsd could have written. */
function checkRecord(raw: unknown, parsed: Map<string, Addr | null>): ConnRecord | string {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return 'not an object';
  const problem = exactKeys(raw, RECORD_KEYS, ['seqOffset']);
  if (problem) return problem;
  const r = raw as RecordLine;
  const s = r.service as unknown;
  if (s === null || typeof s !== 'object' || Array.isArray(s)) return 'service is not an object';
  const serviceProblem = exactKeys(s, SERVICE_KEYS);
  if (serviceProblem) return `service: ${serviceProblem}`;
  const k = r.service;
  if (!isFamily(k.af) || !PROTOCOLS.has(k.protocol) || !isPort(k.port)) return 'service is not a service key';
  if (!Number.isInteger(k.fwmark) || k.fwmark < 0 || k.fwmark > 0xffff_ffff)
    return 'service fwmark is invalid';
  const serviceAddr = address(k.addr, k.af, parsed);
  if (!serviceAddr) return 'service address is invalid';
  if (!isFamily(r.af) || !PROTOCOLS.has(r.protocol)) return 'family or protocol is invalid';
  const caddr = address(r.caddr, r.af, parsed);
  const vaddr = address(r.vaddr, r.af, parsed);
  const daddr = address(r.daddr, null, parsed);
  if (!caddr || !vaddr || !daddr) return 'an address is invalid';
  if (!isPort(r.cport) || !isPort(r.vport) || !isPort(r.dport)) return 'a port is invalid';
  if (typeof r.template !== 'boolean') return 'template is not true or false';
  const states: readonly string[] = STATE_NAMES;
  if (!states.includes(r.state)) return `state ${JSON.stringify(r.state).slice(0, 40)} is unknown`;
  if (r.template !== (r.state === 'NONE'))
    return `state ${r.state} is not a ${r.template ? 'template' : 'connection'}'s`;
  if (!Number.isInteger(r.expiresMs) || r.expiresMs < 0 || r.expiresMs > MAX_EXPIRES_MS)
    return 'expiresMs is not a time left';
  const { seqOffset } = r;
  if (seqOffset !== undefined) {
    if (!Number.isInteger(seqOffset) || seqOffset < 0 || seqOffset > 0xffff_ffff)
      return 'seqOffset is not a 32-bit sequence offset';
    if (r.protocol !== 6 || r.template) return 'seqOffset belongs to TCP connections only';
  }
  const service: ServiceKey = {
    af: k.af,
    protocol: k.protocol as ServiceKey['protocol'],
    addr: serviceAddr,
    port: k.port,
    fwmark: k.fwmark,
  };
  return {
    service,
    af: r.af,
    protocol: r.protocol as ConnRecord['protocol'],
    caddr,
    cport: r.cport,
    vaddr,
    vport: r.vport,
    daddr,
    dport: r.dport,
    state: r.state,
    expiresMs: r.expiresMs,
    template: r.template,
    ...(seqOffset === undefined ? {} : { seqOffset }),
  };
}

/** The state directory's connection table file, through the same file-system port as lvsd.json. */
export class ConnTableStore {
  readonly file: string;

  constructor(
    stateDir: string,
    private readonly fs: StateFs = nodeStateFs,
  ) {
    this.file = join(stateDir, CONN_TABLE_FILE_NAME);
  }

  /** Writes the table atomically: a failure leaves no file (or the one there was), never half of one. */
  async save(saved: SavedConnections): Promise<void> {
    await writeFileAtomic(this.file, encodeConnTable(saved), this.fs);
  }

  /**
   * Reads and checks the table; null when there is none. A table that cannot be read or fails a
   * check throws ConnTableError, the file moved to `<file>.refused`. Then either `taken()` or
   * `setAside()`, so that no later start reads it again.
   */
  async read(): Promise<SavedConnections | null> {
    let text: string;
    try {
      text = await this.fs.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      await this.setAside();
      throw new ConnTableError(this.file, `cannot read it: ${(err as Error).message}`);
    }
    try {
      return decodeConnTable(this.file, text);
    } catch (err) {
      await this.setAside();
      throw err;
    }
  }

  /** Removes the file of a table being taken over; throws ConnTableError when it stays (take none of it then). */
  async taken(): Promise<void> {
    try {
      await this.fs.unlink(this.file);
    } catch (err) {
      await this.setAside();
      throw new ConnTableError(this.file, `cannot remove it once read: ${(err as Error).message}`);
    }
  }

  /** Moves a refused file away (best effort: a file that stays is refused again, never taken). */
  async setAside(): Promise<void> {
    await this.fs.rename(this.file, this.file + REFUSED_SUFFIX).catch(() => undefined);
  }
}
