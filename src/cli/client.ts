// lvsadm's side of the control socket: ControlApi as newline-delimited JSON requests over one
// Unix-socket connection, answered in order.

import { createConnection } from 'node:net';
import type { Socket } from 'node:net';
import type { ControlApi } from '../control/api.js';
import { PROTOCOL_VERSION } from '../control/protocol.js';
import type { Response } from '../control/protocol.js';
import type {
  ConnPage,
  ControlOp,
  Snapshot,
  SyncDaemonConfig,
  SyncDaemonStatus,
  SyncState,
} from '../core/ops.js';

export const DEFAULT_SOCKET_PATH = '/run/lvsd/lvsd.sock';

/** The daemon could not be reached or went away mid-request. */
export class DaemonUnreachableError extends Error {
  constructor(
    readonly socketPath: string,
    reason: string,
  ) {
    super(reason);
    this.name = 'DaemonUnreachableError';
  }
}

/** lvsd refused a request; `code` is an LvsError code or a protocol code. */
export class DaemonRefusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'DaemonRefusal';
  }
}

interface Pending {
  resolve(result: unknown): void;
  reject(err: Error): void;
}

export class DaemonClient implements ControlApi {
  private socket: Socket | null = null;
  private connecting: Promise<Socket> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** The start of a reply whose newline has not come yet, in chunks: a page of -Lc is a megabyte. */
  private partial: string[] = [];

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 30_000,
  ) {}

  private connect(): Promise<Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const socket = createConnection(this.socketPath);
      socket.setEncoding('utf8');
      socket.once('connect', () => {
        this.socket = socket;
        resolve(socket);
      });
      socket.on('data', (chunk: string) => this.onData(chunk));
      socket.on('error', (err: NodeJS.ErrnoException) => {
        const reason = err.code ?? err.message;
        reject(new DaemonUnreachableError(this.socketPath, reason));
        this.failAll(reason);
      });
      socket.on('close', () => this.failAll('connection closed by lvsd'));
    });
    return this.connecting;
  }

  private onData(chunk: string): void {
    // Only the new chunk is searched, so a long reply costs its length once, not once a chunk.
    let start = 0;
    let newline: number;
    while ((newline = chunk.indexOf('\n', start)) >= 0) {
      this.partial.push(chunk.slice(start, newline));
      const line = this.partial.join('');
      this.partial = [];
      start = newline + 1;
      let response: Response;
      try {
        response = JSON.parse(line) as Response;
      } catch {
        this.failAll('unreadable reply from lvsd');
        return;
      }
      const waiter = response.id === null ? undefined : this.pending.get(response.id);
      if (!waiter) continue;
      this.pending.delete(response.id!);
      if (response.ok) waiter.resolve(response.result);
      else waiter.reject(new DaemonRefusal(response.error.code, response.error.message));
    }
    if (start < chunk.length) this.partial.push(chunk.slice(start));
  }

  private failAll(reason: string): void {
    this.socket = null;
    this.connecting = null;
    for (const waiter of this.pending.values())
      waiter.reject(new DaemonUnreachableError(this.socketPath, reason));
    this.pending.clear();
  }

  private async request(body: Record<string, unknown>): Promise<unknown> {
    const socket = await this.connect();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new DaemonUnreachableError(this.socketPath, `no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, {
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      socket.write(JSON.stringify({ v: PROTOCOL_VERSION, id, ...body }) + '\n');
    });
  }

  async execute(op: ControlOp): Promise<void> {
    await this.request({ op: 'execute', command: op });
  }

  async snapshot(options: { connections: boolean }): Promise<Snapshot> {
    return (await this.request({ op: 'snapshot', connections: options.connections })) as Snapshot;
  }

  async connections(from: number, limit: number): Promise<ConnPage> {
    return (await this.request({ op: 'connections', from, limit })) as ConnPage;
  }

  async startSyncDaemon(config: SyncDaemonConfig): Promise<void> {
    await this.request({ op: 'start-sync', config });
  }

  async stopSyncDaemon(state: SyncState): Promise<void> {
    await this.request({ op: 'stop-sync', state });
  }

  async syncDaemons(): Promise<SyncDaemonStatus[]> {
    return (await this.request({ op: 'sync-daemons' })) as SyncDaemonStatus[];
  }

  close(): void {
    this.socket?.end();
    this.socket = null;
    this.connecting = null;
  }
}
