// The IPVS sync message codec, byte for byte as net/netfilter/ipvs/ip_vs_sync.c writes and reads
// it: encode / decode / encodingLength (dns-packet's triplet) and a builder that packs entries into
// messages as the master's sync buffers do. Decoding never throws: a malformed datagram comes back
// as a reason, one refused entry as a skipped index.
//
// Layout (all fields big-endian):
//   v1 header, 8 bytes (struct ip_vs_sync_mesg): reserved=0 u8, syncid u8, size u16 (the whole
//     datagram), nr_conns u8, version=1 s8, spare=0 u16.
//   v1 entry (struct ip_vs_sync_v4 / _v6): type u8 (bit 0: IPv6), protocol u8, ver_size u16
//     (version << 12 | length without padding), flags u32, state u16, cport, vport, dport u16,
//     fwmark u32, timeout u32 (seconds), caddr, vaddr, daddr (4 or 16 bytes each): 36 or 72 bytes,
//     then options {type u8, length u8, data}; the next entry starts 4-byte aligned.
//   v0 header, 4 bytes (struct ip_vs_sync_mesg_v0): nr_conns u8 (never 0 for v0), syncid u8, size u16.
//   v0 entry, 24 bytes (struct ip_vs_sync_conn_v0): reserved u8, protocol u8, cport, vport, dport u16,
//     caddr, vaddr, daddr u32, flags u16, state u16; 24 more bytes of struct ip_vs_sync_conn_options
//     (in_seq, out_seq) when flags has IP_VS_CONN_F_IN_SEQ or _OUT_SEQ. IPv4 only.

import { addr4, addr6, type Addr } from '../inet.js';
import { CONN_F_HASHED, CONN_F_SEQ_MASK, syncStateName, type SyncConn, type SyncSeq } from './conn.js';

export const SYNC_HEADER_V1 = 8;
export const SYNC_HEADER_V0 = 4;
export const SYNC_ENTRY_V4 = 36;
export const SYNC_ENTRY_V6 = 72;
export const SYNC_ENTRY_V0 = 24;
/** struct ip_vs_sync_conn_options: two struct ip_vs_seq of three u32. */
export const SYNC_SEQ_OPTIONS = 24;
export const SYNC_PROTO_VER = 1;

export const IPVS_OPT_SEQ_DATA = 1;
export const IPVS_OPT_PE_DATA = 2;
export const IPVS_OPT_PE_NAME = 3;
/** An option type with this bit set may be ignored by a receiver that does not know it. */
export const IPVS_OPT_F_PARAM = 1 << 6;
export const IP_VS_PENAME_MAXLEN = 16;
export const IP_VS_PEDATA_MAXLEN = 255;

const STYPE_F_INET6 = 1;
const SVER_SHIFT = 12;
const SVER_MASK = 0x0fff;
/** nr_conns is a u8: a message never holds more (the kernel does not check and would wrap). */
export const SYNC_MAX_CONNS = 255;

/** A v1 message as lvsd sends it. */
export interface SyncMessage {
  syncId: number;
  conns: SyncConn[];
}

/** Why a whole datagram is refused (the kernel's "Dropping buffer" cases and header checks). */
export type SyncMessageError =
  | 'short'
  | 'bad-size'
  | 'bad-version'
  | 'truncated-entry'
  | 'bad-entry-version'
  | 'bad-entry-type'
  | 'bad-entry-length'
  | 'bad-option';

/** Why one entry is skipped while the rest of its message is kept (ip_vs_proc_sync_conn's positive codes). */
export type SyncEntryError = 'unknown-option' | 'unsupported-protocol' | 'bad-state' | 'bad-pe';

export interface SkippedEntry {
  index: number;
  reason: SyncEntryError;
}

export type SyncDecodeResult =
  | { ok: true; version: 0 | 1; syncId: number; conns: SyncConn[]; skipped: SkippedEntry[] }
  | { ok: false; reason: SyncMessageError };

