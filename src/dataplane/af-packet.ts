// AF_PACKET sockets on an interface, made with koffi: a TPACKET_V2 receive ring with
// PACKET_VNET_HDR (GSO super-packets arrive whole, with their offload header), an ETH_P_ALL tap
// (it runs before the netdev ingress hook, where nft drops the same frames for the kernel) behind
// a classic BPF filter (l2-filter.ts), and a transmit socket that bypasses the qdisc and takes the
// same vnet header back, so the kernel segments and checksums on the way out.
// Facts: /work/shared/reference/dataplane.md, "Layer 2".

import { readFileSync } from 'node:fs';
import koffi from 'koffi';

/**
 * Frames to send, in order, each where it lies: bufs[i][ats[i], ats[i] + lengths[i]) is
 * `vnet | Ethernet | IP`, to go out of ports[i]. Reused from batch to batch (no garbage per frame).
 */
export class TxBatch {
  readonly ports: LinkPort[] = [];
  readonly bufs: Uint8Array[] = [];
  readonly ats: number[] = [];
  readonly lengths: number[] = [];
  /** Whether the frame is directly routed (it says VIP), which the kernel must not be given when refused. */
  readonly routed: boolean[] = [];
  /** After transmit: 0 for a frame sent, else the errno of the kernel's refusal. */
  readonly errors: number[] = [];
  count = 0;

  push(port: LinkPort, buf: Uint8Array, at: number, length: number, routed: boolean): void {
    const i = this.count++;
    this.ports[i] = port;
    this.bufs[i] = buf;
    this.ats[i] = at;
    this.lengths[i] = length;
    this.routed[i] = routed;
    this.errors[i] = 0;
  }
}

/** What the layer-2 loop needs of one interface: frames in (`vnet | Ethernet | IP`), frames out. */
export interface LinkPort {
  readonly name: string;
  readonly ifindex: number;
  /** The interface's own MAC: the source of what lvsd sends on it. */
  readonly mac: Uint8Array;
  /** For poll(); none for a port that does not receive. */
  readonly fds: readonly number[];
  /** Replaces the receive filters (sock_filter[] bytes, see l2-filter.ts encodeProgram). */
  setFilter(filter: PortFilter): void;
  /**
   * Takes the next received frame, in place: its length, 0 when none is queued, -1 for one cut
   * short (counted, gone). The frame is frame[frameAt, frameAt + length), with room after it for
   * what the director adds (an outer header, an ICMP error), and stays lvsd's until release().
   */
  receive(): number;
  /** Where the frame that receive() took lies. */
  readonly frame: Uint8Array;
  readonly frameAt: number;
  /** Gives every frame taken since the last release back to the kernel. */
  release(): void;
  /** Sends batch frames [from, to), all of them this port's, and sets batch.errors for each. */
  transmit(batch: TxBatch, from: number, to: number): void;
  /** Frames the kernel dropped because the ring was full, since open. */
  queueDrops(): number;
  close(): void;
}

