// lvsd run from a keepalived.conf: the file owns the director's configuration (its services, real
// servers and sorry servers are applied through ControlService; lvsd.json is not used), and the
// health monitor built from its checkers drives each real server's runtime health. A reload
// (SIGHUP) re-reads the file: a file with errors changes nothing; otherwise what differs is
// applied and the monitor carries the health of unchanged real servers over.
//
// A sorry server is always a member of its service, kept out of scheduling (health down) until the
// monitor's `sorry` event brings it in: adding it is a runtime change, so it never touches the
// saved configuration or another server's connections. notify_up/down and quorum_up/down scripts
// start on the monitor's `rs` and `vs` events, whose lines also go to notify_fifo and lvs_notify_fifo.

import { ManualClock } from '../core/clock.js';
import { Director } from '../core/director.js';
import type { ForwardingCapability } from '../core/forward/types.js';
import { endpointName, type HealthEvent } from '../core/health/service.js';
import { formatAddr, type Addr } from '../core/inet.js';
import type { DestRuntimeChange, ServiceKey } from '../core/model.js';
import type { ControlOp, DestChecks, Snapshot } from '../core/ops.js';
import { fifoOpener, type FifoOpener, type NotifyFifo } from '../health/fifo.js';
import { HealthMonitor, type MonitoredService, type MonitorOptions } from '../health/monitor.js';
import { notifyScript, processScriptRunner, type NotifyScript, type ScriptRunner } from '../health/notify.js';
import type { SourcePos } from '../keepalived/lexer.js';
import type { KeepalivedConfig, ScriptConfig, VirtualServerConfig } from '../keepalived/model.js';
import { realServerPort } from '../keepalived/model.js';
import { toControlOps } from '../keepalived/ops.js';
import { formatDiagnostic, type ReadResult } from '../keepalived/read.js';
import { configFromSnapshot, type LvsdConfig } from './config.js';
import type { ReloadHook } from './daemon.js';
import type { Logger } from './log.js';
import type { ControlService } from './service.js';

/** A keepalived.conf lvsd cannot run as it says: `FILE:LINE: reason`, nothing applied. */
export class KeepalivedConfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeepalivedConfError';
  }
}

export interface KeepalivedSourceOptions {
  /** The file, as operators name it in messages. */
  file: string;
  /** Reads the file and its includes (readKeepalivedConf over the real file system, or a fake). */
  read(): ReadResult;
  log: Logger;
  monitor?: MonitorOptions;
  /** Starts notify_up/down and quorum_up/down scripts (default: as processes). */
  scripts?: ScriptRunner;
  /** Opens notify_fifo and lvs_notify_fifo (default: the real FIFOs). */
  openFifo?: FifoOpener;
  /**
   * What the data plane delivers, so that a file asking for more (lb_kind DR on TUN) is refused
   * by check(), before lvsd starts; unset: every method the core has.
   */
  forwarding?: ForwardingCapability | null;
}

/** One real (or sorry) server of a virtual server, in every IPVS service the virtual server makes. */
interface Placement {
  dests: Array<{ key: ServiceKey; addr: Addr; port: number }>;
  configuredWeight: number;
  inhibit: boolean;
}

/** A server's (or a virtual server's quorum's) scripts, for its UP and DOWN. */
interface Scripts {
  up: NotifyScript | null;
  down: NotifyScript | null;
}

/** A notify FIFO the file names, with its script (started with the FIFO's path as last argument). */
interface FifoPlan {
  path: string;
  script: NotifyScript | null;
}

interface Plan {
  config: KeepalivedConfig;
  /** notify_fifo, then lvs_notify_fifo: keepalived writes the checker's lines to both. */
  fifos: FifoPlan[];
  /** By pairKey for real servers (notify_up/down), by virtual server name for quorum_up/down. */
  scripts: Map<string, Scripts>;
  desired: LvsdConfig;
  monitored: MonitoredService[];
  servers: Map<string, Placement>;
  sorry: Map<string, Placement>;
}

