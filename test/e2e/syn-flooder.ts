// Run in the client namespace by the flood tests: a bounded SYN flood to VIP:80 from random sources
// in 198.18.128.0/17. The SYNs go out of a raw socket (IP_HDRINCL), 64 to a sendmmsg(), from
// buffers rewritten in place (source, port, TCP checksum): fast enough for about 100k SYNs a
// second, which a write() per packet to a TUN device was not (it topped out near 8k). The
// namespace's kernel routes them to the director as if they came from hosts behind the client;
// its answers to those sources end in a blackhole route. Nothing leaves the lab.
// Usage: node syn-flooder.js VIP MAX_PACKETS SECONDS PACKETS_PER_SECOND; prints "flooding", then the count sent.

import { execFileSync } from 'node:child_process';
import koffi from 'koffi';
import { parseAddr } from '../../src/core/inet.js';
import { setPointer } from '../../src/dataplane/af-packet.js';
import { buildPacket } from '../helpers/packets.js';

const [vip, maxPackets, seconds, rate] = [
  process.argv[2]!,
  Number(process.argv[3]),
  Number(process.argv[4]),
  Number(process.argv[5]),
];
const SOURCES = '198.18.128.0/17';
const SYN = 0x02;
const BATCH = 64;
const IP_HLEN = 20;
const SYN_LEN = IP_HLEN + 20;
const MMSGHDR = 64;
const IOVEC = 16;

const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  sendmmsg: libc.func('int sendmmsg(int fd, void *msgs, unsigned int vlen, int flags)'),
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long offset)'),
  close: libc.func('int close(int fd)'),
};

execFileSync('ip', ['route', 'replace', 'blackhole', SOURCES]);
// AF_INET, SOCK_RAW, IPPROTO_RAW: the packets carry their own IP header.
const fd = c.socket(2, 3, 255) as number;
if (fd < 0) throw new Error(`raw socket: errno ${koffi.errno()}`);

// Memory whose address is known, for the iovecs: packets, then sockaddr_in, iovecs, mmsghdrs.
const size = BATCH * SYN_LEN + 16 + BATCH * (IOVEC + MMSGHDR);
const memory = c.mmap(null, size, 3, 0x22, -1, 0);
const base = Number(koffi.address(memory));
const bytes = new Uint8Array(koffi.view(memory, size));
const view = new DataView(bytes.buffer);
const nameAt = BATCH * SYN_LEN;
const iovAt = nameAt + 16;
const msgAt = iovAt + BATCH * IOVEC;
const pointer = (at: number, address: number): void => setPointer(view, at, address);
view.setUint16(nameAt, 2, true);
bytes.set(
  [24, 16, 8, 0].map((shift) => (parseAddr(vip)!.a >>> shift) & 0xff),
  nameAt + 4,
);
const template = buildPacket({
  src: '198.18.128.1',
  dst: vip,
  protocol: 'tcp',
  sport: 1024,
  dport: 80,
  tcpFlags: SYN,
});
for (let i = 0; i < BATCH; i++) {
  bytes.set(template.subarray(0, SYN_LEN), i * SYN_LEN);
  pointer(iovAt + i * IOVEC, base + i * SYN_LEN);
  view.setUint32(iovAt + i * IOVEC + 8, SYN_LEN, true);
  const msg = msgAt + i * MMSGHDR;
  pointer(msg, base + nameAt);
  view.setUint32(msg + 8, 16, true);
  pointer(msg + 16, base + iovAt + i * IOVEC);
  view.setUint32(msg + 24, 1, true);
}

/** The TCP checksum of the SYN at `at` (pseudo-header and the 20-byte header, no payload). */
function tcpChecksum(at: number): number {
  let sum = 6 + 20;
  for (let i = 12; i < 20; i += 2) sum += view.getUint16(at + i);
  for (let i = IP_HLEN; i < SYN_LEN; i += 2) if (i !== IP_HLEN + 16) sum += view.getUint16(at + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Rewrites the batch with new random sources and ports; the kernel fills the IP checksum. */
function refill(count: number): void {
  for (let i = 0; i < count; i++) {
    const at = i * SYN_LEN;
    const host = Math.floor(Math.random() * 0x8000);
    view.setUint8(at + 14, 128 + (host >> 8));
    view.setUint8(at + 15, host & 0xff);
    view.setUint16(at + IP_HLEN, 1024 + Math.floor(Math.random() * 64512));
    view.setUint32(at + IP_HLEN + 4, Math.floor(Math.random() * 0x1_0000_0000));
    view.setUint16(at + IP_HLEN + 16, tcpChecksum(at));
  }
}

process.stdout.write('flooding\n');
const start = Date.now();
let sent = 0;
// Paced in 10 ms rounds, so the rate holds whatever the machine's speed, and stops by itself.
while (sent < maxPackets && Date.now() - start < seconds * 1000) {
  const due = Math.min(maxPackets, Math.ceil(((Date.now() - start) / 1000) * rate));
  while (sent < due) {
    const count = Math.min(BATCH, due - sent);
    refill(count);
    const n = c.sendmmsg(fd, bytes.subarray(msgAt), count, 0) as number;
    // A full socket buffer: the rest of this round waits for the next.
    if (n <= 0) break;
    sent += n;
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
}
c.close(fd);
process.stdout.write(`${sent}\n`);