/** The programs of a port's receive filter, by the part of lvsd's frames each takes (l2-filter.ts). */
export interface PortFilter {
  /** The small SYNs' ring, and the other's. */
  readonly handshakes: Buffer;
  readonly rest: Buffer;
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
const MAP_PRIVATE = 2;
const MAP_ANONYMOUS = 0x20;
const MSG_DONTWAIT = 0x40;
/** What send() says of a frame larger than the interface's MTU that is no GSO packet. */
export const EMSGSIZE = 90;
const TP_STATUS_USER = 1;
const VNET_HDR_LEN = 10;
/** A 64 KB GSO packet, its headers and the ring's own: 17 pages. */
export const RING_FRAME_SIZE = 69632;
/**
 * 15 frames (255 pages) a block: the kernel allocates a block as 256 pages, so one is lost. 240
 * slots, 16 MB: deep enough to take a burst (a SYN flood, 64-byte datagrams) while lvsd is off
 * the CPU, and slots held until a batch is sent leave room for the kernel to keep receiving.
 */
const FRAMES_PER_BLOCK = 15;
const RING_BLOCKS = 16;
/**
 * The handshake ring: SYNs of at most 1 KB (l2-filter.ts) in 2 KB slots, 4096 of them (8 MB): a
 * flood's burst waits there instead of overflowing the ring that the connections' packets use.
 * The two are read in the order their frames came in.
 */
const SMALL_FRAME_SIZE = 2048;
const SMALL_FRAMES_PER_BLOCK = 32;
const SMALL_RING_BLOCKS = 128;
/** Frames per sendmmsg(); struct mmsghdr is 64 bytes (a 56-byte msghdr and msg_len), iovec 16. */
const MMSG_MAX = 64;
const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
const TX_MEMORY = MMSG_MAX * (MMSGHDR_SIZE + IOVEC_SIZE);
/** Where each ring slot lies in memory, for the iovecs that send frames from it without a copy. */
const slotAddresses = new WeakMap<Uint8Array, number>();

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
  sendmmsg: libc.func('int sendmmsg(int fd, void *msgs, unsigned int vlen, int flags)'),
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

/** One TPACKET_V2 receive ring on an interface: its socket, its mapped slots, where lvsd reads. */
class RxRing {
  readonly fd: number;
  private readonly frames: number;
  private ring: unknown;
  /** One view per ring slot (made once: none per frame). */
  private readonly slots: Uint8Array[] = [];
  private readonly status: DataView;
  /** The next slot to look at, and how many before it are taken and not yet given back. */
  private slot = 0;
  private taken = 0;
  private drops = 0;
  private readonly stats = Buffer.alloc(8);
  /** Where the frame that receive() took lies. */
  frame: Uint8Array = new Uint8Array(0);
  frameAt = 0;

  constructor(
    private readonly what: string,
    ifindex: number,
    private readonly frameSize: number,
    framesPerBlock: number,
    blocks: number,
  ) {
    this.frames = framesPerBlock * blocks;
    const fd = packetSocket(what);
    this.fd = fd;
    try {
      intOption(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, `${what}: PACKET_VERSION`);
      const req = Buffer.alloc(16);
      req.writeUInt32LE(frameSize * framesPerBlock, 0);
      req.writeUInt32LE(blocks, 4);
      req.writeUInt32LE(frameSize, 8);
      req.writeUInt32LE(this.frames, 12);
      if ((c.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, req, 16) as number) < 0)
        fail(`${what}: PACKET_RX_RING`);
      const size = frameSize * this.frames;
      const ring = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (ring === null || koffi.address(ring) === 0xffffffffffffffffn) fail(`${what}: mmap`);
      this.ring = ring;
      const memory = koffi.view(ring, size);
      const address = Number(koffi.address(ring));
      for (let i = 0; i < this.frames; i++) {
        const slot = new Uint8Array(memory, i * frameSize, frameSize);
        slotAddresses.set(slot, address + i * frameSize);
        this.slots.push(slot);
      }
      this.status = new DataView(memory);
      // Nothing until a filter says what is ours.
      this.setFilter(Buffer.from([0x06, 0, 0, 0, 0, 0, 0, 0]));
      const rx = linkAddress(ETH_P_ALL, ifindex);
      if ((c.bind(fd, rx, rx.length) as number) < 0) fail(`${what}: bind`);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  setFilter(program: Buffer): void {
    const ok = c.setFilter(
      this.fd,
      SOL_SOCKET,
      SO_ATTACH_FILTER,
      { len: program.length / 8, filter: program },
      16,
    );
    if ((ok as number) < 0) fail(`${this.what}: SO_ATTACH_FILTER`);
  }

  /**
   * When the next frame arrived (tpacket2_hdr's tp_sec and tp_nsec, in µs), Infinity when none is
   * ready: two rings on one interface are read in the order their frames came in.
   */
  nextArrival(): number {
    if (this.ring === null || this.taken === this.frames) return Infinity;
    const base = this.slot * this.frameSize;
    const status = this.status;
    if ((status.getUint32(base, true) & TP_STATUS_USER) === 0) return Infinity;
    return status.getUint32(base + 16, true) * 1e6 + status.getUint32(base + 20, true) / 1000;
  }

  /** As LinkPort.receive, from this ring. */
  receive(): number {
    const status = this.status;
    // With every slot taken, the next one is still ours: nothing new until release().
    if (this.ring === null || this.taken === this.frames) return 0;
    const slot = this.slot;
    const base = slot * this.frameSize;
    if ((status.getUint32(base, true) & TP_STATUS_USER) === 0) return 0;
    const len = status.getUint32(base + 4, true);
    const snaplen = status.getUint32(base + 8, true);
    const mac = status.getUint16(base + 12, true);
    this.slot = (slot + 1) % this.frames;
    this.taken++;
    if (snaplen !== len || mac < VNET_HDR_LEN) return -1;
    this.frame = this.slots[slot]!;
    this.frameAt = mac - VNET_HDR_LEN;
    return VNET_HDR_LEN + snaplen;
  }

  release(): void {
    if (this.ring === null) return;
    for (; this.taken > 0; this.taken--) {
      const slot = (this.slot - this.taken + this.frames) % this.frames;
      this.status.setUint32(slot * this.frameSize, 0, true);
    }
  }

  queueDrops(): number {
    // tpacket_stats { packets, drops }: reading resets them.
    const len = [8];
    if (
      this.ring !== null &&
      (c.getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.stats, len) as number) === 0
    )
      this.drops += this.stats.readUInt32LE(4);
    return this.drops;
  }

