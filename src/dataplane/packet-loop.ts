// The packet loop, whatever the devices: read a batch from each device, let the director rewrite
// each frame, write it back where it came from (the kernel routes it on), run the housekeeping.
// It also keeps one device per fwmark service, opened before the service is added, closed after
// it goes, so a refused open leaves the director unchanged, and gives the director the host's
// route to each tunnelled or directly routed real server (when it is added, then every
// ROUTE_REFRESH_MS).

import type { Clock } from '../core/clock.js';
import { addrKey, type Addr } from '../core/inet.js';
import {
  PASS_TO_HOST,
  zeroDeviceCounters,
  type ControlOp,
  type DeviceCounters,
  type EngineEvent,
  type Snapshot,
} from '../core/ops.js';
import { fwmarkDeviceName, type DeviceDriver, type PacketDevice } from './device.js';
import { LinkPath, type LinkPathOptions, type LinkPlan } from './link-path.js';
import type { PacketDirector } from './messages.js';
import type { ForwardMethod } from '../core/model.js';
import type { RouteLookup } from './routes.js';

/** Frames handled per device before control requests and the tick get their turn. */
const BATCH = 64;
/**
 * With the layer-2 plane the devices carry only the host's side: read after poll() said they have
 * a frame, and, while frames on the links keep the loop from poll(), this often (a read that finds
 * nothing is a syscall, as dear as a frame's).
 */
const HOST_DEVICE_CHECK_MS = 1;
/**
 * With the layer-2 plane, how long after its last frame the loop keeps looking at the rings
 * (yielding the core between looks) before it sleeps in poll(). A thread woken from poll() starts
 * late, on a virtual machine most of all (its idle vCPU halted: 0.3-0.6 ms here), and a request
 * crosses the director four times; a ring is looked at with a read of its memory.
 */
export const SPIN_MS = 2;
/** Packet-path exceptions are reported at most this often (each is counted). */
const EXCEPTION_REPORT_MS = 10_000;
/** How often routed real servers' routes are looked up again (a route or an MTU changed). */
export const ROUTE_REFRESH_MS = 5_000;
/**
 * The methods whose packets the director itself fits to the path's MTU, as IPVS's tunnel and DR
 * transmitters do: an encapsulated packet grows, a directly routed one cannot go back to the
 * kernel (it still says VIP). A masqueraded one is the kernel's to check where it forwards it.
 */
const ROUTED: ReadonlySet<ForwardMethod> = new Set(['tunnel', 'route']);

export interface PacketLoopOptions {
  director: PacketDirector;
  driver: DeviceDriver;
  clock: Clock;
  /** Frame buffer size: the largest frame a device delivers. */
  frameMax: number;
  /** The device for traffic without a mark, or null for a loop that only serves control. */
  mainDevice: string | null;
  /** How long to wait for traffic when idle; bounds control latency. */
  idlePollMs: number;
  tickMs: number;
  /** Where the loop's events go (the engine passes them on to the daemon's log). */
  report(event: EngineEvent): void;
  /** The host's routes to routed real servers; without it, tunnelled packets have none ('no-route'). */
  routes?: RouteLookup;
  /** The layer-2 plane (--dataplane packet): AF_PACKET ports beside the main device, which then only carries the host's side. */
  link?: Pick<LinkPathOptions, 'driver' | 'neighbours' | 'links' | 'nextHops'>;
}

export class PacketLoop {
  private readonly stats: DeviceCounters = zeroDeviceCounters();
  /** Queue drops of the fwmark devices closed so far: their counts outlive them. */
  private closedQueueDrops = 0;
  readonly director: PacketDirector;
  private readonly driver: DeviceDriver;
  private readonly clock: Clock;
  private readonly frame: Uint8Array;
  private readonly devices: PacketDevice[] = [];
  /** Devices of fwmark services, by mark. */
  private readonly marked = new Map<number, PacketDevice>();
  private readonly serveDevices: boolean;
  private lastTick: number;
  private lastRouteRefresh: number;
  private lastExceptionReport = -Infinity;
  private readonly link: LinkPath | null = null;
  /** The interfaces of the layer-2 plane's last plan, for the snapshot. */
  private linkInterfaces: string[] = [];
  /** Layer-2 plane: whether the devices may have frames (the last wait said so, or a read found some). */
  private devicesReady = true;
  private lastDeviceRead = -Infinity;
  /** When the layer-2 plane last had a frame. */
  private lastLinkFrame = -Infinity;

  constructor(private readonly options: PacketLoopOptions) {
    this.director = options.director;
    this.driver = options.driver;
    this.clock = options.clock;
    this.frame = new Uint8Array(options.frameMax);
    this.lastTick = this.clock.now();
    this.lastRouteRefresh = this.lastTick;
    this.serveDevices = options.mainDevice !== null;
    if (options.mainDevice !== null) this.devices.push(this.driver.open(options.mainDevice, 0));
    if (options.link) {
      if (!this.serveDevices) throw new Error('the layer-2 plane needs the main device');
      this.link = new LinkPath({
        ...options.link,
        host: this.devices[0]!,
        stats: this.stats,
        batch: BATCH,
        onException: (error) => this.exception(error),
      });
    }
  }

  /** What the layer-2 plane takes, from where (the host side decided it); refused without one. */
  setLinkPlan(plan: LinkPlan): void {
    if (!this.link) throw new Error('no layer-2 plane (lvsd --dataplane packet) in this data plane');
    this.link.setPlan(plan);
    this.linkInterfaces = [...plan.interfaces];
  }