const protocolNames: Record<number, 'tcp' | 'udp' | 'sctp'> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

function serverId(addr: Addr, port: number): string {
  return `${formatAddr(addr)}:${port}`;
}

function destKey(key: ServiceKey, addr: Addr, port: number): string {
  return JSON.stringify([key, addr, port]);
}

function pairKey(service: string, server: string): string {
  return JSON.stringify([service, server]);
}

/** What lvsd cannot carry out yet is refused at load, never accepted and ignored. */
function refuseUnsupported(config: KeepalivedConfig): void {
  const refuse = (where: { file: string; line: number }, what: string) => {
    throw new KeepalivedConfError(
      formatDiagnostic({
        ...where,
        message: `${what} is not supported by lvsd yet; remove it to run this file`,
      }),
    );
  };
  const main = { file: config.files[0] ?? '', line: 0 };
  if (config.rsInitNotifies) refuse(main, 'rs_init_notifies');
  // Nothing would check the scripts' permissions: running them anyway would ignore it.
  if (config.scriptSecurity) refuse(main, 'enable_script_security');
  for (const vs of config.virtualServers) {
    const sorry = vs.sorryServer;
    if (
      sorry &&
      vs.realServers.some((rs) => formatAddr(rs.addr) === formatAddr(sorry.addr) && rs.port === sorry.port)
    )
      refuse(sorry.pos, 'a sorry_server that is also a real_server of its virtual server');
  }
}

function placementOf(
  vs: VirtualServerConfig,
  addr: Addr,
  port: number,
  weight: number,
  inhibit: boolean,
): Placement {
  return {
    dests: vs.services.map((key) => ({ key, addr, port: realServerPort(key, port) })),
    configuredWeight: weight,
    inhibit,
  };
}

/** The file's services as lvsd's configuration document would hold them, with the sorry servers. */
function desiredConfig(
  config: KeepalivedConfig,
  plan: Map<string, Placement>,
  forwarding: ForwardingCapability | null,
): LvsdConfig {
  const ops: ControlOp[] = toControlOps(config);
  for (const vs of config.virtualServers) {
    const sorry = vs.sorryServer;
    if (!sorry) continue;
    for (const dest of plan.get(vs.name)!.dests)
      ops.push({ op: 'add-dest', ...dest, settings: { ...sorry.settings } });
  }
  // A scratch director checks every op as the real one will, and gives the document's form.
  const scratch = new Director({ clock: new ManualClock(), connCapacity: 16, forwarding });
  for (const op of ops) {
    try {
      scratch.execute(op);
    } catch (err) {
      throw new KeepalivedConfError(`${config.files[0] ?? ''}: ${(err as Error).message}`);
    }
  }
  return configFromSnapshot(scratch.snapshot({ connections: false }), []);
}

