// The virtual service table with IPVS's validation rules. Every operation checks everything
// first and only then changes state, so a refused operation leaves the table as it was.

import { ErrorCodes, LvsError } from './errors.js';
import './forward/index.js';
import { forwardingMethodId, forwardingMethodNames } from './forward/registry.js';
import type { ForwardingCapability } from './forward/types.js';
import { addrEquals, addrKey, IPPROTO_UDP, isUnicast, type Addr, type Family } from './inet.js';
import {
  applyRuntime,
  Dest,
  MAX_PERSISTENT_TIMEOUT,
  MAX_WEIGHT,
  Service,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  tunnelOf,
  type AdminState,
  type DestRuntimeChange,
  type HealthState,
  type DestSettings,
  type ForwardMethod,
  type ServiceKey,
  type ServiceSettings,
} from './model.js';
import { findScheduler } from './sched/registry.js';
import type { Scheduler, SchedulerEnv } from './sched/types.js';

const PERSISTENCE_ENGINES = new Set(['sip']);

/** The service table's key for a service: a number for IPv4 address services (looked up on every new flow), else a string. */
function tableKey(key: ServiceKey): string | number {
  return key.fwmark > 0 ? fwmarkTableKey(key.af, key.fwmark) : addrTableKey(key.protocol, key.addr, key.port);
}

export const sameServiceKey = (a: ServiceKey, b: ServiceKey): boolean => tableKey(a) === tableKey(b);

const fwmarkTableKey = (af: Family, fwmark: number) => `f${af}:${fwmark}`;
/** Service protocols (TCP, UDP, SCTP) as two bits, so that an IPv4 key fits a number exactly (50 bits). */
const protocolBits = (protocol: number): number => (protocol === 6 ? 0 : protocol === 17 ? 1 : 2);
// A string for each packet of a new flow would be built and hashed under a SYN flood 100,000 times a second.
const addrTableKey = (protocol: number, addr: Addr, port: number): string | number =>
  addr.af === 4
    ? (addr.a * 0x10000 + port) * 4 + protocolBits(protocol)
    : `${protocol}:${addrKey(addr)}:${port}`;

/** What removing a service or a real server means for the connections bound to it. */
export interface ServiceTableListener {
  /** Called once per operation, so that `-C` ends every connection in one pass over the table. */
  servicesRemoved(services: readonly Service[]): void;
  destRemoved(service: Service, dest: Dest): void;
}

export class ServiceTable {
  private readonly byKey = new Map<string | number, Service>();
  private readonly byServiceId = new Map<number, Service>();
  /** Insertion order, as the kernel's hash walk would give for a fresh table. */
  private readonly ordered: Service[] = [];
  private nextServiceId = 1;
  private nextDestId = 1;
  /** How many services use each virtual address, and how many real servers each address:port is. */
  private readonly virtualAddrs = new RefCount();
  private readonly realServers = new RefCount();

  /**
   * `carried`: what the data plane delivers; null (a director that moves no packets, or one that
   * checks a configuration) takes every method the core has.
   */
  constructor(
    private readonly env: SchedulerEnv,
    private readonly listener: ServiceTableListener,
    private readonly carried: ForwardingCapability | null = null,
  ) {}

  get services(): readonly Service[] {
    return this.ordered;
  }

  byId(id: number): Service | undefined {
    return this.byServiceId.get(id);
  }

  find(key: ServiceKey): Service | undefined {
    return this.byKey.get(tableKey(key));
  }

  /** ip_vs_service_find: the exact port first, then a port-zero (all ports) service. */
  lookup(protocol: number, vaddr: Addr, vport: number): Service | undefined {
    const exact = this.byKey.get(addrTableKey(protocol, vaddr, vport));
    return exact ?? (vport !== 0 ? this.byKey.get(addrTableKey(protocol, vaddr, 0)) : undefined);
  }

  /** The firewall-mark service of this family and mark. */
  lookupFwmark(af: Family, fwmark: number): Service | undefined {
    return this.byKey.get(fwmarkTableKey(af, fwmark));
  }

  /** Whether `addr` is the address of a (protocol, address, port) service. */
  isVirtualAddress(addr: Addr): boolean {
    return this.virtualAddrs.has(addrKey(addr));
  }

  /** Whether addr:port is a real server of some service (a port-0 real server matches every port). */
  isRealServer(addr: Addr, port: number): boolean {
    return this.realServers.has(`${addrKey(addr)}:${port}`) || this.realServers.has(`${addrKey(addr)}:0`);
  }

