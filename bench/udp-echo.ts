// A UDP echo for the real servers: `node udp-echo.js PORT INDEX`. Each reply is the request
// prefixed by this server's index (1 byte) and the IPv4 address it saw the request come from
// (4 bytes), so the client can tell which real server answered and whom it took the client for.

import { createSocket } from 'node:dgram';

const port = Number(process.argv[2]);
const index = Number(process.argv[3]);
const socket = createSocket('udp4');

socket.on('message', (request, peer) => {
  const reply = Buffer.allocUnsafe(5 + request.length);
  reply[0] = index;
  peer.address.split('.').forEach((octet, i) => (reply[1 + i] = Number(octet)));
  request.copy(reply, 5);
  socket.send(reply, peer.port, peer.address);
});
socket.bind(port);
process.once('SIGTERM', () => socket.close());
