// The director: the service table, the connection table and the rate estimator, driven by
// control operations and by packets. Pure: the clock and randomness are injected.

import type { Clock } from './clock.js';
import { ConnTable } from './conn/table.js';
import { Timeouts } from './conn/timeouts.js';
import { Estimator } from './estimator.js';
import { ErrorCodes, LvsError } from './errors.js';
import type { Dest, Service, Stats } from './model.js';
import type { ControlOp, DestSnapshot, ServiceSnapshot, Snapshot, StatsSnapshot } from './ops.js';
import { ServiceTable } from './services.js';
import './sched/index.js';

export interface DirectorOptions {
  clock: Clock;
  /** Uniform in [0, 1); defaults to Math.random. */
  random?: () => number;
  /** Most connections (and persistence templates) tracked at once. */
  connCapacity?: number;
  /** log2 of the hash buckets reported as "size=" (IPVS's conn_tab_bits, default 12). */
  connHashBits?: number;
}

export class Director {
  readonly clock: Clock;
  readonly services: ServiceTable;
  readonly conns: ConnTable;
  readonly timeouts = new Timeouts();
  private readonly estimator = new Estimator();
  private readonly connHashBits: number;

  constructor(options: DirectorOptions) {
    this.clock = options.clock;
    this.connHashBits = options.connHashBits ?? 12;
    const random = options.random ?? Math.random;
    this.conns = new ConnTable({
      capacity: options.connCapacity ?? 1 << 20,
      clock: this.clock,
      timeouts: this.timeouts,
    });
    this.services = new ServiceTable(
      { clock: this.clock, random },
      {
        serviceRemoved: (service) => {
          this.conns.dropService(service.id);
          this.estimator.remove(service.stats);
          for (const dest of service.dests) this.estimator.remove(dest.stats);
        },
        destRemoved: (_service, dest) => {
          this.conns.dropDest(dest);
          this.estimator.remove(dest.stats);
        },
      },
    );
  }

  execute(op: ControlOp): void {
    switch (op.op) {
      case 'add-service': {
        const service = this.services.add(op.key, op.settings);
        this.estimator.add(service.stats, service);
        return;
      }
      case 'edit-service':
        return this.services.edit(op.key, op.settings);
      case 'delete-service':
        return this.services.delete(op.key);
      case 'clear':
        return this.services.clear();
      case 'add-dest': {
        const dest = this.services.addDest(op.key, op.addr, op.port, op.settings);
        this.estimator.add(dest.stats, dest);
        return;
      }
      case 'edit-dest':
        return this.services.editDest(op.key, op.addr, op.port, op.settings);
      case 'delete-dest':
        return this.services.deleteDest(op.key, op.addr, op.port);
      case 'zero':
        return this.zero(op);
      case 'set-timeouts': {
        const { tcp, tcpfin, udp } = op.timeouts;
        if (![tcp, tcpfin, udp].every((t) => Number.isInteger(t) && t >= 0 && t <= 0x7fffffff / 1000)) {
          throw new LvsError(ErrorCodes.INVALID, 'Invalid operation: timeout out of range');
        }
        this.timeouts.setIpvs(tcp, tcpfin, udp);
        return;
      }
    }
  }

  private zero(op: Extract<ControlOp, { op: 'zero' }>): void {
    const targets = op.key ? [this.services.find(op.key)] : this.services.services;
    if (targets[0] === undefined && op.key) throw new LvsError(ErrorCodes.NO_SERVICE, 'No such service');
    for (const service of targets as Service[]) {
      this.zeroStats(service.stats, service);
      for (const dest of service.dests) this.zeroStats(dest.stats, dest);
    }
  }

  private zeroStats(stats: Stats, owner: Service | Dest): void {
    stats.reset();
    this.estimator.reset(stats);
    owner.rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
  }

  /** Housekeeping: expire connections due by now, sample the rate estimator. */
  tick(): void {
    this.conns.advance();
    this.estimator.tick(this.clock.now());
  }

  snapshot(options: { connections: boolean }): Snapshot {
    const snapshot: Snapshot = {
      connTableBuckets: 1 << this.connHashBits,
      timeouts: this.timeouts.ipvs(),
      services: this.services.services.map(serviceSnapshot),
    };
    if (options.connections) snapshot.connections = [...this.conns.entries()];
    return snapshot;
  }
}

function statsSnapshot(stats: Stats): StatsSnapshot {
  const { conns, inPkts, outPkts, inBytes, outBytes } = stats;
  return { conns, inPkts, outPkts, inBytes, outBytes };
}

function serviceSnapshot(service: Service): ServiceSnapshot {
  return {
    key: service.key,
    settings: { ...service.settings },
    stats: statsSnapshot(service.stats),
    rates: { ...service.rates },
    dests: service.dests.map(destSnapshot),
  };
}

function destSnapshot(dest: Dest): DestSnapshot {
  return {
    addr: dest.addr,
    port: dest.port,
    method: dest.method,
    weight: dest.weight,
    uThreshold: dest.uThreshold,
    lThreshold: dest.lThreshold,
    activeConns: dest.activeConns,
    inactConns: dest.inactConns,
    persistConns: dest.persistConns,
    stats: statsSnapshot(dest.stats),
    rates: { ...dest.rates },
  };
}
