// The libc calls the UDP flood and its sink make through koffi: node's dgram sends and reads one
// datagram per call and per JavaScript callback, far slower than the director forwards small
// packets; sendmmsg sends 64 per call, and the sink reads only a sample.

import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  connect: libc.func('int connect(int fd, const void *addr, uint32_t len)'),
  sendmmsg: libc.func('int sendmmsg(int fd, void *vec, unsigned int vlen, int flags)'),
  recvfrom: libc.func(
    'long recvfrom(int fd, _Out_ void *buf, unsigned long len, int flags, _Out_ void *addr, _Inout_ uint32_t *addrlen)',
  ),
  close: libc.func('int close(int fd)'),
};

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const MSG_DONTWAIT = 0x40;
export const SOCKADDR_IN_BYTES = 16;

/** struct sockaddr_in for an IPv4 address and port. */
export function sockaddrIn(address: string, port: number): Buffer {
  const sa = Buffer.alloc(SOCKADDR_IN_BYTES);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt16BE(port, 2);
  address.split('.').forEach((octet, i) => (sa[4 + i] = Number(octet)));
  return sa;
}

/** The address in a struct sockaddr_in, dotted. */
export function sockaddrAddress(sa: Uint8Array): string {
  return `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}`;
}

/** Throws with errno when a libc call returned a negative value. */
export function check(what: string, result: number): number {
  if (result < 0) throw new Error(`${what}: errno ${koffi.errno()}`);
  return result;
}

/**
 * `count` copies of one datagram as an mmsghdr array in native memory, ready for sendmmsg on a
 * connected socket (no msg_name): the array, then one iovec for all of them, then the payload.
 */
export function datagramBatch(payloadBytes: number, count: number): unknown {
  const MMSGHDR_BYTES = 64;
  const iovecAt = count * MMSGHDR_BYTES;
  const payloadAt = iovecAt + 16;
  const total = payloadAt + payloadBytes;
  const memory = koffi.alloc('uint8_t', total);
  const base = koffi.address(memory);
  const view = new DataView(koffi.view(memory, total));
  for (let i = 0; i < payloadBytes; i++) view.setUint8(payloadAt + i, i);
  view.setBigUint64(iovecAt, base + BigInt(payloadAt), true);
  view.setBigUint64(iovecAt + 8, BigInt(payloadBytes), true);
  for (let i = 0; i < count; i++) {
    // struct msghdr: name, namelen, iov (+16), iovlen (+24), control, controllen, flags; msg_len.
    view.setBigUint64(i * MMSGHDR_BYTES + 16, base + BigInt(iovecAt), true);
    view.setBigUint64(i * MMSGHDR_BYTES + 24, 1n, true);
  }
  return memory;
}
