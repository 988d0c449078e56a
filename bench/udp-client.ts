// A bounded UDP request/response loop: `node udp-client.js HOST PORT DURATION_MS FLOWS`.
// Each flow is its own socket (its own source port, so balancers spread flows) with one request
// in flight; a request unanswered after LOSS_TIMEOUT_MS counts as lost and the flow goes on.
// Prints one JSON line: completed round trips, losses, p50/p99 in µs, answers per real server
// (by the index the echo put in), and the client addresses the real servers saw.

import { createSocket, type Socket } from 'node:dgram';

const [host, portText, durationText, flowsText] = process.argv.slice(2);
const port = Number(portText);
const durationMs = Number(durationText);
const flows = Number(flowsText);
const PAYLOAD_BYTES = 32;
const LOSS_TIMEOUT_MS = 200;
/** Round-trip histogram in 1 µs buckets; the last bucket holds everything slower. */
const histogram = new Uint32Array(LOSS_TIMEOUT_MS * 1000 + 1);
const perRealServer = new Map<number, number>();
const seenClients = new Set<string>();
let completed = 0;
let lost = 0;
let running = true;

function percentileUs(p: number): number {
  const rank = Math.ceil((completed * p) / 100);
  let seen = 0;
  for (let us = 0; us < histogram.length; us++) {
    seen += histogram[us]!;
    if (seen >= rank && rank > 0) return us;
  }
  return 0;
}

function startFlow(socket: Socket, flow: number): Promise<void> {
  const request = Buffer.alloc(PAYLOAD_BYTES);
  request.writeUInt32BE(flow, 0);
  let seq = 0;
  let sentAt = 0n;
  let timer: NodeJS.Timeout | undefined;
  return new Promise((resolve) => {
    const send = (): void => {
      if (!running) {
        socket.close();
        resolve();
        return;
      }
      request.writeUInt32BE(++seq, 4);
      sentAt = process.hrtime.bigint();
      socket.send(request, port, host);
      timer = setTimeout(() => {
        lost++;
        send();
      }, LOSS_TIMEOUT_MS);
    };
    socket.on('message', (reply) => {
      // A late answer to a request already counted as lost is not this flow's current one.
      if (reply.length !== 5 + PAYLOAD_BYTES || reply.readUInt32BE(9) !== seq) return;
      clearTimeout(timer);
      const us = Number((process.hrtime.bigint() - sentAt) / 1000n);
      histogram[Math.min(us, histogram.length - 1)]!++;
      completed++;
      perRealServer.set(reply[0]!, (perRealServer.get(reply[0]!) ?? 0) + 1);
      seenClients.add(`${reply[1]}.${reply[2]}.${reply[3]}.${reply[4]}`);
      send();
    });
    socket.bind(0, send);
  });
}

const started = process.hrtime.bigint();
setTimeout(() => (running = false), durationMs);
await Promise.all(Array.from({ length: flows }, (_, i) => startFlow(createSocket('udp4'), i)));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(
  `${JSON.stringify({
    completed,
    lost,
    seconds,
    p50Us: percentileUs(50),
    p99Us: percentileUs(99),
    perRealServer: Object.fromEntries(perRealServer),
    seenClients: [...seenClients],
  })}\n`,
);
