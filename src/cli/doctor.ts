// `lvsadm doctor [--json]`: collects what the director sees (lvsd's counters and connection table
// over the control socket; this host's sysctls, routes, neighbours, nftables ruleset and legacy
// iptables; on the packet plane, its netdev table and interfaces; a probe to each real server's
// port, TCP or UDP: src/cli/doctor-probe.ts), hands the facts to the pure diagnosis
// (src/core/doctor.ts) and prints its verdicts. Exit 0: no problem; 1: problems found; 2: lvsd or
// the host unreadable.

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import {
  addressesToRoute,
  diagnose,
  hasIPv6,
  probeKey,
  probeTargets,
  sysctlsWanted,
} from '../core/doctor.js';
import type {
  DoctorFacts,
  DoctorReport,
  Finding,
  LinkFact,
  NeighbourFact,
  PacketPlaneFacts,
  ProbeFact,
  ProbeTarget,
  RouteFact,
} from '../core/doctor.js';
import type { Snapshot } from '../core/ops.js';
import type { ControlApi } from '../control/api.js';
import { parseIptablesSave, parseNetdevIngress, parseNftRuleset } from './doctor-firewall.js';
import { probeAll } from './doctor-probe.js';

/** How long a probe waits for an answer; all probes run at once, so the doctor ends within 5 s. */
export const PROBE_TIMEOUT_MS = 1500;
const COMMAND_TIMEOUT_MS = 2000;
/** lvsd's device, and the nft table of its packet plane's ingress drop (src/dataplane/host.ts). */
const TUN_DEVICE = 'lvs0';
const NETDEV_TABLE = 'lvsd';

/** What the doctor reads of the host: the seam for tests, with the system's implementation below. */
export interface HostReader {
  sysctl(path: string): Promise<string | null>;
  routeGet(addr: string): Promise<RouteFact | null>;
  neighbours(): Promise<NeighbourFact[]>;
  /** `nft -j list ruleset`'s output, or null without nft. */
  nftRuleset(): Promise<string | null>;
  /** `nft list table netdev NAME`'s output (text: nft's JSON leaves out a chain's device), or null without it. */
  netdevTable(name: string): Promise<string | null>;
  /** `ip -j link`, by interface name. */
  links(): Promise<Map<string, LinkFact>>;
  /** `iptables-legacy-save`'s (or ip6tables-legacy-save's) output; null when the legacy tables are not loaded. */
  legacyRules(family: 4 | 6): Promise<string | null>;
  /** Every probe at once, each within timeoutMs; the facts in the targets' order. */
  probe(targets: readonly ProbeTarget[], timeoutMs: number): Promise<ProbeFact[]>;
}

function run(program: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(program, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) =>
      resolve(err ? null : stdout),
    );
  });
}

export const systemHost: HostReader = {
  async sysctl(path) {
    try {
      return (await readFile(`/proc/sys/${path}`, 'utf8')).trim();
    } catch {
      return null;
    }
  },
  async routeGet(addr) {
    const out = await run('ip', ['-j', 'route', 'get', addr]);
    const [route] = out ? (JSON.parse(out) as Array<Record<string, unknown>>) : [];
    if (!route || typeof route.dev !== 'string') return null;
    return {
      dev: route.dev,
      ...(typeof route.gateway === 'string' ? { gateway: route.gateway } : {}),
      ...(typeof route.prefsrc === 'string' ? { prefsrc: route.prefsrc } : {}),
      ...(typeof route.type === 'string' ? { type: route.type } : {}),
      ...(typeof route.protocol === 'string' ? { protocol: route.protocol } : {}),
    };
  },
  async neighbours() {
    const out = await run('ip', ['-j', 'neigh', 'show']);
    const rows = out ? (JSON.parse(out) as Array<Record<string, unknown>>) : [];
    return rows
      .filter((n) => typeof n.dst === 'string' && typeof n.dev === 'string')
      .map((n) => ({
        dst: n.dst as string,
        dev: n.dev as string,
        state: Array.isArray(n.state) ? n.state.map(String) : [],
      }));
  },
  nftRuleset: () => run('nft', ['-j', 'list', 'ruleset']),
  netdevTable: (name) => run('nft', ['list', 'table', 'netdev', name]),
  async links() {
    const out = await run('ip', ['-j', 'link', 'show']);
    const rows = out ? (JSON.parse(out) as Array<Record<string, unknown>>) : [];
    const links = new Map<string, LinkFact>();
    for (const row of rows) {
      if (typeof row.ifname !== 'string') continue;
      const flags = Array.isArray(row.flags) ? row.flags.map(String) : [];
      const state = typeof row.operstate === 'string' ? row.operstate : 'UNKNOWN';
      links.set(row.ifname, { up: flags.includes('UP'), carrier: flags.includes('LOWER_UP'), state });
    }
    return links;
  },
  async legacyRules(family) {
    // Only tables the kernel has: iptables-legacy-save would load the modules of the rest.
    const names = await readFile(`/proc/net/${family === 4 ? 'ip' : 'ip6'}_tables_names`, 'utf8').catch(
      () => '',
    );
    if (names.trim() === '') return null;
    return run(family === 4 ? 'iptables-legacy-save' : 'ip6tables-legacy-save', []);
  },
  probe: probeAll,
};

