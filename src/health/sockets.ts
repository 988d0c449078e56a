// Sockets for checks that node cannot make alone: a mark on the check's packets (fwmark, SO_MARK)
// and an interface binding (bind_if, SO_BINDTODEVICE) are set with setsockopt before the socket
// is handed to node (net.Socket / dgram take an fd); PING_CHECK's raw ICMP socket stays with us.

import dgram from 'node:dgram';
import net from 'node:net';
import koffi from 'koffi';
import type { Addr } from '../core/inet.js';
import { formatAddr } from '../core/inet.js';
import type { CheckTarget } from './config.js';

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  setsockoptInt: libc.func('int setsockopt(int fd, int level, int name, _In_ int *value, uint32_t len)'),
  setsockoptStr: libc.func('int setsockopt(int fd, int level, int name, const char *value, uint32_t len)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  sendto: libc.func(
    'long sendto(int fd, const void *buf, unsigned long len, int flags, const void *addr, uint32_t alen)',
  ),
  recvfrom: libc.func(
    'long recvfrom(int fd, _Out_ void *buf, unsigned long len, int flags, void *addr, void *alen)',
  ),
  close: libc.func('int close(int fd)'),
  strerror: libc.func('const char *strerror(int errnum)'),
};

const AF_INET = 2;
const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_MARK = 36;
const SO_BINDTODEVICE = 25;
const EAGAIN = 11;

export function osError(what: string, errno = koffi.errno()): Error & { code: string; errno: number } {
  const code = errno === 1 ? 'EPERM' : errno === 13 ? 'EACCES' : `errno ${errno}`;
  return Object.assign(new Error(`${what}: ${c.strerror(errno) as string}`), { code, errno });
}

/** sockaddr_in / sockaddr_in6 for an address and port. */
export function sockaddr(addr: Addr, port: number): Buffer {
  if (addr.af === 4) {
    const buf = Buffer.alloc(16);
    buf.writeUInt16LE(AF_INET, 0);
    buf.writeUInt16BE(port, 2);
    buf.writeUInt32BE(addr.a, 4);
    return buf;
  }
  const buf = Buffer.alloc(28);
  buf.writeUInt16LE(AF_INET6, 0);
  buf.writeUInt16BE(port, 2);
  buf.writeUInt32BE(addr.a, 8);
  buf.writeUInt32BE(addr.b, 12);
  buf.writeUInt32BE(addr.c, 16);
  buf.writeUInt32BE(addr.d, 20);
  return buf;
}

/** Whether a target needs a socket made here (a mark or an interface node cannot set). */
export function needsOwnSocket(target: CheckTarget): boolean {
  return target.fwmark !== 0 || target.bindInterface !== null;
}

/**
 * A non-blocking socket with the target's mark, interface and local binding applied; the caller
 * owns the fd (hands it to node, or closes it with closeFd).
 */
export function openSocket(target: CheckTarget, type: number, protocol: number, bind: boolean): number {
  const fd = c.socket(
    target.addr.af === 4 ? AF_INET : AF_INET6,
    type | SOCK_NONBLOCK | SOCK_CLOEXEC,
    protocol,
  ) as number;
  if (fd < 0) throw osError('socket');
  try {
    if (target.fwmark !== 0 && c.setsockoptInt(fd, SOL_SOCKET, SO_MARK, [target.fwmark], 4) < 0)
      throw osError(`fwmark ${target.fwmark}`);
    if (target.bindInterface !== null) {
      const name = target.bindInterface;
      if (c.setsockoptStr(fd, SOL_SOCKET, SO_BINDTODEVICE, name, Buffer.byteLength(name) + 1) < 0)
        throw osError(`bind_if ${name}`);
    }
    if (bind && (target.bindAddr !== null || target.bindPort !== 0)) {
      const local = target.bindAddr ?? { af: target.addr.af, a: 0, b: 0, c: 0, d: 0 };
      const sa = sockaddr(local, target.bindPort);
      if (c.bind(fd, sa, sa.length) < 0) throw osError(`bindto ${formatAddr(local)}:${target.bindPort}`);
    }
    return fd;
  } catch (error) {
    c.close(fd);
    throw error;
  }
}

export function closeFd(fd: number): void {
  c.close(fd);
}

/** A TCP connection to the target, from its bindto/bind_port, with its fwmark/bind_if applied. */
export function connectTcp(target: CheckTarget): net.Socket {
  const host = formatAddr(target.addr);
  if (!needsOwnSocket(target)) {
    return net.connect({
      host,
      port: target.port,
      ...(target.bindAddr ? { localAddress: formatAddr(target.bindAddr) } : {}),
      ...(target.bindPort ? { localPort: target.bindPort } : {}),
    });
  }
  const fd = openSocket(target, SOCK_STREAM, 0, true);
  const socket = new net.Socket({ fd, readable: true, writable: true });
  return socket.connect(target.port, host);
}

/** A UDP socket towards the target, bound and marked as configured, ready to send. */
export function udpSocket(target: CheckTarget): Promise<dgram.Socket> {
  const socket = dgram.createSocket(target.addr.af === 4 ? 'udp4' : 'udp6');
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    const ready = () => {
      socket.off('error', reject);
      resolve(socket);
    };
    if (needsOwnSocket(target)) {
      try {
        socket.bind({ fd: openSocket(target, SOCK_DGRAM, 0, true) }, ready);
      } catch (error) {
        socket.close();
        reject(error);
      }
    } else {
      socket.bind(
        { port: target.bindPort, ...(target.bindAddr ? { address: formatAddr(target.bindAddr) } : {}) },
        ready,
      );
    }
  });
}

/** sendto on a raw socket: null when sent, else the kernel's refusal. */
export function rawSend(fd: number, packet: Uint8Array, to: Addr): Error | null {
  const sa = sockaddr(to, 0);
  if ((c.sendto(fd, packet, packet.length, 0, sa, sa.length) as number) < 0) return osError('sendto');
  return null;
}

/** One datagram from a non-blocking raw socket, or null when none is waiting. */
export function rawReceive(fd: number, buf: Buffer): number | null {
  const n = c.recvfrom(fd, buf, buf.length, 0, null, null) as number;
  if (n >= 0) return n;
  if (koffi.errno() === EAGAIN) return null;
  throw osError('recvfrom');
}
