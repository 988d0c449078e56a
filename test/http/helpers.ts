// Clients for the HTTP listener's tests: plain requests, raw bytes (for what a well-behaved client
// never sends), a free loopback port, and promtool's verdict on an exposition.

import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { createConnection, createServer } from 'node:net';
import type { Socket } from 'node:net';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as sent (still compressed if it was), and as UTF-8 text. */
  raw: Buffer;
  body: string;
}

/** One request on its own connection (with `body`, if given). */
export function fetchText(
  url: string,
  method = 'GET',
  headers: Record<string, string> = {},
  body?: string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, headers: res.headers, raw, body: raw.toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `bytes` on a fresh connection and resolves to everything read until the server closes it. */
export function rawExchange(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    // A server that stops reading (431) resets the connection under a writer that goes on.
    socket.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' || err.code === 'EPIPE' ? resolve(text) : reject(err),
    );
    socket.on('close', () => resolve(text));
    socket.write(bytes);
  });
}

/** A connection that sends the start of a request and then nothing (slowloris). */
export function stalledClient(port: number): { socket: Socket; closed: Promise<string> } {
  const socket = createConnection({ host: '127.0.0.1', port });
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => (text += chunk));
  const closed = new Promise<string>((resolve) => {
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
  });
  socket.write('GET /metrics HTTP/1.1\r\nHost: lvsd\r\nX-Slow: ');
  return { socket, closed };
}

/** A loopback port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export const HAVE_PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
export const PROMTOOL_SKIP = HAVE_PROMTOOL
  ? false
  : "promtool not installed (scripts/setup.sh installs Debian's prometheus)";

/** `promtool check metrics`: exit status and what it said (parse errors and lint problems). */
export function promtoolCheck(exposition: string): { status: number | null; output: string } {
  const run = spawnSync('promtool', ['check', 'metrics'], {
    input: exposition,
    encoding: 'utf8',
    timeout: 10_000,
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}