  add(key: ServiceKey, settings: ServiceSettings): Service {
    const id = tableKey(key);
    // As the kernel: the service lookup comes before the scheduler's ("Service already exists" wins).
    if (this.byKey.has(id)) throw new LvsError(ErrorCodes.SERVICE_EXISTS, 'Service already exists');
    const scheduler = validateService(key, settings);
    const service = new Service(this.nextServiceId++, key, { ...settings }, scheduler, undefined);
    service.schedState = scheduler.initService(service.view, this.env);
    this.byKey.set(id, service);
    this.byServiceId.set(service.id, service);
    this.ordered.push(service);
    if (key.fwmark === 0) this.virtualAddrs.add(addrKey(key.addr));
    return service;
  }

  edit(key: ServiceKey, settings: ServiceSettings): void {
    const service = this.require(key);
    const scheduler = validateService(key, settings);
    const rebind = scheduler !== service.scheduler || settings.flags !== service.settings.flags;
    service.settings = { ...settings };
    if (rebind) {
      service.scheduler = scheduler;
      service.schedState = scheduler.initService(service.view, this.env);
    }
  }

  delete(key: ServiceKey): void {
    const service = this.require(key);
    this.byKey.delete(tableKey(key));
    this.byServiceId.delete(service.id);
    this.ordered.splice(this.ordered.indexOf(service), 1);
    this.retire([service]);
  }

  clear(): void {
    const all = [...this.ordered];
    this.byKey.clear();
    this.byServiceId.clear();
    this.ordered.length = 0;
    this.retire(all);
  }

  /** `runtime`: the state it starts in, set before the scheduler can see it (a server not yet checked). */
  addDest(
    key: ServiceKey,
    addr: Addr,
    port: number,
    settings: DestSettings,
    runtime?: DestRuntimeChange,
  ): Dest {
    const service = this.requireForDest(key);
    validateDest(service, addr, port, settings, this.carried);
    if (findDest(service, addr, port))
      throw new LvsError(ErrorCodes.DEST_EXISTS, 'Destination already exists');
    // ip_vs_new_dest: a real server must be a unicast address.
    if (!isUnicast(addr)) throw invalid('real server address is not unicast');
    if (runtime) validateRuntime(runtime);
    const dest = new Dest(this.nextDestId++, addr, port, { ...settings });
    if (runtime) changeRuntime(dest, runtime);
    // list_add_rcu: the newest real server stands first.
    service.dests.unshift(dest);
    this.realServers.add(`${addrKey(addr)}:${port}`);
    this.rescheduled(service);
    return dest;
  }

  editDest(key: ServiceKey, addr: Addr, port: number, settings: DestSettings): void {
    const service = this.requireForDest(key);
    validateDest(service, addr, port, settings, this.carried);
    const dest = findDest(service, addr, port);
    if (!dest) throw new LvsError(ErrorCodes.NO_DEST, 'No such destination');
    dest.method = settings.method;
    dest.tunnel = tunnelOf(settings);
    dest.configuredWeight = settings.weight;
    applyRuntime(dest);
    dest.uThreshold = settings.uThreshold;
    dest.lThreshold = settings.lThreshold;
    // __ip_vs_update_dest: new thresholds may lift the overload at once.
    if (dest.uThreshold === 0 || dest.activeConns + dest.inactConns < dest.uThreshold)
      dest.overloaded = false;
    this.rescheduled(service);
  }

  /** Runtime state (health, drain, maintenance, the operator's weight): never part of the configuration. */
  setDestRuntime(key: ServiceKey, addr: Addr, port: number, change: DestRuntimeChange): Dest {
    const service = this.requireForDest(key);
    const dest = findDest(service, addr, port);
    if (!dest) throw new LvsError(ErrorCodes.NO_DEST, 'No such destination');
    validateRuntime(change);
    changeRuntime(dest, change);
    this.rescheduled(service);
    return dest;
  }

  deleteDest(key: ServiceKey, addr: Addr, port: number): void {
    const service = this.requireForDest(key);
    const dest = findDest(service, addr, port);
    if (!dest) throw new LvsError(ErrorCodes.NO_DEST, 'No such destination');
    service.dests.splice(service.dests.indexOf(dest), 1);
    this.realServers.remove(`${addrKey(addr)}:${port}`);
    dest.available = false;
    this.rescheduled(service);
    this.listener.destRemoved(service, dest);
  }

