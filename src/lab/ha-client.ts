// The HA lab's client, run with node inside the client namespace: it holds keep-alive HTTP
// connections open through the VIP, each asking for "/" again a moment after every reply, and
// probes with a fresh connection every PROBE_MS. It prints one JSON line per event on stdout
// (wall-clock times, so that the process driving the lab can relate them to when it killed a
// director) and exits after the given duration. With `idle`, a keep-alive connection asks once,
// then only when a line arrives on stdin: long-lived connections that sit idle in between, which
// the kernel's sync schedule never sends again.
//
//   node ha-client.js VIP PORT CONNECTIONS DURATION_MS [idle]

import { connect, type Socket } from 'node:net';

/** What the client prints, one JSON object a line. */
export type HaClientEvent =
  | { kind: 'open'; conn: number; port: number; at: number }
  | { kind: 'reply'; conn: number; at: number; server: string }
  | { kind: 'closed'; conn: number; at: number; error: string }
  | { kind: 'probe'; at: number; ok: boolean }
  | { kind: 'done'; at: number };

const REQUEST_GAP_MS = 200;
const PROBE_MS = 100;
const PROBE_TIMEOUT_MS = 300;

const emit = (event: HaClientEvent): void => {
  process.stdout.write(`${JSON.stringify(event)}\n`);
};

const request = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

/** Reads complete HTTP responses (with Content-Length, as nginx's `return 200` sends) off a stream. */
function responses(onBody: (body: string) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk.toString('latin1');
    for (;;) {
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(pending.slice(0, end))?.[1] ?? 0);
      if (pending.length < end + 4 + length) return;
      onBody(pending.slice(end + 4, end + 4 + length));
      pending = pending.slice(end + 4 + length);
    }
  };
}

function keepAlive(
  conn: number,
  host: string,
  port: number,
  until: number,
  sockets: Socket[],
  idle: boolean,
): void {
  const socket = connect({ host, port });
  sockets.push(socket);
  let closedBy: string | null = null;
  socket.on('connect', () => {
    emit({ kind: 'open', conn, port: socket.localPort ?? 0, at: Date.now() });
    socket.write(request(host));
  });
  socket.on(
    'data',
    responses((body) => {
      emit({ kind: 'reply', conn, at: Date.now(), server: /This is ([^,]+)/.exec(body)?.[1] ?? body.trim() });
      if (!idle && Date.now() < until) setTimeout(() => socket.write(request(host)), REQUEST_GAP_MS);
    }),
  );
  socket.on('error', (error) => (closedBy = error.message));
  socket.on('close', () => {
    if (Date.now() < until || closedBy)
      emit({ kind: 'closed', conn, at: Date.now(), error: closedBy ?? 'closed' });
  });
}

function probe(host: string, port: number): void {
  const socket = connect({ host, port });
  let answered = false;
  const finish = (ok: boolean): void => {
    if (answered) return;
    answered = true;
    emit({ kind: 'probe', at: Date.now(), ok });
    socket.destroy();
  };
  socket.setTimeout(PROBE_TIMEOUT_MS, () => finish(false));
  socket.on('connect', () => socket.write(request(host)));
  socket.on('data', () => finish(true));
  socket.on('error', () => finish(false));
}

const [host, portText, countText, durationText, mode] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const until = Date.now() + Number(durationText);
if (
  !host ||
  !(port > 0) ||
  !(count >= 0) ||
  !(until > Date.now()) ||
  (mode !== undefined && mode !== 'idle')
) {
  process.stderr.write('usage: ha-client VIP PORT CONNECTIONS DURATION_MS [idle]\n');
  process.exit(2);
}
const idle = mode === 'idle';
const sockets: Socket[] = [];
for (let conn = 0; conn < count; conn++) keepAlive(conn, host, port, until, sockets, idle);
// Idle connections ask again, each once, for every line on stdin.
if (idle) process.stdin.on('data', () => sockets.forEach((socket) => socket.write(request(host))));
const prober = setInterval(() => probe(host, port), PROBE_MS);
setTimeout(() => {
  clearInterval(prober);
  // The last probes have PROBE_TIMEOUT_MS to answer; then the connections are closed.
  setTimeout(() => {
    emit({ kind: 'done', at: Date.now() });
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  }, PROBE_TIMEOUT_MS + 50);
}, until - Date.now());