function optionsLength(conn: SyncConn): number {
  let len = 0;
  if (conn.seq) len += 2 + SYNC_SEQ_OPTIONS;
  if (conn.pe && conn.pe.data.length > 0) {
    len += 2 + conn.pe.data.length;
    if (conn.pe.name.length > 0) len += 2 + conn.pe.name.length;
  }
  return len;
}

/** Bytes of one entry, without the alignment padding that precedes the next one. */
export function entryLength(conn: SyncConn): number {
  return (conn.af === 6 ? SYNC_ENTRY_V6 : SYNC_ENTRY_V4) + optionsLength(conn);
}

const pad4 = (n: number): number => (4 - (n & 3)) & 3;

/**
 * Why a record cannot be sent as it is, or null: the wire's u8 and 12-bit lengths bound the
 * persistence data and name, and addresses must match the family.
 */
export function syncConnProblem(conn: SyncConn): string | null {
  if (conn.caddr.af !== conn.af || conn.vaddr.af !== conn.af || conn.daddr.af !== conn.af)
    return 'addresses of another family';
  if (conn.pe) {
    if (conn.pe.data.length > IP_VS_PEDATA_MAXLEN) return 'persistence data longer than 255 bytes';
    if (conn.pe.data.length > 0 && (conn.pe.name.length < 1 || conn.pe.name.length > IP_VS_PENAME_MAXLEN))
      return 'persistence engine name not 1..16 characters';
    for (let i = 0; i < conn.pe.name.length; i++) {
      const code = conn.pe.name.charCodeAt(i);
      if (code === 0 || code > 0xff) return 'persistence engine name not in Latin-1';
    }
  }
  return null;
}

export function encodingLength(message: SyncMessage): number {
  let len = SYNC_HEADER_V1;
  message.conns.forEach((conn, i) => {
    if (i > 0) len += pad4(len);
    len += entryLength(conn);
  });
  return len;
}

function writeAddr(view: DataView, at: number, addr: Addr): number {
  view.setUint32(at, addr.a);
  if (addr.af === 4) return at + 4;
  view.setUint32(at + 4, addr.b);
  view.setUint32(at + 8, addr.c);
  view.setUint32(at + 12, addr.d);
  return at + 16;
}

function writeSeq(view: DataView, at: number, seq: SyncSeq): number {
  view.setUint32(at, seq.initSeq >>> 0);
  view.setUint32(at + 4, seq.delta >>> 0);
  view.setUint32(at + 8, seq.previousDelta >>> 0);
  return at + 12;
}

/** Writes one entry at `at` (ip_vs_sync_conn's order: fixed part, SEQ_DATA, PE_DATA, PE_NAME); returns its end. */
function writeEntry(buf: Uint8Array, view: DataView, at: number, conn: SyncConn): number {
  const len = entryLength(conn);
  buf[at] = conn.af === 6 ? STYPE_F_INET6 : 0;
  buf[at + 1] = conn.protocol;
  view.setUint16(at + 2, len & SVER_MASK); // version 0 in the top 4 bits
  view.setUint32(at + 4, (conn.flags & ~CONN_F_HASHED) >>> 0);
  view.setUint16(at + 8, conn.state);
  view.setUint16(at + 10, conn.cport);
  view.setUint16(at + 12, conn.vport);
  view.setUint16(at + 14, conn.dport);
  view.setUint32(at + 16, conn.fwmark >>> 0);
  view.setUint32(at + 20, conn.timeoutSec >>> 0);
  let p = writeAddr(view, at + 24, conn.caddr);
  p = writeAddr(view, p, conn.vaddr);
  p = writeAddr(view, p, conn.daddr);
  if (conn.seq) {
    buf[p++] = IPVS_OPT_SEQ_DATA;
    buf[p++] = SYNC_SEQ_OPTIONS;
    p = writeSeq(view, p, conn.seq.in);
    p = writeSeq(view, p, conn.seq.out);
  }
  if (conn.pe && conn.pe.data.length > 0) {
    buf[p++] = IPVS_OPT_PE_DATA;
    buf[p++] = conn.pe.data.length;
    buf.set(conn.pe.data, p);
    p += conn.pe.data.length;
    if (conn.pe.name.length > 0) {
      buf[p++] = IPVS_OPT_PE_NAME;
      buf[p++] = conn.pe.name.length;
      for (let i = 0; i < conn.pe.name.length; i++) buf[p++] = conn.pe.name.charCodeAt(i) & 0xff;
    }
  }
  return p;
}

