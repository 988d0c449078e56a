// AF_PACKET sockets on an interface, made with koffi: a TPACKET_V2 receive ring with
// PACKET_VNET_HDR (GSO super-packets arrive whole, with their offload header), an ETH_P_ALL tap
// (it runs before the netdev ingress hook, where nft drops the same frames for the kernel) behind
// a classic BPF filter (l2-filter.ts), and a transmit socket that bypasses the qdisc and takes the
// same vnet header back, so the kernel segments and checksums on the way out.
// Facts: /work/shared/reference/dataplane.md, "Layer 2".

import { readFileSync } from 'node:fs';
import koffi from 'koffi';

/** What the layer-2 loop needs of one interface: frames in (`vnet | Ethernet | IP`), frames out. */
export interface LinkPort {
  readonly name: string;
  readonly ifindex: number;
  /** The interface's own MAC: the source of what lvsd sends on it. */
  readonly mac: Uint8Array;
  /** For poll(); -1 for a port that does not receive. */
  readonly fd: number;
  /** Replaces the receive filter (sock_filter[] bytes, see l2-filter.ts encodeProgram). */
  setFilter(program: Buffer): void;
  /** One frame into buf[0..): its length; 0 when none is queued; -1 for one cut short (counted, gone). */
  receive(buf: Uint8Array): number;
  /** Sends buf[0, length) (`vnet | Ethernet | IP`): 0, or the errno of the kernel's refusal. */
  transmit(buf: Uint8Array, length: number): number;
  /** Frames the kernel dropped because the ring was full, since open. */
  queueDrops(): number;
  close(): void;
}

export interface LinkDriver {
  /** Opens an interface; `receive: false` for one lvsd only sends on. */
  open(name: string, options: { receive: boolean }): LinkPort;
  /** The interface's name, or null when there is none with this index. */
  nameOf(ifindex: number): string | null;
}

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ATTACH_FILTER = 26;
const SOL_PACKET = 263;
const PACKET_RX_RING = 5;
const PACKET_STATISTICS = 6;
const PACKET_VERSION = 10;
const TPACKET_V2 = 1;
const PACKET_VNET_HDR = 15;
const PACKET_QDISC_BYPASS = 20;
const ETH_P_ALL = 0x0003;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MSG_DONTWAIT = 0x40;
/** What send() says of a frame larger than the interface's MTU that is no GSO packet. */
export const EMSGSIZE = 90;
const TP_STATUS_USER = 1;
const VNET_HDR_LEN = 10;
/** A 64 KB GSO packet, its headers and the ring's own: 17 pages. */
export const RING_FRAME_SIZE = 69632;
const RING_FRAMES = 64;

const libc = koffi.load('libc.so.6');
const SockFprog = koffi.struct('lvsd_sock_fprog', { len: 'uint16_t', filter: 'void *' });
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
  setFilter: libc.func('setsockopt', 'int', ['int', 'int', 'int', koffi.pointer(SockFprog), 'uint32_t']),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *len)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long offset)'),
  munmap: libc.func('int munmap(void *addr, size_t len)'),
  send: libc.func('long send(int fd, const void *buf, unsigned long len, int flags)'),
  close: libc.func('int close(int fd)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  ifIndexToName: libc.func('char *if_indextoname(unsigned int ifindex, _Out_ char *name)'),
};

function fail(what: string): never {
  const errno = koffi.errno();
  throw Object.assign(new Error(`${what}: ${c.strerror(errno) as string}`), { errno });
}

function intOption(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  if ((c.setsockopt(fd, level, name, v, 4) as number) < 0) fail(what);
}

/** sockaddr_ll: family, protocol (network order), ifindex. */
function linkAddress(protocol: number, ifindex: number): Buffer {
  const addr = Buffer.alloc(20);
  addr.writeUInt16LE(AF_PACKET, 0);
  addr.writeUInt16BE(protocol, 2);
  addr.writeInt32LE(ifindex, 4);
  return addr;
}

function readSys(name: string, what: string): string {
  if (!/^[^/\s]{1,15}$/.test(name)) throw new Error(`not an interface name: ${JSON.stringify(name)}`);
  try {
    return readFileSync(`/sys/class/net/${name}/${what}`, 'utf8').trim();
  } catch {
    throw new Error(`no interface ${name}`);
  }
}

function parseMac(text: string): Uint8Array {
  return Uint8Array.from(text.split(':').map((h) => parseInt(h, 16)));
}

function packetSocket(what: string): number {
  // Protocol 0 at first: the socket receives nothing until bind() names the protocol.
  const fd = c.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) fail(`${what}: socket`);
  try {
    intOption(fd, SOL_PACKET, PACKET_VNET_HDR, 1, `${what}: PACKET_VNET_HDR`);
    return fd;
  } catch (error) {
    c.close(fd);
    throw error;
  }
}

