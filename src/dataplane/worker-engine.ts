// An Engine whose director lives in the data-plane worker thread. Control operations travel as
// messages; after each one that changes which traffic must be steered, the host's kernel
// plumbing is reconciled with the director's services.

import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { Engine } from '../core/engine.js';
import type { DefenseSettings } from '../core/conn/defense.js';
import type { ExpirySettings } from '../core/conn/expiry.js';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { ForwardingCapability } from '../core/forward/types.js';
import { addrEquals } from '../core/inet.js';
import { sameServiceKey } from '../core/services.js';
import type {
  ConnPage,
  ConnRecord,
  ControlOp,
  DeviceCounters,
  EngineEvent,
  HandOver,
  ImportResult,
  ServiceSnapshot,
  Snapshot,
} from '../core/ops.js';
import type { SyncConn } from '../core/sync/conn.js';
import type { FullSyncPageRequest } from '../core/sync/full-sync.js';
import type { SyncTuning } from '../core/sync/master.js';
import type { SyncPage } from '../core/sync/source.js';
import type { HostSteering } from './host.js';
import type {
  Reply,
  RequestBody,
  SerializedError,
  Startup,
  WorkerEventMessage,
  WorkerSettings,
} from './messages.js';

export interface WorkerEngineOptions {
  /** The TUN device to create, or null for a worker without packets (no root needed). */
  tun: { name: string; mtu: number } | null;
  /** The layer-2 plane (--dataplane packet) beside the TUN device; its plan comes from `host.linkPlan()`. */
  link?: boolean;
  /** Kernel plumbing to keep in step with the services; null leaves the host alone. */
  host: HostSteering | null;
  connCapacity?: number;
  defense?: Partial<DefenseSettings>;
  expiry?: Partial<ExpirySettings>;
  /** What the data plane delivers; unset: every method (a worker without packets). */
  forwarding?: ForwardingCapability | null;
  /** Defaults to the real director; tests point it at a module of their own. */
  directorModule?: string;
  idlePollMs?: number;
  tickMs?: number;
}

type SteeringOp = Extract<
  ControlOp,
  { op: 'add-service' | 'add-dest' | 'delete-service' | 'delete-dest' | 'clear' }
>;

const STEERING_OPS = new Set<ControlOp['op']>([
  'add-service',
  'delete-service',
  'clear',
  'add-dest',
  'delete-dest',
]);

const isSteering = (op: ControlOp): op is SteeringOp => STEERING_OPS.has(op.op);

/** The operation that takes an addition back. */
function undoAddition(op: Extract<SteeringOp, { op: 'add-service' | 'add-dest' }>): ControlOp {
  return op.op === 'add-service'
    ? { op: 'delete-service', key: op.key }
    : { op: 'delete-dest', key: op.key, addr: op.addr, port: op.port };
}

/** The services that remain once a removal is done (as the director will do it). */
function afterRemoval(
  services: readonly ServiceSnapshot[],
  op: Extract<SteeringOp, { op: 'delete-service' | 'delete-dest' | 'clear' }>,
): ServiceSnapshot[] {
  if (op.op === 'clear') return [];
  const others = services.filter((s) => !sameServiceKey(s.key, op.key));
  if (op.op === 'delete-service') return others;
  return services.map((s) =>
    sameServiceKey(s.key, op.key)
      ? { ...s, dests: s.dests.filter((d) => d.port !== op.port || !addrEquals(d.addr, op.addr)) }
      : s,
  );
}

function hostRefused(error: unknown): LvsError {
  const why = error instanceof Error ? error.message : String(error);
  return new LvsError(ErrorCodes.HOST_REFUSED, `the host refused the change, nothing was changed: ${why}`, {
    cause: error,
  });
}

function toError(error: SerializedError): Error {
  return error.code ? new LvsError(error.code, error.message) : new Error(error.message);
}