/**
 * Writes a v1 message into `buf` at `offset` (a new buffer when none is given) and returns the
 * buffer. Records must pass syncConnProblem and number at most SYNC_MAX_CONNS.
 */
export function encode(message: SyncMessage, buf?: Uint8Array, offset = 0): Uint8Array {
  const total = encodingLength(message);
  const out = buf ?? new Uint8Array(total + offset);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[offset] = 0;
  out[offset + 1] = message.syncId;
  view.setUint16(offset + 2, total);
  out[offset + 4] = message.conns.length;
  out[offset + 5] = SYNC_PROTO_VER;
  view.setUint16(offset + 6, 0);
  let p = offset + SYNC_HEADER_V1;
  message.conns.forEach((conn, i) => {
    if (i > 0) {
      const pad = pad4(p - offset);
      out.fill(0, p, p + pad);
      p += pad;
    }
    p = writeEntry(out, view, p, conn);
  });
  encode.bytes = total;
  return out;
}
encode.bytes = 0;

function readAddr(view: DataView, at: number, v6: boolean): Addr {
  if (!v6) return addr4(view.getUint32(at));
  return addr6(view.getUint32(at), view.getUint32(at + 4), view.getUint32(at + 8), view.getUint32(at + 12));
}

function readSeq(view: DataView, at: number): SyncSeq {
  return {
    initSeq: view.getUint32(at),
    delta: view.getUint32(at + 4),
    previousDelta: view.getUint32(at + 8),
  };
}

function latin1(buf: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += String.fromCharCode(buf[i]!);
  return s;
}

/** Why a record with no state name is refused: its protocol, or only its state. */
function stateRefusal(protocol: number, flags: number): SyncEntryError {
  return syncStateName(protocol, flags, 0) === null ? 'unsupported-protocol' : 'bad-state';
}

type EntryResult = { conn: SyncConn } | { skip: SyncEntryError } | { error: SyncMessageError };

