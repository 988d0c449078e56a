// `lvsadm doctor [--json]`: collects what the director sees (lvsd's counters and connection table
// over the control socket; this host's sysctls, routes, neighbours and nftables ruleset; a TCP
// probe to each real server's port), hands the facts to the pure diagnosis (src/core/doctor.ts)
// and prints its verdicts. Exit 0: no problem; 1: problems found; 2: lvsd or the host unreadable.

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { addressesToRoute, destName, diagnose, probeTarget, sysctlsWanted } from '../core/doctor.js';
import type {
  DoctorFacts,
  DoctorReport,
  FirewallChain,
  FirewallRule,
  FlowFact,
  Finding,
  NeighbourFact,
  ProbeFact,
  RouteFact,
} from '../core/doctor.js';
import { formatAddr } from '../core/inet.js';
import type { Snapshot } from '../core/ops.js';
import type { ControlApi } from '../control/api.js';

/** How long a probe waits for a SYN-ACK; all probes run at once, so the doctor ends within 5 s. */
export const PROBE_TIMEOUT_MS = 1500;
const COMMAND_TIMEOUT_MS = 2000;
/** lvsd's device and its own nftables table (src/dataplane/host.ts), left out of the firewall check. */
const TUN_DEVICE = 'lvs0';
const LVSD_TABLE = { family: 'inet', name: 'lvsd' };

/** What the doctor reads of the host: the seam for tests, with the system's implementation below. */
export interface HostReader {
  sysctl(path: string): Promise<string | null>;
  routeGet(addr: string): Promise<RouteFact | null>;
  neighbours(): Promise<NeighbourFact[]>;
  /** `nft -j list ruleset`'s output, or null without nft. */
  nftRuleset(): Promise<string | null>;
  probeTcp(addr: string, port: number, timeoutMs: number): Promise<ProbeFact>;
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
  probeTcp(addr, port, timeoutMs) {
    return new Promise((resolve) => {
      const started = performance.now();
      const ms = () => Math.round(performance.now() - started);
      const socket = net.connect({ host: addr, port });
      const done = (fact: ProbeFact) => {
        socket.destroy();
        clearTimeout(timer);
        resolve(fact);
      };
      const timer = setTimeout(() => done({ result: 'timeout', ms: timeoutMs }), timeoutMs);
      socket.once('connect', () => done({ result: 'open', ms: ms() }));
      socket.once('error', (err: NodeJS.ErrnoException) =>
        done(err.code === 'ECONNREFUSED' ? { result: 'refused' } : { result: 'error', message: err.message }),
      );
    });
  },
};

type Json = Record<string, unknown>;
const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };

/** The right-hand side of a match as values, or null when it is not a plain value, prefix or set. */
function matchValues(right: unknown): FirewallRule['matches'][number]['values'] | null {
  const one = (v: unknown): FirewallRule['matches'][number]['values'][number] | null => {
    if (typeof v === 'string' || typeof v === 'number') return v;
    const prefix = (v as Json | null)?.prefix as Json | undefined;
    if (prefix && typeof prefix.addr === 'string' && typeof prefix.len === 'number')
      return { prefix: prefix.addr, len: prefix.len };
    return null;
  };
  const set = (right as Json | null)?.set;
  const items = Array.isArray(set) ? set : Array.isArray(right) ? right : [right];
  const values = items.map(one);
  return values.every((v) => v !== null) ? (values as FirewallRule['matches'][number]['values']) : null;
}

/** The flow field a match's left-hand side reads, or null for one the doctor does not follow. */
function matchField(left: Json): keyof FlowFact | null {
  const payload = left.payload as Json | undefined;
  if (payload) {
    if (
      (payload.protocol === 'ip' || payload.protocol === 'ip6') &&
      (payload.field === 'saddr' || payload.field === 'daddr')
    )
      return payload.field;
    if (
      ['tcp', 'udp', 'th', 'sctp'].includes(String(payload.protocol)) &&
      (payload.field === 'sport' || payload.field === 'dport')
    )
      return payload.field;
    return null;
  }
  const meta = left.meta as Json | undefined;
  if (meta?.key === 'l4proto') return 'protocol';
  const ct = left.ct as Json | undefined;
  if (ct?.key === 'state') return 'ctstate';
  return null;
}

/** A match's left side as nft lists it: "ip daddr", "tcp dport", "meta iifname", "ct state". */
function leftText(left: Json): string {
  const [kind] = Object.keys(left);
  const value = left[kind!] as Json | null;
  if (kind === 'payload') return `${String(value?.protocol)} ${String(value?.field)}`;
  if (kind === 'meta' || kind === 'ct') return `${kind} ${String(value?.key)}`;
  return String(kind);
}

function rightText(right: unknown): string {
  if (typeof right === 'string' || typeof right === 'number') return String(right);
  if (Array.isArray(right)) return right.map(rightText).join(',');
  const r = right as Json | null;
  if (r?.prefix) return `${String((r.prefix as Json).addr)}/${String((r.prefix as Json).len)}`;
  if (Array.isArray(r?.set)) return `{ ${r.set.map(rightText).join(', ')} }`;
  return JSON.stringify(right);
}