  private rescheduled(service: Service): void {
    service.refreshView();
    service.scheduler.updateService?.(service.schedState, service.view);
  }

  private retire(services: readonly Service[]): void {
    for (const service of services) {
      if (service.key.fwmark === 0) this.virtualAddrs.remove(addrKey(service.key.addr));
      for (const dest of service.dests) {
        dest.available = false;
        this.realServers.remove(`${addrKey(dest.addr)}:${dest.port}`);
      }
    }
    this.listener.servicesRemoved(services);
  }

  private require(key: ServiceKey): Service {
    const service = this.find(key);
    if (!service) throw new LvsError(ErrorCodes.NO_SERVICE, 'No such service');
    return service;
  }

  private requireForDest(key: ServiceKey): Service {
    const service = this.find(key);
    if (!service) throw new LvsError(ErrorCodes.SERVICE_NOT_DEFINED, 'Service not defined');
    return service;
  }
}

function findDest(service: Service, addr: Addr, port: number): Dest | undefined {
  return service.dests.find((d) => d.port === port && addrEquals(d.addr, addr));
}

function invalid(why: string): LvsError {
  return new LvsError(ErrorCodes.INVALID, `Invalid operation: ${why}`);
}

function validateService(key: ServiceKey, settings: ServiceSettings): Scheduler {
  if (key.fwmark > 0) {
    if (key.protocol !== 0 || key.port !== 0) throw invalid('fwmark service with protocol or port');
  } else if (key.protocol === 0) {
    throw invalid('service without protocol or fwmark');
  } else if (key.addr.af !== key.af) {
    throw invalid('address family mismatch');
  }
  if (!Number.isInteger(key.port) || key.port < 0 || key.port > 65535) throw invalid('port out of range');
  if (!Number.isInteger(key.fwmark) || key.fwmark < 0 || key.fwmark > 0xffffffff) throw invalid('bad fwmark');
  if (settings.flags & SVC_F_PERSISTENT) {
    const t = settings.timeout;
    if (!Number.isInteger(t) || t < 1 || t > MAX_PERSISTENT_TIMEOUT) throw invalid('persistence timeout');
  }
  const maxPrefix = key.af === 4 ? 32 : 128;
  const prefix = settings.netmaskPrefix;
  // An IPv4 mask of 0.0.0.0 (prefix 0) puts every client in one persistence group; IPv6 needs 1..128.
  const minPrefix = key.af === 4 ? 0 : 1;
  if (!Number.isInteger(prefix) || prefix < minPrefix || prefix > maxPrefix)
    throw invalid('persistence netmask');
  if (settings.flags & SVC_F_ONEPACKET && key.fwmark === 0 && key.protocol !== IPPROTO_UDP) {
    throw invalid('one-packet scheduling is only for UDP');
  }
  if (settings.pe !== null && !PERSISTENCE_ENGINES.has(settings.pe)) {
    throw new LvsError(ErrorCodes.NO_SCHEDULER, 'Scheduler or persistence engine not found');
  }
  const scheduler = findScheduler(settings.scheduler);
  if (!scheduler) throw new LvsError(ErrorCodes.NO_SCHEDULER, 'Scheduler or persistence engine not found');
  return scheduler;
}

const METHOD_OPTIONS: Record<ForwardMethod, string> = {
  masq: 'masquerading (-m)',
  route: "direct routing (-g, ipvsadm's default when no method is given)",
  tunnel: 'tunnelling (-i)',
  local: 'local delivery',
};

const ADMIN_STATES = new Set<AdminState>(['ready', 'drain', 'maint']);
const HEALTH_STATES = new Set<HealthState>(['up', 'down', 'down-inhibited']);

function changeRuntime(dest: Dest, change: DestRuntimeChange): void {
  if (change.admin !== undefined) dest.admin = change.admin;
  if (change.operatorWeight !== undefined) dest.operatorWeight = change.operatorWeight;
  if (change.health !== undefined) dest.health = change.health;
  if (change.dynamicWeight !== undefined) dest.dynamicWeight = change.dynamicWeight;
  applyRuntime(dest);
}

function validateRuntime(change: DestRuntimeChange): void {
  const weightOk = (w: unknown) =>
    w === null || (Number.isInteger(w) && (w as number) >= 0 && (w as number) <= MAX_WEIGHT);
  if (change.admin !== undefined && !ADMIN_STATES.has(change.admin)) throw invalid('admin state');
  if (change.operatorWeight !== undefined && !weightOk(change.operatorWeight)) throw invalid('weight');
  if (change.health !== undefined && !HEALTH_STATES.has(change.health)) throw invalid('health state');
  if (change.dynamicWeight !== undefined && !weightOk(change.dynamicWeight)) throw invalid('weight');
}