/** One v1 entry in [start, end) (its length already checked against the datagram): ip_vs_proc_sync_conn. */
function decodeEntry(buf: Uint8Array, view: DataView, start: number, end: number): EntryResult {
  const type = buf[start]!;
  const v6 = (type & STYPE_F_INET6) !== 0;
  if (!v6 && type !== 0) return { error: 'bad-entry-type' };
  let p = start + (v6 ? SYNC_ENTRY_V6 : SYNC_ENTRY_V4);
  if (p > end) return { error: 'bad-entry-length' };
  let seq: SyncConn['seq'];
  let peData: Uint8Array | undefined;
  let peName: string | undefined;
  while (p < end) {
    if (p + 2 > end) return { error: 'bad-entry-length' };
    const ptype = buf[p]!;
    const plen = buf[p + 1]!;
    p += 2;
    if (plen === 0 || p + plen > end) return { error: 'bad-entry-length' };
    switch (ptype & ~IPVS_OPT_F_PARAM) {
      case IPVS_OPT_SEQ_DATA:
        if (plen !== SYNC_SEQ_OPTIONS || seq) return { error: 'bad-option' };
        seq = { in: readSeq(view, p), out: readSeq(view, p + 12) };
        break;
      case IPVS_OPT_PE_DATA:
        if (peData) return { error: 'bad-option' };
        peData = new Uint8Array(buf.subarray(p, p + plen)); // a copy, and a plain one even from a Buffer
        break;
      case IPVS_OPT_PE_NAME:
        if (plen > IP_VS_PENAME_MAXLEN || peName !== undefined) return { error: 'bad-option' };
        peName = latin1(buf, p, p + plen);
        break;
      default:
        // An unknown option the sender marked mandatory: the kernel drops this entry only.
        if (!(ptype & IPVS_OPT_F_PARAM)) return { skip: 'unknown-option' };
    }
    p += plen;
  }
  const protocol = buf[start + 1]!;
  // HASHED is the sender's own bookkeeping: never meaningful on the wire, never sent by lvsd.
  const flags = (view.getUint32(start + 4) & ~CONN_F_HASHED) >>> 0;
  const state = view.getUint16(start + 8);
  const stateName = syncStateName(protocol, flags, state);
  if (stateName === null) return { skip: stateRefusal(protocol, flags) };
  // PE data is meaningless without the engine it belongs to (the kernel's "Invalid PE parameters").
  if (peData && peName === undefined) return { skip: 'bad-pe' };
  const addrLen = v6 ? 16 : 4;
  const a = start + 24;
  const conn: SyncConn = {
    af: v6 ? 6 : 4,
    protocol,
    flags,
    state,
    stateName,
    cport: view.getUint16(start + 10),
    vport: view.getUint16(start + 12),
    dport: view.getUint16(start + 14),
    fwmark: view.getUint32(start + 16),
    timeoutSec: view.getUint32(start + 20),
    caddr: readAddr(view, a, v6),
    vaddr: readAddr(view, a + addrLen, v6),
    daddr: readAddr(view, a + 2 * addrLen, v6),
  };
  if (seq) conn.seq = seq;
  if (peData) conn.pe = { name: peName!, data: peData };
  return { conn };
}

function decodeV1(buf: Uint8Array, view: DataView, offset: number, end: number): SyncDecodeResult {
  if (end - offset < SYNC_HEADER_V1) return { ok: false, reason: 'short' };
  if (buf[offset + 5] !== SYNC_PROTO_VER || view.getUint16(offset + 6) !== 0)
    return { ok: false, reason: 'bad-version' };
  const count = buf[offset + 4]!;
  const conns: SyncConn[] = [];
  const skipped: SkippedEntry[] = [];
  let p = offset + SYNC_HEADER_V1;
  for (let i = 0; i < count; i++) {
    if (p + SYNC_ENTRY_V4 > end) return { ok: false, reason: 'truncated-entry' };
    const verSize = view.getUint16(p + 2);
    const size = verSize & SVER_MASK;
    if (p + size > end) return { ok: false, reason: 'truncated-entry' };
    if (verSize >> SVER_SHIFT !== 0) return { ok: false, reason: 'bad-entry-version' };
    const entry = decodeEntry(buf, view, p, p + size);
    if ('error' in entry) return { ok: false, reason: entry.error };
    if ('skip' in entry) skipped.push({ index: i, reason: entry.skip });
    else conns.push(entry.conn);
    p += (size + 3) & ~3;
  }
  return { ok: true, version: 1, syncId: buf[offset + 1]!, conns, skipped };
}