  /** The main device's name as the kernel gave it, or null. */
  get mainDeviceName(): string | null {
    return this.serveDevices ? this.devices[0]!.name : null;
  }

  /** Applies a control operation, opening or closing fwmark services' devices around it. */
  execute(op: ControlOp): void {
    const mark = op.op === 'add-service' ? op.key.fwmark : 0;
    const opened = this.serveDevices && mark > 0 && !this.marked.has(mark) ? this.openMarked(mark) : null;
    try {
      this.director.execute(op);
    } catch (error) {
      if (opened) this.closeMarked(mark);
      throw error;
    }
    if ((op.op === 'add-dest' || op.op === 'edit-dest') && ROUTED.has(op.settings.method))
      this.findRoute(op.addr);
    if (op.op === 'delete-service' || op.op === 'clear') {
      const wanted = new Set(
        this.director.snapshot({ connections: false }).services.map((s) => s.key.fwmark),
      );
      for (const mark of [...this.marked.keys()]) if (!wanted.has(mark)) this.closeMarked(mark);
    }
  }

  snapshot(connections: boolean): Snapshot {
    const snapshot = this.director.snapshot({ connections });
    snapshot.dataPath.device = this.counters();
    snapshot.dataPath.plane = this.link ? 'packet' : 'tun';
    if (this.link) snapshot.dataPath.interfaces = [...this.linkInterfaces];
    return snapshot;
  }

  /** The loop's packet and drop counters, with the devices' queue drops read now. */
  counters(): DeviceCounters {
    let queueFull = this.closedQueueDrops;
    for (const device of this.devices) queueFull += device.queueDrops();
    if (this.link) queueFull += this.link.queueDrops();
    this.stats.drops.queueFull = queueFull;
    return structuredClone(this.stats);
  }

  /** One turn: a batch from every device (or a wait when all were idle), then the tick when due. */
  turn(): void {
    let handled = 0;
    /** Frames came a moment ago: look at the rings again rather than sleep. */
    let spin = false;
    if (this.link === null) {
      for (const device of this.devices) handled += this.drain(device);
    } else {
      const started = this.clock.now();
      if (this.devicesReady || started - this.lastDeviceRead >= HOST_DEVICE_CHECK_MS) {
        this.lastDeviceRead = started;
        for (const device of this.devices) handled += this.drain(device);
        this.devicesReady = handled > 0;
      }
      handled += this.link.drain(this.director, started);
      if (handled > 0) this.lastLinkFrame = started;
      else spin = started - this.lastLinkFrame < SPIN_MS;
    }
    if (spin) this.driver.yieldCpu();
    else if (handled === 0) {
      const ready = this.driver.wait(this.devices, this.options.idlePollMs, this.link?.fds());
      this.devicesReady ||= ready;
    }
    const now = this.clock.now();
    if (now - this.lastTick >= this.options.tickMs) {
      this.lastTick = now;
      this.director.tick();
    }
    if (now - this.lastRouteRefresh >= ROUTE_REFRESH_MS) {
      this.lastRouteRefresh = now;
      this.refreshRoutes();
    }
    const synced = this.director.takeSyncConns();
    if (synced.length > 0) this.options.report({ kind: 'sync', conns: synced });
  }

  close(): void {
    this.link?.close();
    for (const device of this.devices.splice(0)) device.close();
    this.marked.clear();
  }

  private drain(device: PacketDevice): number {
    const { frame, stats, director } = this;
    let handled = 0;
    for (; handled < BATCH; handled++) {
      const n = device.read(frame);
      if (n === 0) break;
      stats.rxPackets++;
      stats.rxBytes += n;
      let out: number;
      try {
        out = director.process(frame, 0, n, device.fwmark);
      } catch (error) {
        stats.drops.exception++;
        this.exception(error);
        continue;
      }
      if (out === 0) stats.drops.verdict++;
      // Written back unchanged, the kernel takes it from the device as it would have without us.
      else this.send(device, frame, out === PASS_TO_HOST ? n : out);
      if (director.pending.length > 0) {
        for (const extra of director.pending.splice(0)) this.send(device, extra, extra.length);
      }
    }
    return handled;
  }

  private exception(error: unknown): void {
    const now = this.clock.now();
    if (now - this.lastExceptionReport < EXCEPTION_REPORT_MS) return;
    this.lastExceptionReport = now;
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.options.report({ kind: 'exception', message, count: this.stats.drops.exception });
  }

  private send(device: PacketDevice, buf: Uint8Array, length: number): void {
    if (device.write(buf, length)) {
      this.stats.txPackets++;
      this.stats.txBytes += length;
    } else this.stats.drops.writeFailed++;
  }

  private findRoute(addr: Addr): void {
    if (this.options.routes) this.director.setRealServerRoute(addr, this.options.routes.lookup(addr));
  }

  private refreshRoutes(): void {
    if (!this.options.routes) return;
    const routed = new Map<string, Addr>();
    for (const service of this.director.snapshot({ connections: false }).services) {
      for (const dest of service.dests)
        if (ROUTED.has(dest.method)) routed.set(addrKey(dest.addr), dest.addr);
    }
    for (const addr of routed.values()) this.findRoute(addr);
  }

  private openMarked(mark: number): PacketDevice {
    const device = this.driver.open(fwmarkDeviceName(mark), mark);
    this.marked.set(mark, device);
    this.devices.push(device);
    return device;
  }

  private closeMarked(mark: number): void {
    const device = this.marked.get(mark)!;
    this.marked.delete(mark);
    this.devices.splice(this.devices.indexOf(device), 1);
    this.closedQueueDrops += device.queueDrops();
    device.close();
  }
}