  close(): void {
    if (this.ring) c.munmap(this.ring, this.frameSize * this.frames);
    this.ring = null;
    this.taken = 0;
    c.close(this.fd);
  }
}

class AfPacketPort implements LinkPort {
  readonly ifindex: number;
  readonly mac: Uint8Array;
  fds: number[] = [];
  frame: Uint8Array = new Uint8Array(0);
  frameAt = 0;
  private txFd = -1;
  /** Every frame but the small SYNs, and the small SYNs (none for a port that only sends). */
  private rest: RxRing | null = null;
  private handshakes: RxRing | null = null;
  /** Queue drops of rings closed so far. */
  private closedDrops = 0;
  /** mmsghdr[MMSG_MAX] then iovec[MMSG_MAX], in memory of known address (each msghdr points at its iovec). */
  private txMemory: unknown = null;
  private mmsg = new Uint8Array(0);
  private iov: DataView | null = null;
  /** Which batch frame each staged message is. */
  private readonly staged = new Int32Array(MMSG_MAX);

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
      this.openTxMemory();
      if (receive) this.openRings();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  private openTxMemory(): void {
    const memory = c.mmap(null, TX_MEMORY, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory === null || koffi.address(memory) === 0xffffffffffffffffn) fail(`${this.name}: mmap`);
    this.txMemory = memory;
    const bytes = koffi.view(memory, TX_MEMORY);
    this.mmsg = new Uint8Array(bytes, 0, MMSG_MAX * MMSGHDR_SIZE);
    this.iov = new DataView(bytes, MMSG_MAX * MMSGHDR_SIZE);
    const headers = new DataView(bytes);
    const iovAt = Number(koffi.address(memory)) + MMSG_MAX * MMSGHDR_SIZE;
    for (let i = 0; i < MMSG_MAX; i++) {
      // The mapping is zeroed: no name, no control data; one iovec each.
      setPointer(headers, i * MMSGHDR_SIZE + 16, iovAt + i * IOVEC_SIZE);
      headers.setUint32(i * MMSGHDR_SIZE + 24, 1, true);
    }
  }