class AfPacketPort implements LinkPort {
  readonly ifindex: number;
  readonly mac: Uint8Array;
  fd = -1;
  private txFd = -1;
  private ring: unknown = null;
  private view: Uint8Array | null = null;
  private status: DataView | null = null;
  private slot = 0;
  private drops = 0;
  private readonly stats = Buffer.alloc(8);

  constructor(
    readonly name: string,
    receive: boolean,
  ) {
    this.ifindex = Number(readSys(name, 'ifindex'));
    this.mac = parseMac(readSys(name, 'address'));
    try {
      this.txFd = packetSocket(`${name} transmit`);
      intOption(this.txFd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, `${name}: PACKET_QDISC_BYPASS`);
      const tx = linkAddress(0, this.ifindex);
      if ((c.bind(this.txFd, tx, tx.length) as number) < 0) fail(`${name} transmit: bind`);
      if (receive) this.openRing();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  private openRing(): void {
    const fd = packetSocket(`${this.name} receive`);
    this.fd = fd;
    intOption(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, `${this.name}: PACKET_VERSION`);
    const req = Buffer.alloc(16);
    req.writeUInt32LE(RING_FRAME_SIZE, 0);
    req.writeUInt32LE(RING_FRAMES, 4);
    req.writeUInt32LE(RING_FRAME_SIZE, 8);
    req.writeUInt32LE(RING_FRAMES, 12);
    if ((c.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, req, 16) as number) < 0)
      fail(`${this.name}: PACKET_RX_RING`);
    const size = RING_FRAME_SIZE * RING_FRAMES;
    const ring = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring === null || koffi.address(ring) === 0xffffffffffffffffn) fail(`${this.name}: mmap`);
    this.ring = ring;
    const memory = koffi.view(ring, size);
    this.view = new Uint8Array(memory);
    this.status = new DataView(memory);
    // Nothing until a filter says what is ours.
    this.setFilter(Buffer.from([0x06, 0, 0, 0, 0, 0, 0, 0]));
    const rx = linkAddress(ETH_P_ALL, this.ifindex);
    if ((c.bind(fd, rx, rx.length) as number) < 0) fail(`${this.name} receive: bind`);
  }

  setFilter(program: Buffer): void {
    if (this.fd < 0) return;
    const ok = c.setFilter(
      this.fd,
      SOL_SOCKET,
      SO_ATTACH_FILTER,
      { len: program.length / 8, filter: program },
      16,
    );
    if ((ok as number) < 0) fail(`${this.name}: SO_ATTACH_FILTER`);
  }

  receive(buf: Uint8Array): number {
    const view = this.view;
    const status = this.status;
    if (!view || !status) return 0;
    const base = this.slot * RING_FRAME_SIZE;
    if ((status.getUint32(base, true) & TP_STATUS_USER) === 0) return 0;
    const len = status.getUint32(base + 4, true);
    const snaplen = status.getUint32(base + 8, true);
    const mac = status.getUint16(base + 12, true);
    let n = -1;
    if (snaplen === len && VNET_HDR_LEN + snaplen <= buf.length) {
      buf.set(view.subarray(base + mac - VNET_HDR_LEN, base + mac + snaplen));
      n = VNET_HDR_LEN + snaplen;
    }
    // The slot goes back to the kernel.
    status.setUint32(base, 0, true);
    this.slot = (this.slot + 1) % RING_FRAMES;
    return n;
  }

  transmit(buf: Uint8Array, length: number): number {
    return (c.send(this.txFd, buf, length, MSG_DONTWAIT) as number) === length ? 0 : koffi.errno() || -1;
  }

  queueDrops(): number {
    if (this.fd >= 0) {
      // tpacket_stats { packets, drops }: reading resets them.
      const len = [8];
      if ((c.getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.stats, len) as number) === 0)
        this.drops += this.stats.readUInt32LE(4);
    }
    return this.drops;
  }

  close(): void {
    if (this.ring !== null) c.munmap(this.ring, RING_FRAME_SIZE * RING_FRAMES);
    this.ring = this.view = this.status = null;
    if (this.fd >= 0) c.close(this.fd);
    if (this.txFd >= 0) c.close(this.txFd);
    this.fd = this.txFd = -1;
  }
}

export class AfPacketDriver implements LinkDriver {
  private readonly nameBuf = Buffer.alloc(16);

  open(name: string, options: { receive: boolean }): LinkPort {
    return new AfPacketPort(name, options.receive);
  }

  nameOf(ifindex: number): string | null {
    if (c.ifIndexToName(ifindex, this.nameBuf) === null) return null;
    return this.nameBuf.toString('latin1').replace(/\0.*$/s, '');
  }
}