function planOf(result: ReadResult, forwarding: ForwardingCapability | null): Plan {
  if (!result.ok) throw new KeepalivedConfError(formatDiagnostic(result.error));
  const config = result.config;
  refuseUnsupported(config);
  const servers = new Map<string, Placement>();
  const sorry = new Map<string, Placement>();
  const scripts = new Map<string, Scripts>();
  const resolve = (keyword: string, script: ScriptConfig | null, pos: SourcePos): NotifyScript | null => {
    if (!script) return null;
    const fallback = config.scriptUser;
    const user = script.user ?? fallback?.user ?? null;
    const group = script.user !== null ? script.group : (fallback?.group ?? null);
    try {
      return notifyScript(keyword, script.argv, user, group);
    } catch (err) {
      throw new KeepalivedConfError(formatDiagnostic({ ...pos, message: (err as Error).message }));
    }
  };
  const monitored: MonitoredService[] = config.virtualServers.map((vs) => {
    const protocol = protocolNames[vs.services[0]?.protocol ?? 6] ?? 'tcp';
    if (vs.quorumUp || vs.quorumDown)
      scripts.set(vs.name, {
        up: resolve('quorum_up', vs.quorumUp, vs.pos),
        down: resolve('quorum_down', vs.quorumDown, vs.pos),
      });
    if (vs.sorryServer) {
      const s = vs.sorryServer;
      sorry.set(vs.name, placementOf(vs, s.addr, s.port, s.settings.weight, s.inhibit));
    }
    return {
      id: vs.name,
      name: vs.name,
      quorum: vs.quorum,
      hysteresis: vs.hysteresis,
      sorry: vs.sorryServer
        ? {
            name: endpointName(vs.sorryServer.addr, protocol, vs.sorryServer.port),
            weight: vs.sorryServer.settings.weight,
            inhibit: vs.sorryServer.inhibit,
          }
        : null,
      realServers: vs.realServers.map((rs) => {
        const id = serverId(rs.addr, rs.port);
        servers.set(
          pairKey(vs.name, id),
          placementOf(vs, rs.addr, rs.port, rs.settings.weight, rs.inhibitOnFailure),
        );
        if (rs.notifyUp || rs.notifyDown)
          scripts.set(pairKey(vs.name, id), {
            up: resolve('notify_up', rs.notifyUp, rs.pos),
            down: resolve('notify_down', rs.notifyDown, rs.pos),
          });
        return {
          id,
          name: endpointName(rs.addr, protocol, rs.port),
          weight: rs.settings.weight,
          inhibitOnFailure: rs.inhibitOnFailure,
          checkers: rs.checkers,
        };
      }),
    };
  });
  const fifos = [config.notifyFifo, config.lvsNotifyFifo].flatMap((fifo, i) => {
    if (!fifo) return [];
    const keyword = i === 0 ? 'notify_fifo_script' : 'lvs_notify_fifo_script';
    const where = { file: config.files[0] ?? '', line: 0 };
    return [{ path: fifo.path, script: resolve(keyword, fifo.script, where) }];
  });
  return {
    config,
    fifos,
    scripts,
    desired: desiredConfig(config, sorry, forwarding),
    monitored,
    servers,
    sorry,
  };
}

/**
 * Where a real or sorry server stands when it is added: out of scheduling, until the monitor's
 * placement of it (applied right after) brings it in. Added at its weight, an alpha server or a
 * sorry server could be picked before its checks or the quorum said so.
 */
const UNCHECKED: DestRuntimeChange = { health: 'down' };

/** A monitor event as the runtime change of a real server. */
function serverChange(weight: number | null, placement: Placement, alive: boolean): DestRuntimeChange {
  if (weight === null) return { health: 'down' };
  if (!alive && placement.inhibit) return { health: 'down-inhibited' };
  return { health: 'up', dynamicWeight: weight === placement.configuredWeight ? null : weight };
}

/** The sorry server: out (null), quiesced at 0 (sorry_server_inhibit), or in at its weight. */
function sorryChange(weight: number | null): DestRuntimeChange {
  if (weight === null) return { health: 'down' };
  return weight === 0 ? { health: 'down-inhibited' } : { health: 'up', dynamicWeight: null };
}

/**
 * The keepalived.conf side of lvsd: `start` applies the file and starts its checks, `reload`
 * (a daemon reload hook) re-reads it, `close` stops the checks.
 */
export class KeepalivedSource implements ReloadHook {
  readonly name: string;
  private plan: Plan | null = null;
  private monitor: HealthMonitor | null = null;
  private service: ControlService | null = null;
  /** Runtime changes go to the director in the order the monitor decided them. */
  private applying: Promise<void> = Promise.resolve();

  private readonly runner: ScriptRunner;
  private readonly openFifo: FifoOpener;
  /** The notify FIFOs open now, each with the JSON of its FifoPlan. */
  private fifos: Array<{ key: string; fifo: NotifyFifo }> = [];