export class WorkerEngine implements Engine {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private exited: Error | null = null;
  private closing: Promise<void> | null = null;
  private readonly listeners = new Set<(event: EngineEvent) => void>();
  /** Why the worker died, when it threw. */
  private crash: Error | null = null;
  /** A restart hold is in place (handOver): close() leaves it for the next run. */
  private holding = false;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly host: HostSteering | null,
    /** The device's name as the kernel gave it, or null without a device. */
    readonly tunName: string | null,
    private readonly link: boolean,
  ) {
    port.on('message', (message: Reply | WorkerEventMessage) => {
      if ('event' in message) {
        this.emit(message.event);
        return;
      }
      const reply = message;
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.value);
      else waiter.reject(toError(reply.error));
    });
    worker.on('error', (error) => {
      this.crash = error;
    });
    worker.on('exit', (code) => {
      this.exited = new Error(`data-plane worker exited (code ${code})`);
      for (const waiter of this.pending.values()) waiter.reject(this.exited);
      this.pending.clear();
      port.close();
      if (this.closing) return;
      // Nobody forwards any more: take the steering away at once, so the service's traffic is
      // no longer routed into a device nobody reads, and let the daemon stop.
      this.host?.stop();
      const why = this.crash ? (this.crash.stack ?? this.crash.message) : `exit code ${code}`;
      this.emit({ kind: 'failed', reason: `the data-plane worker died: ${why}` });
    });
  }

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: EngineEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  /** Starts the worker and waits until its device is up (or rejects with why it is not). */
  static async start(options: WorkerEngineOptions): Promise<WorkerEngine> {
    const channel = new MessageChannel();
    const settings: WorkerSettings = {
      port: channel.port2,
      tun: options.tun,
      link: options.link ?? false,
      directorModule: options.directorModule ?? new URL('../core/director.js', import.meta.url).href,
      connCapacity: options.connCapacity,
      defense: options.defense,
      expiry: options.expiry,
      forwarding: options.forwarding ?? null,
      idlePollMs: options.idlePollMs ?? 20,
      tickMs: options.tickMs ?? 100,
    };
    const worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: settings,
      transferList: [channel.port2],
    });
    const startup = await new Promise<Startup>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`data-plane worker exited during startup (code ${code})`)),
      );
    });
    if (startup.kind === 'failed') {
      await worker.terminate();
      throw toError(startup.error);
    }
    worker.removeAllListeners('error');
    return new WorkerEngine(worker, channel.port1, options.host, startup.tunName, settings.link);
  }

  private request<T>(request: RequestBody): Promise<T> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.port.postMessage({ ...request, id });
    });
  }

  /**
   * Applies an operation to the director and the host's steering together, or to neither: an
   * addition is taken back when the host refuses it; a removal leaves the host first, so a
   * refusal there finds the director untouched.
   */
  async execute(op: ControlOp): Promise<void> {
    const host = this.host;
    if (!host || !isSteering(op)) return this.request<void>({ kind: 'execute', op });
    const before = (await this.snapshot({ connections: false })).services;
    const restore = async () => {
      try {
        await this.steer(host, before);
      } catch {
        // The host refused going back as well: the next change's sync retries the difference.
      }
    };
    if (op.op === 'add-service' || op.op === 'add-dest') {
      await this.request<void>({ kind: 'execute', op });
      try {
        await this.steer(host, (await this.snapshot({ connections: false })).services);
      } catch (error) {
        await this.request<void>({ kind: 'execute', op: undoAddition(op) });
        await restore();
        throw hostRefused(error);
      }
      return;
    }
    try {
      await this.steer(host, afterRemoval(before, op));
    } catch (error) {
      await restore();
      throw hostRefused(error);
    }
    try {
      await this.request<void>({ kind: 'execute', op });
    } catch (error) {
      await restore();
      throw error;
    }
  }

  /** The host's steering for these services, and the layer-2 plane's ports and filter to match. */
  private async steer(host: HostSteering, services: readonly ServiceSnapshot[]): Promise<void> {
    host.sync(services);
    await this.sendLinkPlan(host);
  }

  private async sendLinkPlan(host: HostSteering): Promise<void> {
    if (this.link && host.linkPlan) await this.request<void>({ kind: 'link-plan', plan: host.linkPlan() });
  }

  snapshot(options: { connections: boolean }): Promise<Snapshot> {
    return this.request<Snapshot>({ kind: 'snapshot', connections: options.connections });
  }

  connections(from: number, limit: number): Promise<ConnPage> {
    return this.request<ConnPage>({ kind: 'connections', from, limit });
  }

  setSyncSource(tuning: Partial<SyncTuning> | null): Promise<void> {
    return this.request<void>({ kind: 'sync-source', tuning });
  }

  syncPage(request: FullSyncPageRequest): Promise<SyncPage> {
    return this.request<SyncPage>({ kind: 'sync-page', request });
  }

  importSynced(conns: SyncConn[]): Promise<ImportResult> {
    return this.request<ImportResult>({ kind: 'sync-import', conns });
  }

  async handOver(holdMs: number): Promise<HandOver> {
    let holdError: string | null = null;
    if (this.host && holdMs > 0 && !this.exited) {
      try {
        this.host.hold(holdMs);
        this.holding = true;
        // The layer-2 plane's frames would reach this run past the hold: it stops reading them.
        await this.sendLinkPlan(this.host);
      } catch (error) {
        holdError = error instanceof Error ? error.message : String(error);
      }
    }
    const records = await this.request<ConnRecord[]>({ kind: 'export-conns' });
    return { records, held: this.holding, holdError };
  }

  async takeOver(records: ConnRecord[]): Promise<ImportResult> {
    try {
      return await this.request<ImportResult>({ kind: 'import-conns', records });
    } finally {
      // Ended even when the import failed: the layer-2 plane reads nothing until it is, and the
      // daemon runs on with an empty table then.
      if (this.host) {
        this.host.releaseHold();
        // Only now, with the connections in: a frame read earlier would have been a new flow.
        await this.sendLinkPlan(this.host);
      }
    }
  }

  /** The worker's packet and drop counters. */
  stats(): Promise<DeviceCounters> {
    return this.request<DeviceCounters>({ kind: 'stats' });
  }

  /** Stops the packet loop (removing the device), then undoes the host plumbing. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.exited) {
        const exit = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
        await this.request<void>({ kind: 'stop' }).catch(() => undefined);
        await exit;
      }
      this.host?.stop({ keepHold: this.holding });
    })();
    return this.closing;
  }
}
