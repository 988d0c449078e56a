// The sync daemons' UDP multicast sockets (node:dgram), set up as ip_vs_sync.c's make_send_sock
// and make_receive_sock: the master sends from the interface's address to group:port with the
// configured TTL and no loopback; the backup binds group:port and joins the group on the interface.
// Behind the SyncTransport port, with an in-memory fake (which can fail sends) for tests.

import { createSocket, type Socket } from 'node:dgram';
import { formatAddr, type Addr } from '../core/inet.js';
import type { NetInterface } from './interfaces.js';

export interface SyncEndpoint {
  iface: NetInterface;
  group: Addr;
  port: number;
  ttl: number;
}

export interface SyncSender {
  /** Sends one message; resolves false when it could not be sent (counted by the caller). */
  send(message: Uint8Array): Promise<boolean>;
  close(): Promise<void>;
}

export interface SyncReceiver {
  close(): Promise<void>;
}

export interface SyncTransport {
  openSender(endpoint: SyncEndpoint): Promise<SyncSender>;
  /**
   * `onDatagram` gets every datagram with its source address; `onError` the socket's errors after
   * start (it stays open).
   */
  openReceiver(
    endpoint: SyncEndpoint,
    onDatagram: (datagram: Uint8Array, source: string) => void,
    onError: (error: Error) => void,
  ): Promise<SyncReceiver>;
}

function groupText(endpoint: SyncEndpoint): string {
  const text = formatAddr(endpoint.group);
  // Link-scoped IPv6 groups need the interface as their scope.
  return endpoint.group.af === 6 ? `${text}%${endpoint.iface.name}` : text;
}

/** What names the interface to IP_MULTICAST_IF / IPV6_MULTICAST_IF and to a membership. */
function interfaceText(endpoint: SyncEndpoint): string {
  if (endpoint.group.af === 6) return `::%${endpoint.iface.name}`;
  if (endpoint.iface.ipv4 === null)
    throw new Error(
      `interface ${endpoint.iface.name} is down or has no IPv4 address (you probably need to specify IP address on multicast interface)`,
    );
  return endpoint.iface.ipv4;
}

function closeSocket(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** Runs a socket set-up step; a failure closes the socket and rejects with a clear message. */
async function setUp(socket: Socket, what: string, step: () => Promise<void> | void): Promise<void> {
  try {
    await step();
  } catch (error) {
    await closeSocket(socket);
    throw new Error(`sync socket ${what}: ${(error as Error).message}`, { cause: error });
  }
}

function bound(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port, address, exclusive: false }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function connected(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.connect(port, address, (error?: Error) => (error ? reject(error) : resolve()));
  });
}

/** At most this many sends wait in node's queue; more are refused (bounded memory if the socket stalls). */
const MAX_IN_FLIGHT = 64;

export const udpTransport: SyncTransport = {
  async openSender(endpoint) {
    const v6 = endpoint.group.af === 6;
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4' });
    // Errors after set-up surface through send's callback; this keeps them from crashing the process.
    socket.on('error', () => undefined);
    await setUp(socket, 'bind', () => bound(socket, 0, v6 ? '::' : interfaceText(endpoint)));
    await setUp(socket, 'options', () => {
      socket.setMulticastInterface(interfaceText(endpoint));
      socket.setMulticastTTL(endpoint.ttl);
      socket.setMulticastLoopback(false);
    });
    await setUp(socket, 'connect', () => connected(socket, endpoint.port, groupText(endpoint)));
    let inFlight = 0;
    return {
      send(message) {
        if (inFlight >= MAX_IN_FLIGHT) return Promise.resolve(false);
        inFlight++;
        return new Promise((resolve) => {
          try {
            socket.send(message, (error) => {
              inFlight--;
              resolve(!error);
            });
          } catch {
            inFlight--;
            resolve(false);
          }
        });
      },
      close: () => closeSocket(socket),
    };
  },

  async openReceiver(endpoint, onDatagram, onError) {
    const v6 = endpoint.group.af === 6;
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true });
    socket.on('error', onError);
    await setUp(socket, 'bind', () => bound(socket, endpoint.port, groupText(endpoint)));
    await setUp(socket, 'join', () => socket.addMembership(groupText(endpoint), interfaceText(endpoint)));
    socket.on('message', (datagram, from) => onDatagram(datagram, from.address));
    return { close: () => closeSocket(socket) };
  },
};

/** An in-memory multicast bus: every sender's message reaches every receiver of the same group and port. */
export class FakeSyncBus implements SyncTransport {
  private readonly receivers = new Set<{ key: string; deliver: (d: Uint8Array, source: string) => void }>();
  /** Sends fail while this is set (a faulty link). */
  failSends = false;

  private static key(endpoint: SyncEndpoint): string {
    return `${formatAddr(endpoint.group)}:${endpoint.port}`;
  }

  async openSender(endpoint: SyncEndpoint): Promise<SyncSender> {
    const key = FakeSyncBus.key(endpoint);
    return {
      send: async (message) => {
        if (this.failSends) return false;
        this.deliver(key, message.slice(), endpoint.iface.ipv4 ?? '');
        return true;
      },
      close: async () => undefined,
    };
  }

  async openReceiver(
    endpoint: SyncEndpoint,
    onDatagram: (d: Uint8Array, source: string) => void,
  ): Promise<SyncReceiver> {
    const entry = { key: FakeSyncBus.key(endpoint), deliver: onDatagram };
    this.receivers.add(entry);
    return {
      close: async () => {
        this.receivers.delete(entry);
      },
    };
  }

  /** Puts any bytes on the bus, as a spoofing or broken sender would (from the interface's address unless told). */
  inject(endpoint: SyncEndpoint, datagram: Uint8Array, source = endpoint.iface.ipv4 ?? ''): void {
    this.deliver(FakeSyncBus.key(endpoint), datagram, source);
  }

  private deliver(key: string, datagram: Uint8Array, source: string): void {
    for (const r of this.receivers) if (r.key === key) r.deliver(datagram, source);
  }
}