  constructor(private readonly options: KeepalivedSourceOptions) {
    this.name = options.file;
    this.runner =
      options.scripts ??
      processScriptRunner((argv, message) => options.log('error', `cannot run ${argv[0]}: ${message}`));
    this.openFifo =
      options.openFifo ??
      fifoOpener((path, reason) => options.log('warn', `notify FIFO ${path}: a line was lost (${reason})`));
  }

  /**
   * Opens the plan's FIFOs that are not open already (and starts their scripts); all or nothing.
   * Returns the new set, for `swapFifos`; throws KeepalivedConfError naming the FIFO.
   */
  private openFifos(plan: Plan): Array<{ key: string; fifo: NotifyFifo }> {
    const opened: Array<{ key: string; fifo: NotifyFifo }> = [];
    const next: Array<{ key: string; fifo: NotifyFifo }> = [];
    try {
      for (const fifoPlan of plan.fifos) {
        const key = JSON.stringify(fifoPlan);
        const kept = this.fifos.find((f) => f.key === key && !next.includes(f));
        if (kept) {
          next.push(kept);
          continue;
        }
        const entry = { key, fifo: this.openFifo(fifoPlan.path, fifoPlan.script?.ids ?? null) };
        opened.push(entry);
        next.push(entry);
      }
    } catch (err) {
      for (const { fifo } of opened) fifo.close();
      throw new KeepalivedConfError(`${this.options.file}: ${(err as Error).message}`);
    }
    for (const { key, fifo } of opened) {
      const script = plan.fifos.find((f) => JSON.stringify(f) === key)?.script;
      if (script) this.runner.run({ ...script, argv: [...script.argv, fifo.path] });
    }
    return next;
  }

  /** Makes `next` the open FIFOs, closing the ones it does not keep. */
  private swapFifos(next: Array<{ key: string; fifo: NotifyFifo }>): void {
    for (const entry of this.fifos) if (!next.includes(entry)) entry.fifo.close();
    this.fifos = next;
  }

  /** Reads and checks the file without applying it (lvsd refuses to start on an error). */
  check(): void {
    planOf(this.options.read(), this.options.forwarding ?? null);
  }

  /** Applies the file and starts the health checks. Throws KeepalivedConfError, having applied nothing. */
  async start(service: ControlService): Promise<void> {
    const plan = planOf(this.options.read(), this.options.forwarding ?? null);
    const monitor = new HealthMonitor(plan.monitored, this.options.monitor);
    const fifos = this.openFifos(plan);
    try {
      await service.apply(plan.desired, { addedRuntime: UNCHECKED });
    } catch (err) {
      for (const { fifo } of fifos) fifo.close();
      throw err;
    }
    this.swapFifos(fifos);
    this.service = service;
    this.plan = plan;
    this.monitor = monitor;
    monitor.on('event', (event) => this.onEvent(event));
    for (const event of monitor.placements()) this.onEvent(event);
    monitor.start();
    this.options.log('info', `running ${this.options.file}: ${plan.desired.services.length} services`);
    await this.settled();
  }

  async reload(service: ControlService): Promise<void> {
    const log = this.options.log;
    log('info', `reloading ${this.options.file}`);
    let plan: Plan;
    let fifos: Array<{ key: string; fifo: NotifyFifo }>;
    try {
      plan = planOf(this.options.read(), this.options.forwarding ?? null);
      // The monitor's own checks of the new checkers, before anything is applied.
      new HealthMonitor(plan.monitored, this.options.monitor);
      fifos = this.openFifos(plan);
    } catch (err) {
      for (const line of (err as Error).message.split('\n')) log('error', line);
      log('error', `reload of ${this.options.file} refused: nothing was changed`);
      return;
    }
    const monitor = this.monitor;
    const dropNew = () => {
      for (const entry of fifos) if (!this.fifos.includes(entry)) entry.fifo.close();
    };
    if (!monitor) return dropNew();
    let changes;
    try {
      changes = await service.apply(plan.desired, { addedRuntime: UNCHECKED });
    } catch (err) {
      dropNew();
      throw err;
    }
    this.swapFifos(fifos);
    this.plan = plan;
    monitor.update(plan.monitored);
    // The director carries the runtime state of servers kept; new ones (added out of scheduling)
    // are put where the monitor places them: re-stating the others changes nothing.
    for (const event of monitor.placements()) this.onEvent(event);
    log('info', `reloaded ${this.options.file}: ${changes.length} changes`);
    await this.settled();
  }

