// Hand-built snapshots for the /metrics tests: every kind of service key node_exporter and lvsd
// label differently (IPv4, compressed IPv6, IPv4-mapped, fwmark of both families, SCTP).

import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import { SVC_F_PERSISTENT } from '../../src/core/model.js';
import type { DestChecks, Snapshot, SyncDaemonStats, SyncDaemonStatus } from '../../src/core/ops.js';
import {
  addrKey,
  dataPath,
  dest,
  ip,
  markKey,
  rates,
  service,
  snapshot,
  stats,
} from '../helpers/snapshots.js';

export { addrKey, dest, ip, markKey, service, snapshot } from '../helpers/snapshots.js';

/** 2^53 + 2: a counter that a double still holds exactly, past Number.MAX_SAFE_INTEGER. */
export const BIG_COUNTER = 2 ** 53 + 2;

/** What a keepalived.conf's checkers saw of a real server: one passing HTTP_GET, one TCP_CHECK that failed once. */
export const GOLDEN_CHECKS: DestChecks = {
  alive: true,
  checkers: [
    {
      kind: 'HTTP_GET',
      up: true,
      last: { ok: true, code: 'ok', reason: 'HTTP 200', durationMs: 12, time: 1_764_590_400_000 },
    },
    {
      kind: 'TCP_CHECK',
      up: true,
      last: {
        ok: false,
        code: 'timeout',
        reason: 'no answer in 3 s',
        durationMs: 3000,
        time: 1_764_590_401_500,
      },
    },
  ],
  lastChange: { up: true, reason: 'HTTP_GET passed', time: 1_764_590_000_000 },
};

function syncDaemon(state: SyncDaemonStatus['state'], stats: SyncDaemonStats): SyncDaemonStatus {
  const group = { mcastGroup: ip('224.0.0.81'), mcastPort: 8848, mcastTtl: 1 };
  return { state, mcastInterface: 'eth1', syncId: 7, syncMaxLen: 1472, ...group, stats };
}

/** A master and a backup sync daemon, both running in lvsd (with counters). */
export const GOLDEN_SYNC_DAEMONS: SyncDaemonStatus[] = [
  syncDaemon('master', {
    sent: 420,
    received: 0,
    dropped: 3,
    droppedBy: { queueFull: 2, sendFailed: 1, invalid: 0 },
    conns: 9000,
    lastMessageAgeMs: 250,
    fullSync: { requested: 3, completed: 2, entries: 18_000, active: true, pageErrors: 0 },
    peerMasters: { messages: 5, splitBrains: 1, active: true, last: '198.18.5.2', lastAgeMs: 900 },
    joins: { heard: 3, served: 2 },
  }),
  syncDaemon('backup', {
    sent: 0,
    received: 12,
    dropped: 1,
    droppedBy: { invalid: 1 },
    conns: 30,
    lastMessageAgeMs: null,
    joins: { sent: 2 },
  }),
];

/** The golden snapshot (test/http/metrics.golden.txt). Services in add order, as the director keeps them. */
export const GOLDEN_SNAPSHOT: Snapshot = snapshot(
  [
    service(
      markKey(23, 6),
      // An IPv4 real server of an IPv6 fwmark service: its node_ipvs_* row coincides with the
      // IPv4 service's below, and node_exporter sums the two.
      [dest('198.18.1.13', 0, { weight: 2, activeConns: 1 })],
      { settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 128, pe: null } },
    ),
    service(
      addrKey(IPPROTO_TCP, '198.18.0.1', 80),
      [
        // Drained by the operator: configured 4, effective 0, the operator's weight 2 kept for later.
        dest('198.18.1.12', 80, {
          weight: 0,
          configuredWeight: 4,
          admin: 'drain',
          operatorWeight: 2,
          activeConns: 2,
          inactConns: 5,
          persistConns: 1,
          stats: stats(40, 400, 380, 40_000, BIG_COUNTER),
          rates: rates(2, 20, 19, 2000, 150_000),
        }),
        dest('198.18.1.11', 80, {
          weight: 3,
          activeConns: 7,
          inactConns: 1,
          persistConns: 2,
          stats: stats(120, 1200, 1100, 120_000, 9_000_000),
          rates: rates(6, 60, 55, 6000, 450_000),
          checks: GOLDEN_CHECKS,
        }),
      ],
      {
        settings: { scheduler: 'rr', flags: SVC_F_PERSISTENT, timeout: 300, netmaskPrefix: 32, pe: null },
        stats: stats(160, 1600, 1480, 160_000, BIG_COUNTER + 9_000_000),
        rates: rates(8, 80, 74, 8000, 600_000),
      },
    ),
    service(
      addrKey(IPPROTO_UDP, '2001:db8:0:0:0:0:0:1', 53),
      [
        dest('2001:db8:0:1:0:0:0:11', 53, {
          stats: stats(3, 3, 3, 180, 300),
          dynamicWeight: 7,
          weight: 7,
          configuredWeight: 1,
        }),
        // Failed, not scheduled: gone from node_ipvs_backend_* as from IPVS after DELDEST.
        dest('2001:db8:0:1:0:0:0:12', 53, {
          health: 'down',
          scheduled: false,
          weight: 0,
          configuredWeight: 1,
        }),
      ],
      { stats: stats(3, 3, 3, 180, 300) },
    ),
    // Failed with inhibit_on_failure: listed at weight 0.
    service(markKey(23, 4), [
      dest('198.18.1.13', 0, {
        activeConns: 4,
        inactConns: 2,
        health: 'down-inhibited',
        weight: 0,
        configuredWeight: 1,
      }),
    ]),
    // SCTP: counted in node_ipvs_*_total (the kernel's totals), absent from node_ipvs_backend_*.
    service(addrKey(IPPROTO_SCTP, '198.18.0.1', 9), [dest('198.18.1.11', 9, { weight: 5 })], {
      stats: stats(1, 10, 10, 1000, 1001),
    }),
    service(addrKey(IPPROTO_TCP, '::ffff:198.18.0.5', 443), [dest('::ffff:198.18.1.21', 8443)]),
  ],
  {
    connTable: {
      capacity: 65536,
      entries: 21,
      templates: 3,
      refusedFull: 1,
      earlyDrops: 4,
      defense: {
        dropEntry: 1,
        secureTcp: 2,
        thresholdPercent: 90,
        earlyDrop: true,
        droppedEntries: 5,
        secureTcpActivations: 1,
        synProxy: 2,
        synProxyThreshold: 1000,
        cookiesSent: 120000,
        cookiesAccepted: 40,
        cookiesRejected: 3,
        synsShed: 5000,
        synProxyActivations: 1,
      },
      expiry: { expireNodestConn: false, expireQuiescentTemplate: false },
    },
    dataPath: dataPath({
      forwardedIn: 3213,
      forwardedOut: 2903,
      icmpSent: 2,
      drops: { 'table-full': 1, 'no-service': 7 },
      passed: { 'not-a-service': 12 },
      device: {
        rxPackets: 6130,
        rxBytes: 9_100_000,
        txPackets: 6116,
        txBytes: 9_090_000,
        drops: {
          verdict: 8,
          writeFailed: 1,
          exception: 0,
          queueFull: 5,
          noNeighbour: 2,
          noRoute: 0,
          badFrame: 1,
        },
      },
    }),
  },
);
