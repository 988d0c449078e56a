// The real servers' UDP service for the flood: `node udp-sink.js PORT REPORT_FILE`. It binds the
// port and reads one datagram every 10 ms, only to learn whom the real server takes the client
// for; the rest overflow its socket buffer, where the kernel counts them (RcvbufErrors), so the
// figure is what the director forwarded, not how fast a process reads. On SIGUSR2 it writes the
// source addresses sampled since the previous SIGUSR2 to REPORT_FILE (a JSON array).

import { renameSync, writeFileSync } from 'node:fs';
import {
  AF_INET,
  c,
  check,
  MSG_DONTWAIT,
  SOCK_DGRAM,
  SOCKADDR_IN_BYTES,
  sockaddrAddress,
  sockaddrIn,
} from './udp-socket.js';

const SAMPLE_MS = 10;
const [portText, reportFile] = process.argv.slice(2);
const fd = check('socket', c.socket(AF_INET, SOCK_DGRAM, 0) as number);
check('bind', c.bind(fd, sockaddrIn('0.0.0.0', Number(portText)), SOCKADDR_IN_BYTES) as number);

const buf = Buffer.alloc(64);
const peer = Buffer.alloc(SOCKADDR_IN_BYTES);
const peerLength = [SOCKADDR_IN_BYTES];
let seen = new Set<string>();
const sampler = setInterval(() => {
  peerLength[0] = SOCKADDR_IN_BYTES;
  if ((c.recvfrom(fd, buf, buf.length, MSG_DONTWAIT, peer, peerLength) as number) >= 0)
    seen.add(sockaddrAddress(peer));
}, SAMPLE_MS);

process.on('SIGUSR2', () => {
  writeFileSync(`${reportFile}.tmp`, JSON.stringify([...seen]));
  renameSync(`${reportFile}.tmp`, reportFile!);
  seen = new Set();
});
process.once('SIGTERM', () => {
  clearInterval(sampler);
  c.close(fd);
});
