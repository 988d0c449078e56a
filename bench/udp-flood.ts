// A bounded UDP flood: `node udp-flood.js HOST PORT DURATION_MS FLOWS`. 64-byte frames as RFC 2544
// counts them (14 Ethernet + 20 IP + 8 UDP + 18 payload + 4 FCS), sent as fast as one core can
// over FLOWS connected sockets (one source port each, so balancers spread them), 64 per sendmmsg.
// Nothing answers: what arrives is counted at the real servers. Prints one JSON line: datagrams
// the kernel took, sends it refused (an ICMP error turned into ECONNREFUSED, say), seconds.

import { AF_INET, c, check, datagramBatch, SOCK_DGRAM, SOCKADDR_IN_BYTES, sockaddrIn } from './udp-socket.js';

export const PAYLOAD_BYTES = 18;
const BATCH = 64;

const [host, portText, durationText, flowsText] = process.argv.slice(2);
const target = sockaddrIn(host!, Number(portText));
const durationNs = BigInt(Number(durationText)) * 1_000_000n;
const sockets = Array.from({ length: Number(flowsText) }, () => {
  const fd = check('socket', c.socket(AF_INET, SOCK_DGRAM, 0) as number);
  check('connect', c.connect(fd, target, SOCKADDR_IN_BYTES) as number);
  return fd;
});
const batch = datagramBatch(PAYLOAD_BYTES, BATCH);

let sent = 0;
let refused = 0;
const started = process.hrtime.bigint();
const end = started + durationNs;
while (process.hrtime.bigint() < end) {
  for (const fd of sockets) {
    const n = c.sendmmsg(fd, batch, BATCH, 0) as number;
    if (n > 0) sent += n;
    else refused++;
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
for (const fd of sockets) c.close(fd);
process.stdout.write(`${JSON.stringify({ sent, refused, seconds })}\n`);