/** ip_vs_process_message_v0: 24-byte IPv4 entries, no fwmark, no timeout (the backup uses the state's). */
function decodeV0(buf: Uint8Array, view: DataView, offset: number, end: number): SyncDecodeResult {
  const count = buf[offset]!;
  const conns: SyncConn[] = [];
  const skipped: SkippedEntry[] = [];
  let p = offset + SYNC_HEADER_V0;
  for (let i = 0; i < count; i++) {
    if (p + SYNC_ENTRY_V0 > end) return { ok: false, reason: 'truncated-entry' };
    const s = p;
    const flags = view.getUint16(s + 20) & ~CONN_F_HASHED;
    let seq: SyncConn['seq'];
    if (flags & CONN_F_SEQ_MASK) {
      if (s + SYNC_ENTRY_V0 + SYNC_SEQ_OPTIONS > end) return { ok: false, reason: 'truncated-entry' };
      seq = { in: readSeq(view, s + SYNC_ENTRY_V0), out: readSeq(view, s + SYNC_ENTRY_V0 + 12) };
      p += SYNC_ENTRY_V0 + SYNC_SEQ_OPTIONS;
    } else {
      p += SYNC_ENTRY_V0;
    }
    const protocol = buf[s + 1]!;
    const state = view.getUint16(s + 22);
    const stateName = syncStateName(protocol, flags, state);
    if (stateName === null) {
      skipped.push({ index: i, reason: stateRefusal(protocol, flags) });
      continue;
    }
    const conn: SyncConn = {
      af: 4,
      protocol,
      flags,
      state,
      stateName,
      cport: view.getUint16(s + 2),
      vport: view.getUint16(s + 4),
      dport: view.getUint16(s + 6),
      fwmark: 0,
      timeoutSec: 0,
      caddr: addr4(view.getUint32(s + 8)),
      vaddr: addr4(view.getUint32(s + 12)),
      daddr: addr4(view.getUint32(s + 16)),
    };
    if (seq) conn.seq = seq;
    conns.push(conn);
  }
  return { ok: true, version: 0, syncId: buf[offset + 1]!, conns, skipped };
}

/**
 * Decodes the datagram in buf[offset, end) as ip_vs_process_message does: the size field must be
 * the datagram's length; a first byte of 0 marks v1, anything else is a v0 message of that many
 * entries. Refuses a whole datagram where the kernel stops reading it (the kernel keeps the entries
 * before the fault; lvsd keeps none, so a corrupt datagram changes nothing).
 */
export function decode(buf: Uint8Array, offset = 0, end = buf.length): SyncDecodeResult {
  if (end - offset < SYNC_HEADER_V0) return { ok: false, reason: 'short' };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint16(offset + 2) !== end - offset) return { ok: false, reason: 'bad-size' };
  return buf[offset] === 0 ? decodeV1(buf, view, offset, end) : decodeV0(buf, view, offset, end);
}

/**
 * Packs entries into messages the way the master's sync buffers fill: each entry 4-byte aligned,
 * a new message when the next entry would pass `maxLen` (a message holds at least one entry, so a
 * single entry longer than maxLen still goes out, as in ip_vs_sync_buff_create), at most 255 entries.
 */
export class SyncMessageBuilder {
  private conns: SyncConn[] = [];
  private length = SYNC_HEADER_V1;

  constructor(
    private readonly syncId: number,
    private readonly maxLen: number,
  ) {}

  get count(): number {
    return this.conns.length;
  }

  /** Adds an entry; returns the message it closed to make room, if any. */
  add(conn: SyncConn): Uint8Array | null {
    const len = entryLength(conn);
    let closed: Uint8Array | null = null;
    if (this.conns.length > 0) {
      const pad = pad4(this.length);
      if (this.length + pad + len > this.maxLen || this.conns.length >= SYNC_MAX_CONNS) closed = this.flush();
    }
    this.length += this.conns.length > 0 ? pad4(this.length) + len : len;
    this.conns.push(conn);
    return closed;
  }

  /** The message built so far, or null when it is empty; starts a new one. */
  flush(): Uint8Array | null {
    if (this.conns.length === 0) return null;
    const bytes = encode({ syncId: this.syncId, conns: this.conns });
    this.conns = [];
    this.length = SYNC_HEADER_V1;
    return bytes;
  }
}

/** All of `conns` as messages of at most maxLen bytes each (but one entry per message at least). */
export function packSyncMessages(conns: readonly SyncConn[], syncId: number, maxLen: number): Uint8Array[] {
  const builder = new SyncMessageBuilder(syncId, maxLen);
  const out: Uint8Array[] = [];
  for (const conn of conns) {
    const closed = builder.add(conn);
    if (closed) out.push(closed);
  }
  const last = builder.flush();
  if (last) out.push(last);
  return out;
}
