// A TUN device read and written through libc by koffi: synchronous calls (no libuv threadpool),
// a non-blocking fd, and the virtio_net_hdr with TSO offloads so the kernel hands over 64 KB
// GSO super-packets instead of one syscall pair per wire packet.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import koffi from 'koffi';
import type { DeviceDriver, PacketDevice } from './device.js';

const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_TSO_ECN = 0x08;

const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EAGAIN = 11;
const EINTR = 4;
const POLLIN = 0x1;
const IFNAMSIZ = 16;

/** virtio_net_hdr: precedes every packet read from or written to the device. */
export const VNET_HDR_LEN = 10;
/**
 * The device's default MTU: large, so that datagrams the kernel reassembled (UDP larger than the
 * wire MTU) pass whole; the egress interfaces fragment or segment as their own MTU requires.
 */
export const DEFAULT_TUN_MTU = 65535;
export const DEFAULT_TUN_NAME = 'lvs0';

/** The largest GSO super-packet plus its header. */
export const TUN_FRAME_MAX = 65536 + VNET_HDR_LEN;

const libc = koffi.load('libc.so.6');
const c = {
  open: libc.func('int open(const char *path, int flags)'),
  close: libc.func('int close(int fd)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  read: libc.func('long read(int fd, void *buf, unsigned long count)'),
  write: libc.func('long write(int fd, void *buf, unsigned long count)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  schedYield: libc.func('int sched_yield(void)'),
  strerror: libc.func('const char *strerror(int errnum)'),
};

function osError(what: string, errno = koffi.errno()): Error & { errno: number } {
  return Object.assign(new Error(`${what}: ${c.strerror(errno) as string}`), { errno });
}

/** Sleeps in poll() with no descriptors: how an fd-less worker waits without an event loop. */
export function sleepMs(timeoutMs: number): void {
  c.poll(null, 0, timeoutMs);
}

/**
 * The RPS mask, as sysfs takes it (comma-separated 32-bit hex words, most significant first), for
 * the CPUs that should forward the frames we write: those this process may not run on (when it is
 * pinned; `allowedHex` is Cpus_allowed from /proc/self/status), else all of them. Null on a
 * single CPU, where there is nowhere to move the work.
 */
export function forwardingCpuMask(cpuCount: number, allowedHex: string | undefined): string | null {
  if (cpuCount < 2) return null;
  const all = (1n << BigInt(cpuCount)) - 1n;
  const others = allowedHex ? all & ~BigInt(`0x${allowedHex.replaceAll(',', '')}`) : 0n;
  const mask = others !== 0n ? others : all;
  const words: string[] = [];
  for (let rest = mask; rest > 0n; rest >>= 32n)
    words.unshift((rest & 0xffffffffn).toString(16).padStart(8, '0'));
  return words.join(',').replace(/^0+(?=.)/, '');
}

/**
 * A frame written to the TUN is forwarded (routing, the egress device, the receiving stack)
 * inside our write(), on the data-plane thread's CPU, unless RPS queues it to another CPU's
 * backlog: measured, that halves the thread's CPU per request and lifts keep-alive req/s ~20%.
 */
function steerForwarding(name: string): void {
  const allowed = /^Cpus_allowed:\s*([0-9a-f,]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  const mask = forwardingCpuMask(cpus().length, allowed);
  if (mask === null) return;
  try {
    writeFileSync(`/sys/class/net/${name}/queues/rx-0/rps_cpus`, mask);
  } catch {
    // A kernel without RPS (or a read-only sysfs): forwarding just stays on our thread.
  }
}

export interface TunOptions {
  /** Interface name, up to 15 bytes; the kernel picks tunN when empty. */
  name: string;
  mtu: number;
}

export class TunDevice implements PacketDevice {
  readonly name: string;
  /** The descriptor, for poll(); -1 once closed. */
  fd: number;

  /** The kernel's count when the device was opened, and its last reading. */
  private readonly droppedAtOpen: number;
  private dropped = 0;

  private constructor(
    fd: number,
    name: string,
    readonly fwmark: number,
  ) {
    this.fd = fd;
    this.name = name;
    this.droppedAtOpen = this.dropped = this.readDropped();
  }

  /** Creates the device, enables offloads, sets its MTU and brings it up. */
  static open(options: TunOptions, fwmark = 0): TunDevice {
    if (Buffer.byteLength(options.name) >= IFNAMSIZ)
      throw new Error(`interface name too long: ${options.name}`);
    const fd = c.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC) as number;
    if (fd < 0) throw osError('open /dev/net/tun');
    try {
      const ifreq = Buffer.alloc(40);
      ifreq.write(options.name, 0, 'latin1');
      ifreq.writeUInt16LE(IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, 16);
      if ((c.ioctl(fd, TUNSETIFF, 'void *', ifreq) as number) < 0) throw osError('TUNSETIFF');
      const name = ifreq.toString('latin1', 0, IFNAMSIZ).replace(/\0.*$/s, '');
      const offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
      // TSO_ECN is optional: older kernels refuse it, and CWR-marked segments then arrive unsegmented.
      if ((c.ioctl(fd, TUNSETOFFLOAD, 'unsigned long', offloads | TUN_F_TSO_ECN) as number) < 0) {
        if ((c.ioctl(fd, TUNSETOFFLOAD, 'unsigned long', offloads) as number) < 0)
          throw osError('TUNSETOFFLOAD');
      }
      execFileSync('ip', ['link', 'set', 'dev', name, 'mtu', String(options.mtu), 'up'], { stdio: 'pipe' });
      steerForwarding(name);
      return new TunDevice(fd, name, fwmark);
    } catch (error) {
      c.close(fd);
      throw error;
    }
  }

  /** One frame into `buf` (vnet header first); 0 when nothing is queued. Throws on real errors. */
  read(buf: Uint8Array): number {
    const n = c.read(this.fd, buf, buf.byteLength) as number;
    if (n >= 0) return n;
    const errno = koffi.errno();
    if (errno === EAGAIN || errno === EINTR) return 0;
    throw osError(`read ${this.name}`, errno);
  }

  /** Writes buf[0..length) as one frame; false when the kernel refused it (the caller counts a drop). */
  write(buf: Uint8Array, length: number): boolean {
    return (c.write(this.fd, buf, length) as number) === length;
  }

  queueDrops(): number {
    if (this.fd >= 0) this.dropped = this.readDropped();
    return this.dropped - this.droppedAtOpen;
  }

  /**
   * A TUN device counts a packet it could not queue for its reader as transmit-dropped (the
   * kernel transmits to lvsd). Unreadable once the device is gone: the last reading stands.
   */
  private readDropped(): number {
    try {
      return Number(readFileSync(`/sys/class/net/${this.name}/statistics/tx_dropped`, 'utf8'));
    } catch {
      return this.dropped;
    }
  }

  /** Closing the last fd of a non-persistent TUN removes the interface and its routes. */
  close(): void {
    if (this.fd < 0) return;
    c.close(this.fd);
    this.fd = -1;
  }
}

/** TUN devices of one MTU, waited on together with one poll(). */
export class TunDriver implements DeviceDriver {
  private pollfds = Buffer.alloc(0);

  constructor(private readonly mtu: number) {}

  open(name: string, fwmark: number): TunDevice {
    return TunDevice.open({ name, mtu: this.mtu }, fwmark);
  }

  yieldCpu(): void {
    c.schedYield();
  }

  wait(devices: readonly PacketDevice[], timeoutMs: number, moreFds: readonly number[] = []): boolean {
    const fds = [...devices.map((device) => (device as TunDevice).fd), ...moreFds];
    if (fds.length === 0) {
      sleepMs(timeoutMs);
      return false;
    }
    if (this.pollfds.length !== fds.length * 8) this.pollfds = Buffer.alloc(fds.length * 8);
    fds.forEach((fd, i) => {
      // struct pollfd { int fd; short events; short revents; }
      this.pollfds.writeInt32LE(fd, i * 8);
      this.pollfds.writeInt16LE(POLLIN, i * 8 + 4);
      this.pollfds.writeInt16LE(0, i * 8 + 6);
    });
    if ((c.poll(this.pollfds, fds.length, timeoutMs) as number) <= 0) return false;
    for (let i = 0; i < devices.length; i++) if (this.pollfds.readInt16LE(i * 8 + 6) !== 0) return true;
    return false;
  }
}