  /** Adds each checked real server's last checks and last change to a snapshot (for `-L --json`). */
  annotate(snapshot: Snapshot): Snapshot {
    const plan = this.plan;
    const monitor = this.monitor;
    if (!plan || !monitor) return snapshot;
    const byDest = new Map<string, DestChecks>();
    for (const status of monitor.status()) {
      const placement = plan.servers.get(pairKey(status.service, status.server));
      const checks: DestChecks = {
        alive: status.alive,
        checkers: status.checkers.map((c) => ({
          kind: c.kind,
          up: c.up,
          last: c.last && {
            ok: c.last.ok,
            code: c.last.code,
            reason: c.last.reason,
            durationMs: c.last.durationMs,
            time: c.last.time,
          },
        })),
        lastChange: status.lastChange && {
          up: status.lastChange.up,
          reason: status.lastChange.reason,
          time: status.lastChange.time,
        },
      };
      for (const dest of placement?.dests ?? []) byDest.set(destKey(dest.key, dest.addr, dest.port), checks);
    }
    return {
      ...snapshot,
      services: snapshot.services.map((svc) => ({
        ...svc,
        dests: svc.dests.map((d) => {
          const checks = byDest.get(destKey(svc.key, d.addr, d.port));
          return checks ? { ...d, checks } : d;
        }),
      })),
    };
  }

  /** Stops the checks; with omega, runs notify_down of alive real servers and quorum_down, as keepalived. */
  async close(): Promise<void> {
    const plan = this.plan;
    const monitor = this.monitor;
    if (plan && monitor)
      for (const vs of plan.config.virtualServers) {
        if (!vs.omega) continue;
        for (const rs of vs.realServers) {
          const down = plan.scripts.get(pairKey(vs.name, serverId(rs.addr, rs.port)))?.down;
          if (down && monitor.isAlive(vs.name, serverId(rs.addr, rs.port))) this.runner.run(down);
        }
        const quorumDown = plan.scripts.get(vs.name)?.down;
        if (quorumDown && monitor.quorumUp(vs.name)) this.runner.run(quorumDown);
      }
    await this.monitor?.stop();
    await this.settled();
    this.swapFifos([]);
  }

  /** Resolves once every runtime change decided so far has reached the director. */
  settled(): Promise<void> {
    return this.applying;
  }

  private onEvent(event: HealthEvent): void {
    const plan = this.plan;
    if (!plan) return;
    if (event.type === 'rs' || event.type === 'vs') {
      this.options.log('info', `${event.line}${event.type === 'rs' ? ` (${event.reason})` : ''}`);
      for (const { fifo } of this.fifos) fifo.write(event.line);
      const scripts = plan.scripts.get(
        event.type === 'rs' ? pairKey(event.service, event.server) : event.service,
      );
      const script = event.up ? scripts?.up : scripts?.down;
      if (script) this.runner.run(script);
      return;
    }
    const placement =
      event.type === 'weight'
        ? plan.servers.get(pairKey(event.service, event.server))
        : plan.sorry.get(event.service);
    if (!placement) return;
    const change =
      event.type === 'weight'
        ? serverChange(event.weight, placement, this.monitor?.isAlive(event.service, event.server) ?? true)
        : sorryChange(event.weight);
    const service = this.service!;
    for (const dest of placement.dests) {
      const op: ControlOp = { op: 'set-dest-runtime', ...dest, change };
      this.applying = this.applying
        .then(() => service.execute(op))
        .catch((err: unknown) =>
          this.options.log(
            'error',
            `health of ${serverId(dest.addr, dest.port)} not applied: ${(err as Error).message}`,
          ),
        );
    }
  }
}
