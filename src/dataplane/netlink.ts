// rtnetlink for the layer-2 plane: the neighbour table (a dump, then its changes as they happen,
// and a request that makes the kernel resolve an address), the interfaces' MTUs (likewise) and
// route lookups (`ip route get` as one message, not a subprocess). The codec is pure (encode*/parse*); NetlinkSocket is the
// koffi-made AF_NETLINK socket it travels on.

import koffi from 'koffi';
import type { Addr, Family } from '../core/inet.js';

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWROUTE = 24;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;
const NTF_USE = 0x01;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const IFLA_MTU = 4;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
/** Neighbour states whose link-layer address can be used (STALE keeps its MAC). */
const NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
/** RTMGRP_NEIGH: the multicast group of neighbour changes. */
export const RTMGRP_NEIGH = 0x4;
/** RTMGRP_LINK: the multicast group of interface changes (an MTU set, say). */
export const RTMGRP_LINK = 0x1;
const AF_INET = 2;
const AF_INET6 = 10;
const NLMSG_HDRLEN = 16;

const align4 = (n: number): number => (n + 3) & ~3;

function addrBytes(addr: Addr): Buffer {
  const out = Buffer.alloc(addr.af === 4 ? 4 : 16);
  [addr.a, addr.b, addr.c, addr.d]
    .slice(0, addr.af === 4 ? 1 : 4)
    .forEach((w, i) => out.writeUInt32BE(w, i * 4));
  return out;
}

function bytesAddr(buf: Buffer): Addr | null {
  if (buf.length === 4) return { af: 4, a: buf.readUInt32BE(0), b: 0, c: 0, d: 0 };
  if (buf.length === 16)
    return {
      af: 6,
      a: buf.readUInt32BE(0),
      b: buf.readUInt32BE(4),
      c: buf.readUInt32BE(8),
      d: buf.readUInt32BE(12),
    };
  return null;
}

const familyOf = (af: Family): number => (af === 4 ? AF_INET : AF_INET6);