/** The methods a real server may ask for here: the core's, less what the data plane does not deliver. */
function usableMethods(carried: ForwardingCapability | null): ForwardMethod[] {
  return forwardingMethodNames().filter((m) => carried === null || carried.methods.includes(m));
}

function validateDest(
  service: Service,
  addr: Addr,
  port: number,
  settings: DestSettings,
  carried: ForwardingCapability | null,
): void {
  // Refused rather than accepted and then dropped: an ipvsadm script replayed here must fail loudly.
  const usable = usableMethods(carried);
  if (!usable.includes(settings.method)) {
    const instead = `use ${usable.map((m) => METHOD_OPTIONS[m]).join(' or ')}`;
    const method = METHOD_OPTIONS[settings.method];
    const message =
      forwardingMethodId(settings.method) < 0 || carried === null
        ? `lvsd cannot forward by ${method} yet; ${instead}`
        : `lvsd's ${carried.dataplane} data plane cannot forward by ${method}; ` +
          (carried.elsewhere[settings.method]
            ? `${carried.elsewhere[settings.method]}, or ${instead}`
            : instead);
    throw new LvsError(ErrorCodes.METHOD_UNSUPPORTED, message);
  }
  if (settings.method === 'tunnel') validateTunnel(service, addr, settings);
  const { weight, uThreshold, lThreshold } = settings;
  if (!Number.isInteger(weight) || weight < 0 || weight > MAX_WEIGHT) throw invalid('weight');
  if (!Number.isInteger(uThreshold) || uThreshold < 0 || !Number.isInteger(lThreshold) || lThreshold < 0) {
    throw invalid('thresholds');
  }
  // ip_vs_add_dest / ip_vs_edit_dest: checked before the real server is looked up; an upper
  // threshold of 0 (none) still refuses any lower one.
  if (lThreshold > uThreshold)
    throw new LvsError(ErrorCodes.OUT_OF_RANGE, 'lower threshold above the upper threshold');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid('port out of range');
  if (addr.af !== service.key.af && settings.method !== 'tunnel') {
    throw new LvsError(ErrorCodes.AF_NOT_SUPPORTED, 'Operation not supported with specified address family');
  }
}

/**
 * lvsd tunnels IPv4 in IPv4, with the ipip type (ipvsadm's default), gre or gue; remote checksum
 * offload and IPv6 are refused. Options a type does not take are refused as ipvsadm refuses them,
 * so that a control client that sends them gets no silent default.
 */
function validateTunnel(service: Service, addr: Addr, settings: DestSettings): void {
  const tunnel = tunnelOf(settings)!;
  if (tunnel.csum === 'remcsum' && tunnel.type === 'gue') {
    throw new LvsError(
      ErrorCodes.METHOD_UNSUPPORTED,
      'lvsd cannot tunnel with --tun-remcsum (remote checksum offload) yet; use --tun-csum or --tun-nocsum',
    );
  }
  if (tunnel.type === 'gue' && tunnel.port === 0)
    throw new LvsError(ErrorCodes.INVALID, 'a gue tunnel needs --tun-port');
  if (tunnel.type !== 'gue' && tunnel.port !== 0)
    throw new LvsError(ErrorCodes.INVALID, `a ${tunnel.type} tunnel takes no --tun-port`);
  if (tunnel.type === 'ipip' && tunnel.csum !== 'nocsum')
    throw new LvsError(ErrorCodes.INVALID, 'an ipip tunnel takes no checksum option');
  if (tunnel.type === 'gre' && tunnel.csum === 'remcsum')
    throw new LvsError(
      ErrorCodes.INVALID,
      'a gre tunnel takes --tun-csum or --tun-nocsum, not --tun-remcsum',
    );
  if (addr.af !== 4 || service.key.af !== 4) {
    throw new LvsError(
      ErrorCodes.METHOD_UNSUPPORTED,
      'lvsd tunnels IPv4 in IPv4 only; use masquerading (-m)',
    );
  }
}

/** Counts per key, for "is any service using it" questions on the packet path. */
class RefCount {
  private readonly counts = new Map<string, number>();

  add(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  remove(key: string): void {
    const n = this.counts.get(key)! - 1;
    if (n === 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }
}