  private openRings(): void {
    this.rest = new RxRing(
      `${this.name} receive`,
      this.ifindex,
      RING_FRAME_SIZE,
      FRAMES_PER_BLOCK,
      RING_BLOCKS,
    );
    this.fds = [this.rest.fd];
    this.handshakes = new RxRing(
      `${this.name} receive (SYNs)`,
      this.ifindex,
      SMALL_FRAME_SIZE,
      SMALL_FRAMES_PER_BLOCK,
      SMALL_RING_BLOCKS,
    );
    this.fds = [this.rest.fd, this.handshakes.fd];
  }

  setFilter(filter: PortFilter): void {
    this.rest?.setFilter(filter.rest);
    this.handshakes?.setFilter(filter.handshakes);
  }

  receive(): number {
    const { rest, handshakes } = this;
    if (rest === null || handshakes === null) return 0;
    // As they came in: a client's SYN and what follows it keep their order.
    const ring = handshakes.nextArrival() < rest.nextArrival() ? handshakes : rest;
    const n = ring.receive();
    this.frame = ring.frame;
    this.frameAt = ring.frameAt;
    return n;
  }

  release(): void {
    this.rest?.release();
    this.handshakes?.release();
  }

  /**
   * One sendmmsg() for up to MMSG_MAX frames, their iovecs pointing into the rings where the
   * frames were received and rewritten: no copy, one syscall. A frame in other memory (one the
   * director made) goes alone with send(), in its turn.
   */
  transmit(batch: TxBatch, from: number, to: number): void {
    const iov = this.iov!;
    let staged = 0;
    for (let i = from; i < to; i++) {
      const slot = slotAddresses.get(batch.bufs[i]!);
      if (slot === undefined) {
        this.sendStaged(batch, staged);
        staged = 0;
        const at = batch.ats[i]!;
        const sent = c.send(
          this.txFd,
          batch.bufs[i]!.subarray(at),
          batch.lengths[i]!,
          MSG_DONTWAIT,
        ) as number;
        batch.errors[i] = sent === batch.lengths[i] ? 0 : koffi.errno() || -1;
        continue;
      }
      setPointer(iov, staged * IOVEC_SIZE, slot + batch.ats[i]!);
      iov.setUint32(staged * IOVEC_SIZE + 8, batch.lengths[i]!, true);
      iov.setUint32(staged * IOVEC_SIZE + 12, 0, true);
      this.staged[staged++] = i;
      if (staged === MMSG_MAX) {
        this.sendStaged(batch, staged);
        staged = 0;
      }
    }
    this.sendStaged(batch, staged);
  }

  /** Sends the first `count` staged messages; a refused one is marked with its errno and skipped. */
  private sendStaged(batch: TxBatch, count: number): void {
    let done = 0;
    while (done < count) {
      const msgs = done === 0 ? this.mmsg : this.mmsg.subarray(done * MMSGHDR_SIZE);
      const sent = c.sendmmsg(this.txFd, msgs, count - done, MSG_DONTWAIT) as number;
      if (sent <= 0) {
        // The kernel refused the first of them: that one is counted, the rest are tried again.
        batch.errors[this.staged[done++]!] = koffi.errno() || -1;
        continue;
      }
      for (const end = done + sent; done < end; done++) batch.errors[this.staged[done]!] = 0;
    }
  }

  queueDrops(): number {
    return this.closedDrops + (this.rest?.queueDrops() ?? 0) + (this.handshakes?.queueDrops() ?? 0);
  }

  close(): void {
    this.closedDrops = this.queueDrops();
    this.rest?.close();
    this.handshakes?.close();
    this.rest = this.handshakes = null;
    if (this.txMemory !== null) c.munmap(this.txMemory, TX_MEMORY);
    this.txMemory = this.iov = null;
    if (this.txFd >= 0) c.close(this.txFd);
    this.txFd = -1;
    this.fds = [];
  }
}

/** A 64-bit pointer into a DataView, from an address held as a Number (exact below 2^53). */
export function setPointer(view: DataView, at: number, address: number): void {
  view.setUint32(at, address >>> 0, true);
  view.setUint32(at + 4, Math.floor(address / 0x1_0000_0000), true);
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
