// Check targets for the health tests: servers on loopback that answer, refuse, stay silent,
// reset, answer late, answer garbage or without end, and (as root) a namespace whose address is
// blackholed, so that a check sees a timeout rather than a refusal. Lab addresses are in
// 198.18.0.0/15; the namespace is lvshc<pid>-t and is removed on close (and, if a run died, by
// the next one).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { cleanupStaleLabs } from '../../src/lab/lab.js';
import type { CheckTarget } from '../../src/health/config.js';
import { parseAddr, type Addr } from '../../src/core/inet.js';

export const LOOPBACK = parseAddr('127.0.0.1')!;

export type Behavior = 'up' | 'stalled' | 'reset' | 'slow' | 'garbage' | 'gigantic';

/** How a server answers a request, for 'up' and 'slow'. */
export type Responder = (request: Buffer) => Buffer;

export function target(addr: Addr, port: number, extra: Partial<CheckTarget> = {}): CheckTarget {
  return { addr, port, bindAddr: null, bindPort: 0, bindInterface: null, fwmark: 0, ...extra };
}

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: 'pipe' });
}

export const isRoot = process.getuid?.() === 0;

export class Targets {
  private readonly closers: Array<() => void> = [];
  private ns: string | null = null;
  /** An address whose packets vanish (root only): checks to it time out. */
  blackhole: Addr | null = null;
  private tlsOptions: tls.TlsOptions | null = null;

  /** Sets up the blackholed namespace when running as root. */
  static async open(): Promise<Targets> {
    const t = new Targets();
    if (isRoot) t.makeBlackhole();
    return t;
  }

  private makeBlackhole(): void {
    cleanupStaleLabs('lvshc');
    const ns = `lvshc${process.pid}-t`;
    const host = `lvshc${process.pid}a`;
    const peer = `lvshc${process.pid}b`;
    const net3 = `198.19.${process.pid % 250}`;
    sh(['ip', 'netns', 'add', ns]);
    this.ns = ns;
    sh(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', ns]);
    sh(['ip', 'addr', 'add', `${net3}.1/30`, 'dev', host]);
    sh(['ip', 'link', 'set', host, 'up']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${net3}.2/30`, 'dev', peer]);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', peer, 'up']);
    // Packets reach the namespace, its answers go nowhere: as a link that went down.
    sh(['ip', 'netns', 'exec', ns, 'ip', 'route', 'add', 'blackhole', `${net3}.1/32`]);
    this.blackhole = parseAddr(`${net3}.2`)!;
  }

  /** A loopback TCP port with nothing listening (a refusal). */
  async closedTcpPort(): Promise<number> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((r) => server.close(r));
    return port;
  }

  /** A loopback UDP port with nothing bound (ICMP port unreachable). */
  async closedUdpPort(): Promise<number> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    const port = socket.address().port;
    await new Promise<void>((r) => socket.close(r));
    return port;
  }

  /** A TCP (or, with `secure`, TLS) server behaving as told; `respond` serves 'up' and, late, 'slow'. */
  async stream(behavior: Behavior, respond: Responder, slowMs = 0, secure?: tls.TlsOptions): Promise<number> {
    const sockets = new Set<net.Socket>();
    const handle = (socket: net.Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      if (behavior === 'gigantic') return endless(socket);
      let got = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        got = Buffer.concat([got, chunk]);
        // A reset after the request: the connection itself was made.
        if (behavior === 'reset') return void socket.resetAndDestroy();
        if (behavior === 'stalled') return;
        if (behavior === 'garbage')
          return void socket.end(Buffer.from('\x00\xffgarbage\x01\x02 not a protocol\r\n\r\n'));
        const answer = respond(got);
        if (answer.length === 0) return;
        if (behavior === 'slow') setTimeout(() => socket.end(answer), slowMs).unref();
        else socket.end(answer);
      });
    };
    const server = secure ? tls.createServer(secure, handle) : net.createServer(handle);
    server.on('tlsClientError', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    this.closers.push(() => {
      for (const s of sockets) s.destroy();
      server.close();
    });
    return (server.address() as net.AddressInfo).port;
  }

  /** A UDP server behaving as told ('reset' has no meaning for UDP). */
  async datagram(behavior: Behavior, respond: Responder, slowMs = 0): Promise<number> {
    const socket = dgram.createSocket('udp4');
    let closed = false;
    socket.on('message', (msg, from) => {
      const reply = (data: Buffer) => closed || socket.send(data, from.port, from.address);
      if (behavior === 'stalled') return;
      if (behavior === 'garbage') return reply(Buffer.from('\x00\xffgarbage'));
      if (behavior === 'gigantic') return reply(Buffer.alloc(60000, 0x41));
      const answer = respond(msg);
      if (behavior === 'slow') setTimeout(() => reply(answer), slowMs).unref();
      else reply(answer);
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    this.closers.push(() => {
      closed = true;
      socket.close();
    });
    return socket.address().port;
  }

  /** A self-signed certificate for TLS targets, made once. */
  certificate(): tls.TlsOptions {
    if (!this.tlsOptions) {
      const dir = mkdtempSync(join(tmpdir(), 'lvshc-tls-'));
      try {
        const files = makeCertificate(dir);
        this.tlsOptions = { key: readFileSync(files.key), cert: readFileSync(files.cert) };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return this.tlsOptions;
  }

  close(): void {
    for (const close of this.closers.splice(0)) close();
    if (this.ns) {
      try {
        sh(['ip', 'netns', 'del', this.ns]);
      } finally {
        this.ns = null;
      }
    }
  }
}

/** A self-signed certificate for rs.lab made with openssl in `dir`: the paths of its key and certificate. */
export function makeCertificate(dir: string): { key: string; cert: string } {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  sh([
    'openssl',
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=rs.lab',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { key, cert };
}

/** Writes without end, as fast as the peer reads, until the peer goes. */
function endless(socket: net.Socket): void {
  const block = Buffer.alloc(64 * 1024, 0x41);
  socket.write('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n');
  const pump = () => {
    while (!socket.destroyed && socket.write(block));
  };
  socket.on('drain', pump);
  pump();
}