/** Everything the diagnosis needs, read at once (the probes in parallel). */
export async function collectFacts(api: ControlApi, host: HostReader): Promise<DoctorFacts> {
  const snapshot: Snapshot = await api.snapshot({ connections: true });
  const dataplane = snapshot.dataPath.plane ?? null;
  const addrs = addressesToRoute(snapshot);
  const targets = probeTargets(snapshot);
  const ipv6 = hasIPv6(snapshot);
  const [routes, neighbours, ruleset, legacy4, legacy6, probes, packetPlane] = await Promise.all([
    Promise.all(addrs.map(async (a) => [a, await host.routeGet(a)] as const)),
    host.neighbours(),
    dataplane ? host.nftRuleset() : Promise.resolve(null),
    dataplane ? host.legacyRules(4) : Promise.resolve(null),
    dataplane && ipv6 ? host.legacyRules(6) : Promise.resolve(null),
    host.probe(targets, PROBE_TIMEOUT_MS),
    dataplane === 'packet' ? packetPlaneFacts(snapshot, host) : Promise.resolve(undefined),
  ]);
  const devices = [...new Set([TUN_DEVICE, ...routes.flatMap(([, r]) => (r ? [r.dev] : []))])];
  const paths = sysctlsWanted(devices, ipv6);
  const values = await Promise.all(paths.map((p) => host.sysctl(p)));
  return {
    snapshot,
    dataplane,
    tunDevice: TUN_DEVICE,
    ...(packetPlane && { packetPlane }),
    sysctls: Object.fromEntries(paths.map((p, i) => [p, values[i]!])),
    routes: Object.fromEntries(routes),
    neighbours,
    probes: Object.fromEntries(targets.map((t, i) => [probeKey(t), probes[i]!])),
    firewall: [
      ...(ruleset ? parseNftRuleset(ruleset) : []),
      ...(legacy4 ? parseIptablesSave(legacy4, 4) : []),
      ...(legacy6 ? parseIptablesSave(legacy6, 6) : []),
    ],
  };
}

async function packetPlaneFacts(snapshot: Snapshot, host: HostReader): Promise<PacketPlaneFacts> {
  const [table, links] = await Promise.all([host.netdevTable(NETDEV_TABLE), host.links()]);
  const interfaces = snapshot.dataPath.interfaces ?? [];
  return {
    netdevIngress: table === null ? null : parseNetdevIngress(table),
    links: Object.fromEntries(interfaces.map((dev) => [dev, links.get(dev) ?? null])),
  };
}

const LABEL = { ok: 'ok', warning: 'WARNING', problem: 'PROBLEM' } as const;

function findingLines(finding: Finding, indent: string): string[] {
  return [
    `${indent}${LABEL[finding.severity]} [${finding.check}] ${finding.message}`,
    ...finding.evidence.map((e) => `${indent}    ${e}`),
  ];
}

/** The report as an operator reads it. */
export function formatDoctorReport(report: DoctorReport): string {
  const count = (sev: 'problem' | 'warning') =>
    report.host.filter((f) => f.severity === sev).length +
    report.services.reduce(
      (n, s) =>
        n +
        s.findings.filter((f) => f.severity === sev).length +
        s.dests.reduce((m, d) => m + d.findings.filter((f) => f.severity === sev).length, 0),
      0,
    );
  const lines = [
    `lvsd doctor: ${report.verdict === 'ok' ? 'no problem found' : `${count('problem')} problems, ${count('warning')} warnings`}`,
    report.dataplane ? `host (the ${report.dataplane} data plane):` : `host: ${report.hostChecked}`,
  ];
  if (report.dataplane) {
    if (report.host.length === 0) lines.push(`  ok (${report.hostChecked})`);
    for (const f of report.host) lines.push(...findingLines(f, '  '));
  }
  if (report.services.length === 0) lines.push('no services');
  for (const svc of report.services) {
    lines.push(`${svc.service}  ${LABEL[svc.verdict]}`);
    for (const f of svc.findings) lines.push(...findingLines(f, '  '));
    for (const d of svc.dests) {
      lines.push(`  -> ${d.dest}  ${LABEL[d.verdict]}`);
      if (d.findings.length === 0) lines.push(...d.evidence.map((e) => `       ${e}`));
      for (const f of d.findings) lines.push(...findingLines(f, '       '));
    }
  }
  return lines.join('\n') + '\n';
}

export const DOCTOR_USAGE = 'Usage: lvsadm doctor [--json]';

/** `lvsadm doctor`: prints the report; resolves to the exit status (0 no problem, 1 problems). */
export async function runDoctor(
  args: readonly string[],
  io: { api: ControlApi; stdout(text: string): void; stderr(text: string): void; host?: HostReader },
): Promise<number> {
  const json = args.length === 1 && args[0] === '--json';
  if (args.length > 1 || (args.length === 1 && !json)) {
    io.stderr(`${DOCTOR_USAGE}\n`);
    return 2;
  }
  const facts = await collectFacts(io.api, io.host ?? systemHost);
  const report = diagnose(facts);
  io.stdout(json ? JSON.stringify(report, null, 2) + '\n' : formatDoctorReport(report));
  return report.verdict === 'problem' ? 1 : 0;
}