function parseRule(expr: Json[], chain: string): FirewallRule {
  const rule: FirewallRule = { chain, hook: '', text: '', matches: [], opaque: false, verdict: 'continue' };
  const words: string[] = [];
  for (const e of expr) {
    const [kind] = Object.keys(e);
    if (kind === 'match') {
      const m = e.match as Json;
      const field = matchField(m.left as Json);
      const values = matchValues(m.right);
      // A port match on tcp/udp also says which protocol: 'tcp dport 80' implies l4proto tcp.
      const protocol = ((m.left as Json).payload as Json | undefined)?.protocol;
      if (field && values && (m.op === '==' || m.op === 'in')) {
        const mapped = field === 'protocol' ? values.map((v) => PROTOCOLS[String(v)] ?? v) : values;
        rule.matches.push({ field, values: mapped });
        if ((field === 'sport' || field === 'dport') && typeof protocol === 'string' && PROTOCOLS[protocol])
          rule.matches.push({ field: 'protocol', values: [PROTOCOLS[protocol]!] });
      } else {
        rule.opaque = true;
      }
      const op = m.op === '==' || m.op === 'in' ? '' : ` ${String(m.op)}`;
      words.push(`${leftText(m.left as Json)}${op} ${rightText(m.right)}`);
    } else if (kind === 'accept' || kind === 'drop') {
      rule.verdict = kind;
      words.push(kind);
    } else if (kind === 'reject') {
      rule.verdict = 'drop';
      words.push('reject');
    } else if (kind === 'counter' || kind === 'log' || kind === 'limit' || kind === 'comment') {
      continue;
    } else {
      // jump, goto, return, queue, mangle, nat...: the doctor does not follow them.
      rule.verdict = 'unknown';
      words.push(String(kind));
    }
  }
  rule.text = words.join(' ');
  return rule;
}

/** nft's JSON ruleset → the chains on the hooks lvsd's packets cross (prerouting, forward), lvsd's own table left out. */
export function parseNftRuleset(text: string): FirewallChain[] {
  let items: Json[];
  try {
    items = ((JSON.parse(text) as Json).nftables as Json[] | undefined) ?? [];
  } catch {
    return [];
  }
  const chains = new Map<string, FirewallChain>();
  const family = (x: Json) => String(x.family);
  const own = (x: Json) => family(x) === LVSD_TABLE.family && x.table === LVSD_TABLE.name;
  for (const item of items) {
    const chain = item.chain as Json | undefined;
    if (!chain || own(chain) || !['ip', 'inet'].includes(family(chain))) continue;
    if (chain.hook !== 'prerouting' && chain.hook !== 'forward') continue;
    const name = `${family(chain)} ${String(chain.table)} ${String(chain.name)}`;
    chains.set(name, {
      name,
      hook: chain.hook,
      policy: chain.policy === 'drop' ? 'drop' : 'accept',
      rules: [],
    });
  }
  for (const item of items) {
    const rule = item.rule as Json | undefined;
    if (!rule) continue;
    const chain = chains.get(`${family(rule)} ${String(rule.table)} ${String(rule.chain)}`);
    if (!chain) continue;
    chain.rules.push({ ...parseRule((rule.expr as Json[] | undefined) ?? [], chain.name), hook: chain.hook });
  }
  return [...chains.values()];
}

/** Everything the diagnosis needs, read at once (the probes in parallel). */
export async function collectFacts(api: ControlApi, host: HostReader): Promise<DoctorFacts> {
  const snapshot: Snapshot = await api.snapshot({ connections: true });
  const dataplane = snapshot.dataPath.device !== undefined;
  const addrs = addressesToRoute(snapshot);
  const probeJobs: Array<Promise<[string, ProbeFact]>> = [];
  for (const svc of snapshot.services) {
    for (const d of svc.dests) {
      if (probeTarget(svc, d)) continue;
      probeJobs.push(
        host.probeTcp(formatAddr(d.addr), d.port, PROBE_TIMEOUT_MS).then((fact) => [destName(d), fact]),
      );
    }
  }
  const [routes, neighbours, ruleset, probes] = await Promise.all([
    Promise.all(addrs.map(async (a) => [a, await host.routeGet(a)] as const)),
    host.neighbours(),
    dataplane ? host.nftRuleset() : Promise.resolve(null),
    Promise.all(probeJobs),
  ]);
  const devices = [...new Set([TUN_DEVICE, ...routes.flatMap(([, r]) => (r ? [r.dev] : []))])];
  const paths = sysctlsWanted(devices);
  const values = await Promise.all(paths.map((p) => host.sysctl(p)));
  return {
    snapshot,
    dataplane,
    tunDevice: TUN_DEVICE,
    sysctls: Object.fromEntries(paths.map((p, i) => [p, values[i]!])),
    routes: Object.fromEntries(routes),
    neighbours,
    probes: Object.fromEntries(probes),
    firewall: ruleset ? parseNftRuleset(ruleset) : [],
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
export function formatDoctorReport(report: DoctorReport, dataplane: boolean): string {
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
    dataplane ? 'host:' : 'host: not checked (lvsd runs without a data plane)',
  ];
  if (dataplane) {
    if (report.host.length === 0) lines.push('  ok (forwarding, rp_filter, send_redirects)');
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
  io.stdout(json ? JSON.stringify(report, null, 2) + '\n' : formatDoctorReport(report, facts.dataplane));
  return report.verdict === 'problem' ? 1 : 0;
}
