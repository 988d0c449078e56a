// A stand-in for the core director behind the worker: a service list for the control path and a
// UDP reflector for the packet path (swapping addresses and ports leaves every checksum valid).

import { ErrorCodes, LvsError } from '../../src/core/errors.js';
import type {
  ConnPage,
  ConnRecord,
  ControlOp,
  ImportResult,
  ServiceSnapshot,
  Snapshot,
} from '../../src/core/ops.js';
import type { SyncConn } from '../../src/core/sync/conn.js';
import type { SyncPage } from '../../src/core/sync/source.js';
import type { PacketDirector } from '../../src/dataplane/messages.js';

const VNET = 10;

export class Director implements PacketDirector {
  private readonly services: ServiceSnapshot[] = [];
  private ticks = 0;
  readonly pending: Uint8Array[] = [];
  readonly nextHop = null;
  readonly replyToSender = false;
  receiveOverflowed(): void {}

  execute(op: ControlOp): void {
    if (op.op === 'add-service') {
      if (this.services.some((s) => s.key.port === op.key.port)) {
        throw new LvsError(ErrorCodes.SERVICE_EXISTS, 'Service already exists');
      }
      // u64 counters no JS number holds, to show they cross the thread boundary exactly.
      const stats = {
        conns: '18446744073709551615',
        inPkts: '9007199254740993',
        outPkts: '0',
        inBytes: '0',
        outBytes: '0',
      };
      const rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
      this.services.push({ key: op.key, settings: op.settings, stats, rates, dests: [] });
    } else if (op.op === 'delete-service') {
      const i = this.services.findIndex((s) => s.key.port === op.key.port);
      if (i < 0) throw new LvsError(ErrorCodes.NO_SERVICE, 'No such service');
      this.services.splice(i, 1);
    } else if (op.op === 'set-timeouts') {
      // How a test makes the worker die under the engine.
      process.exit(3);
    } else {
      throw new Error(`stub director: ${op.op} unsupported`);
    }
  }

  snapshot(): Snapshot {
    // The tick count rides in connTableBuckets so a test can see housekeeping happen.
    return {
      connTableBuckets: this.ticks,
      timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
      services: this.services,
      dataPath: { forwardedIn: 0, forwardedOut: 0, icmpSent: 0, drops: {}, passed: {} },
    };
  }

  connections(): ConnPage {
    return { entries: [], next: -1 };
  }

  process(buf: Uint8Array, offset: number, length: number): number {
    const ip = offset + VNET;
    if (length < VNET + 28 || buf[ip]! >> 4 !== 4 || buf[ip + 9] !== 17) return 0;
    const l4 = ip + (buf[ip]! & 15) * 4;
    swap(buf, ip + 12, ip + 16, 4);
    swap(buf, l4, l4 + 2, 2);
    return length;
  }

  tick(): void {
    this.ticks++;
  }

  // The stub forwards by reflection only: it has no tunnels to route.
  setRealServerRoute(): void {}

  // The stub has no connections: nothing to sync, nothing to hold.
  startSyncSource(): void {}

  stopSyncSource(): void {}

  takeSyncConns(): SyncConn[] {
    return [];
  }

  syncPage(): SyncPage {
    return { conns: [], next: -1 };
  }

  importSynced(): ImportResult {
    return { imported: 0, refreshed: 0, skipped: { noService: 0, noDest: 0, tableFull: 0, present: 0 } };
  }

  exportConnections(): ConnRecord[] {
    return [];
  }

  importConnections(records: readonly ConnRecord[]): ImportResult {
    const result = this.importSynced();
    result.skipped.noService = records.length;
    return result;
  }
}

function swap(buf: Uint8Array, a: number, b: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const t = buf[a + i]!;
    buf[a + i] = buf[b + i]!;
    buf[b + i] = t;
  }
}