function message(type: number, flags: number, seq: number, body: Buffer, attrs: [number, Buffer][]): Buffer {
  const attrBytes = attrs.map(([kind, value]) => {
    const attr = Buffer.alloc(align4(4 + value.length));
    attr.writeUInt16LE(4 + value.length, 0);
    attr.writeUInt16LE(kind, 2);
    value.copy(attr, 4);
    return attr;
  });
  const payload = Buffer.concat([body, ...attrBytes]);
  const header = Buffer.alloc(NLMSG_HDRLEN);
  header.writeUInt32LE(NLMSG_HDRLEN + payload.length, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt16LE(flags | NLM_F_REQUEST, 6);
  header.writeUInt32LE(seq, 8);
  return Buffer.concat([header, payload]);
}

function ndmsg(family: number, ifindex: number, state: number, flags: number): Buffer {
  const body = Buffer.alloc(12);
  body.writeUInt8(family, 0);
  body.writeInt32LE(ifindex, 4);
  body.writeUInt16LE(state, 8);
  body.writeUInt8(flags, 10);
  return body;
}

/** RTM_GETNEIGH, dump: every neighbour of every family. */
export function encodeNeighbourDump(seq: number): Buffer {
  return message(RTM_GETNEIGH, NLM_F_DUMP, seq, ndmsg(0, 0, 0, 0), []);
}

/** RTM_NEWNEIGH with NTF_USE: the kernel creates the entry if need be and resolves it (ARP/ND). */
export function encodeResolve(seq: number, ifindex: number, addr: Addr): Buffer {
  return message(
    RTM_NEWNEIGH,
    NLM_F_CREATE | NLM_F_REPLACE,
    seq,
    ndmsg(familyOf(addr.af), ifindex, 0, NTF_USE),
    [[NDA_DST, addrBytes(addr)]],
  );
}

/** RTM_GETLINK, dump: every interface. */
export function encodeLinkDump(seq: number): Buffer {
  return message(RTM_GETLINK, NLM_F_DUMP, seq, Buffer.alloc(16), []);
}

/** RTM_GETROUTE for one destination, as `ip route get`. */
export function encodeRouteGet(seq: number, addr: Addr): Buffer {
  const body = Buffer.alloc(12);
  body.writeUInt8(familyOf(addr.af), 0);
  body.writeUInt8(addr.af === 4 ? 32 : 128, 1);
  return message(RTM_GETROUTE, 0, seq, body, [[RTA_DST, addrBytes(addr)]]);
}

export interface RawMessage {
  type: number;
  seq: number;
  body: Buffer;
}

/** Splits a datagram into messages; stops at a truncated one. */
export function splitMessages(data: Buffer): RawMessage[] {
  const out: RawMessage[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= data.length;) {
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) break;
    out.push({
      type: data.readUInt16LE(off + 4),
      seq: data.readUInt32LE(off + 8),
      body: data.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

function attributes(body: Buffer, from: number): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  for (let off = from; off + 4 <= body.length;) {
    const len = body.readUInt16LE(off);
    if (len < 4 || off + len > body.length) break;
    attrs.set(body.readUInt16LE(off + 2) & 0x3fff, body.subarray(off + 4, off + len));
    off += align4(len);
  }
  return attrs;
}

export interface NeighbourUpdate {
  ifindex: number;
  addr: Addr;
  /** The MAC to use, or null: the entry went away, failed or is not resolved yet. */
  mac: Uint8Array | null;
}

/** An RTM_NEWNEIGH or RTM_DELNEIGH as a change of the table; null for what is not one (a bridge's fdb entry, say). */
export function parseNeighbour(msg: RawMessage): NeighbourUpdate | null {
  if ((msg.type !== RTM_NEWNEIGH && msg.type !== RTM_DELNEIGH) || msg.body.length < 12) return null;
  const family = msg.body.readUInt8(0);
  if (family !== AF_INET && family !== AF_INET6) return null;
  const ifindex = msg.body.readInt32LE(4);
  const state = msg.body.readUInt16LE(8);
  const attrs = attributes(msg.body, 12);
  const dst = attrs.get(NDA_DST);
  const addr = dst ? bytesAddr(dst) : null;
  if (!addr || addr.af !== (family === AF_INET ? 4 : 6)) return null;
  const lladdr = attrs.get(NDA_LLADDR);
  const usable = msg.type === RTM_NEWNEIGH && (state & NUD_USABLE) !== 0 && lladdr?.length === 6;
  return { ifindex, addr, mac: usable ? new Uint8Array(lladdr) : null };
}

export interface LinkUpdate {
  ifindex: number;
  /** The interface's MTU, or null: it went away. */
  mtu: number | null;
}

/** An RTM_NEWLINK or RTM_DELLINK (ifinfomsg: family, type, index, flags, change); null for anything else. */
export function parseLink(msg: RawMessage): LinkUpdate | null {
  if ((msg.type !== RTM_NEWLINK && msg.type !== RTM_DELLINK) || msg.body.length < 16) return null;
  const ifindex = msg.body.readInt32LE(4);
  if (msg.type === RTM_DELLINK) return { ifindex, mtu: null };
  const mtu = attributes(msg.body, 16).get(IFLA_MTU);
  return mtu?.length === 4 ? { ifindex, mtu: mtu.readUInt32LE(0) } : null;
}

export interface RouteAnswer {
  /** RTN_LOCAL: one of the host's own addresses; RTN_UNICAST: out of `ifindex`. Others: unreachable. */
  type: number;
  ifindex: number;
  /** The gateway, or null when the destination is on the link. */
  gateway: Addr | null;
}

/** An RTM_NEWROUTE answering encodeRouteGet; an error answer or anything else is null. */
export function parseRoute(msg: RawMessage): RouteAnswer | null {
  if (msg.type !== RTM_NEWROUTE || msg.body.length < 12) return null;
  const attrs = attributes(msg.body, 12);
  const oif = attrs.get(RTA_OIF);
  const gateway = attrs.get(RTA_GATEWAY);
  return {
    type: msg.body.readUInt8(7),
    ifindex: oif && oif.length === 4 ? oif.readInt32LE(0) : 0,
    gateway: gateway ? bytesAddr(gateway) : null,
  };
}

/** The errno of an NLMSG_ERROR (0 for an ack), or null for another message. */
export function parseError(msg: RawMessage): number | null {
  if (msg.type !== NLMSG_ERROR || msg.body.length < 4) return null;
  return -msg.body.readInt32LE(0);
}

export const isDone = (msg: RawMessage): boolean => msg.type === NLMSG_DONE;

// ---- the socket ----

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
/** nfnetlink: nftables announces its ruleset changes there. */
export const NETLINK_NETFILTER = 12;
const EAGAIN = 11;
const EINTR = 4;
const POLLIN = 1;

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  send: libc.func('long send(int fd, const void *buf, unsigned long len, int flags)'),
  recv: libc.func('long recv(int fd, void *buf, unsigned long len, int flags)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  close: libc.func('int close(int fd)'),
};

/** A non-blocking netlink socket (NETLINK_ROUTE unless told), joined to `groups` (0: requests only). */
export class NetlinkSocket {
  readonly fd: number;
  private readonly buf = Buffer.alloc(65536);
  private readonly pollfd = Buffer.alloc(8);

  constructor(groups: number, protocol = NETLINK_ROUTE) {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol) as number;
    if (fd < 0) throw new Error(`netlink socket: errno ${koffi.errno()}`);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    addr.writeUInt32LE(groups, 8);
    if ((c.bind(fd, addr, addr.length) as number) < 0) {
      const errno = koffi.errno();
      c.close(fd);
      throw new Error(`netlink bind: errno ${errno}`);
    }
    this.fd = fd;
  }

  send(data: Buffer): boolean {
    return (c.send(this.fd, data, data.length, 0) as number) === data.length;
  }

  /** One datagram's messages; [] when none is queued (or, with waitMs, none came in time). */
  receive(waitMs = 0): RawMessage[] {
    for (;;) {
      const n = c.recv(this.fd, this.buf, this.buf.length, 0) as number;
      if (n > 0) return splitMessages(Buffer.from(this.buf.subarray(0, n)));
      const errno = koffi.errno();
      if (n < 0 && errno === EINTR) continue;
      if (n < 0 && errno !== EAGAIN) throw new Error(`netlink recv: errno ${errno}`);
      if (waitMs <= 0) return [];
      this.pollfd.writeInt32LE(this.fd, 0);
      this.pollfd.writeInt16LE(POLLIN, 4);
      this.pollfd.writeInt16LE(0, 6);
      if ((c.poll(this.pollfd, 1, waitMs) as number) <= 0) return [];
      waitMs = 0;
    }
  }

  /** Every message queued now, parsed; what `parse` refuses (null) is left out. */
  drain<T>(parse: (msg: RawMessage) => T | null): T[] {
    const out: T[] = [];
    for (let batch = this.receive(); batch.length > 0; batch = this.receive()) {
      for (const msg of batch) {
        const parsed = parse(msg);
        if (parsed !== null) out.push(parsed);
      }
    }
    return out;
  }

  /** Sends a request and collects the answers with its sequence number, up to NLMSG_DONE, an error or `waitMs`. */
  request(data: Buffer, waitMs: number): RawMessage[] {
    const seq = data.readUInt32LE(8);
    if (!this.send(data)) return [];
    const out: RawMessage[] = [];
    for (const end = Date.now() + waitMs; Date.now() < end;) {
      const batch = this.receive(Math.max(1, end - Date.now()));
      for (const msg of batch) {
        if (msg.seq !== seq) continue;
        if (isDone(msg)) return out;
        out.push(msg);
        if (msg.type === NLMSG_ERROR) return out;
      }
      // A single answer (not a dump) ends with its one message.
      if (out.length > 0 && (data.readUInt16LE(6) & NLM_F_DUMP) === 0) return out;
    }
    return out;
  }

  close(): void {
    c.close(this.fd);
  }
}

/**
 * A kernel table followed over rtnetlink: dumped on one socket (which also carries requests),
 * its changes read from another joined to the table's multicast group.
 */
export class NetlinkTable<T> {
  protected readonly requests = new NetlinkSocket(0);
  private readonly events: NetlinkSocket;
  protected seq = 1;

  constructor(
    groups: number,
    private readonly encodeDump: (seq: number) => Buffer,
    private readonly parse: (msg: RawMessage) => T | null,
  ) {
    this.events = new NetlinkSocket(groups);
  }

  /** For poll(): readable when changes are queued. */
  get fd(): number {
    return this.events.fd;
  }

  /** The whole table, now. */
  dump(): T[] {
    return this.requests
      .request(this.encodeDump(this.seq++), 2000)
      .map(this.parse)
      .filter((u): u is T => u !== null);
  }

  /** The changes announced since the last call. */
  changes(): T[] {
    return this.events.drain(this.parse);
  }

  close(): void {
    this.requests.close();
    this.events.close();
  }
}
