// Pure side of the comparison: what one measurement is, medians and ranges over repetitions,
// lvsd's ratios to each peer, the project's goals, and the text table.

export const TARGETS = ['direct', 'nat', 'haproxy', 'nginx', 'lvsd-packet', 'lvsd', 'lvsd-dr'] as const;
export type TargetName = (typeof TARGETS)[number];
export const LOADS = ['keepalive', 'close', 'bulk', 'udp'] as const;
export type LoadName = (typeof LOADS)[number];

export const TARGET_LABELS: Record<TargetName, string> = {
  direct: 'direct',
  nat: 'kernel NAT',
  haproxy: 'HAProxy',
  nginx: 'nginx stream',
  'lvsd-packet': 'lvsd packet NAT',
  lvsd: 'lvsd tun NAT',
  'lvsd-dr': 'lvsd packet DR',
};

export const LOAD_LABELS: Record<LoadName, { title: string; unit: string; per: string }> = {
  keepalive: { title: 'keep-alive requests', unit: 'req/s', per: 'request' },
  close: { title: 'new connections (Connection: close)', unit: 'conn/s', per: 'connection' },
  bulk: { title: '10 MB transfers', unit: 'Gbit/s', per: 'MB' },
  udp: { title: '64-byte UDP flood, at the real servers', unit: 'packets/s', per: 'packet' },
};

/** One load against one target in one repetition. */
export interface Sample {
  target: TargetName;
  load: LoadName;
  rep: number;
  /** Why the run gave no figures (target down, tool failed); absent when it measured. */
  failure?: string;
  /** Requests or connections completed, datagrams that reached the real servers; for bulk, transfers. */
  requests: number;
  seconds: number;
  /** req/s, conn/s or packets/s; Gbit/s for bulk. */
  rate: number;
  /** UDP: the packets/s the client sent (what the director was offered); null for the other loads. */
  offeredRate: number | null;
  p50Ms: number;
  p99Ms: number;
  /** Failed requests: connect/read/write errors, timeouts, non-2xx answers; UDP: sends refused. */
  errors: number;
  /** lvsd's packet drops during the run, by reason (only those that happened). */
  lvsdDrops: Record<string, number>;
  /** SYNs the real servers refused on a TIME_WAIT socket (PAWS, TcpExt PAWSEstab) during the run. */
  pawsRejected: number;
  /** CPU of the processes in the director's namespace, in µs per request (per MB for bulk); null if none ran. */
  directorCpuUs: number | null;
  /** CPU of the whole machine (all cores, softirq included) in µs per request (per MB for bulk). */
  machineCpuUs: number;
  /** Requests each real server answered (datagrams it received) during the run. */
  perRealServer: number[];
  /** Client addresses the real servers saw. */
  seenClients: string[];
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, n: sorted.length };
}

export interface Cell {
  rate: Spread | null;
  offeredRate: Spread | null;
  p50Ms: Spread | null;
  p99Ms: Spread | null;
  directorCpuUs: Spread | null;
  machineCpuUs: Spread | null;
  /** Machine CPU per request above the direct run's median: what the balancing costs, softirq included. */
  addedCpuUs: Spread | null;
  failures: string[];
}

export type Summary = Partial<Record<TargetName, Partial<Record<LoadName, Cell>>>>;

export function summarize(samples: readonly Sample[]): Summary {
  const summary: Summary = {};
  const directCpu = (load: LoadName) =>
    spread(
      samples
        .filter((s) => s.target === 'direct' && s.load === load && !s.failure)
        .map((s) => s.machineCpuUs),
    )?.median ?? null;
  for (const target of TARGETS) {
    for (const load of LOADS) {
      const all = samples.filter((s) => s.target === target && s.load === load);
      if (all.length === 0) continue;
      const ok = all.filter((s) => !s.failure);
      const of = (pick: (s: Sample) => number | null) =>
        spread(ok.map(pick).filter((v): v is number => v !== null));
      const base = directCpu(load);
      (summary[target] ??= {})[load] = {
        rate: of((s) => s.rate),
        offeredRate: of((s) => s.offeredRate),
        p50Ms: of((s) => s.p50Ms),
        p99Ms: of((s) => s.p99Ms),
        directorCpuUs: of((s) => s.directorCpuUs),
        machineCpuUs: of((s) => s.machineCpuUs),
        addedCpuUs: base === null ? null : of((s) => s.machineCpuUs - base),
        failures: all.flatMap((s) => (s.failure ? [s.failure] : [])),
      };
    }
  }
  return summary;
}

export interface Goal {
  text: string;
  /** lvsd's figure divided by the peer's (or the reverse measure the goal names). */
  ratio: number | null;
  /** What the ratio must reach: at least (>=) or at most (<=). */
  bound: number;
  atMost: boolean;
  met: boolean | null;
}

function median(summary: Summary, target: TargetName, load: LoadName, field: keyof Omit<Cell, 'failures'>) {
  return summary[target]?.[load]?.[field]?.median ?? null;
}

function goal(text: string, ratio: number | null, bound: number, atMost = false): Goal {
  const met = ratio === null || !Number.isFinite(ratio) ? null : atMost ? ratio <= bound : ratio >= bound;
  return { text, ratio, bound, atMost, met };
}

const divide = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);

/** Issue 9's goals for lvsd's packet plane, each a ratio of two medians of one run. */
export function goals(summary: Summary): Goal[] {
  const rate = (t: TargetName, l: LoadName) => median(summary, t, l, 'rate');
  const packetTo = (peer: TargetName, load: LoadName) => divide(rate('lvsd-packet', load), rate(peer, load));
  return [
    goal('packet NAT keep-alive req/s >= 1.0x kernel NAT', packetTo('nat', 'keepalive'), 1),
    goal('packet NAT new conn/s >= 1.0x kernel NAT', packetTo('nat', 'close'), 1),
    goal('packet NAT UDP packets/s >= 1.0x kernel NAT', packetTo('nat', 'udp'), 1),
    goal('packet NAT bulk Gbit/s >= 0.9x kernel NAT', packetTo('nat', 'bulk'), 0.9),
    goal('packet NAT new conn/s >= 2x HAProxy', packetTo('haproxy', 'close'), 2),
    goal(
      'packet NAT director CPU per new connection <= 0.5x HAProxy',
      divide(
        median(summary, 'lvsd-packet', 'close', 'directorCpuUs'),
        median(summary, 'haproxy', 'close', 'directorCpuUs'),
      ),
      0.5,
      true,
    ),
    goal(
      'packet DR bulk Gbit/s >= 2x packet NAT',
      divide(rate('lvsd-dr', 'bulk'), rate('lvsd-packet', 'bulk')),
      2,
    ),
  ];
}

export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function formatSpread(s: Spread | null): string {
  if (!s) return '-';
  return s.n > 1
    ? `${formatNumber(s.median)} (${formatNumber(s.min)}-${formatNumber(s.max)})`
    : formatNumber(s.median);
}

interface Row {
  label: string;
  cells: string[];
}

function rowsFor(summary: Summary, targets: readonly TargetName[], loads: readonly LoadName[]): Row[] {
  const rows: Row[] = [];
  for (const load of loads) {
    const { title, unit, per } = LOAD_LABELS[load];
    const cell = (t: TargetName) => summary[t]?.[load];
    const field = (label: string, pick: (c: Cell) => Spread | null) =>
      rows.push({
        label,
        cells: targets.map((t) => {
          const c = cell(t);
          if (!c) return '-';
          if (!c.rate && c.failures.length > 0)
            return c.failures.every((f) => f.startsWith('n/a')) ? 'n/a' : 'failed';
          return formatSpread(pick(c));
        }),
      });
    field(`${title}, ${unit}`, (c) => c.rate);
    if (load === 'udp') field('  sent by the client, packets/s', (c) => c.offeredRate);
    if (load === 'keepalive' || load === 'close') {
      field('  latency p50, ms', (c) => c.p50Ms);
      field('  latency p99, ms', (c) => c.p99Ms);
    }
    field(`  director CPU, µs/${per}`, (c) => c.directorCpuUs);
    field(`  machine CPU over direct, µs/${per}`, (c) => c.addedCpuUs);
  }
  return rows;
}

/** The results as a table: medians with min-max over the repetitions. */
export function renderTable(
  summary: Summary,
  targets: readonly TargetName[],
  loads: readonly LoadName[],
  markdown = false,
): string {
  const header = ['', ...targets.map((t) => TARGET_LABELS[t])];
  const rows = rowsFor(summary, targets, loads).map((r) => [r.label, ...r.cells]);
  if (markdown) {
    const line = (cells: string[]) => `| ${cells.map((c) => c.trim() || ' ').join(' | ')} |`;
    const rule = `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`;
    return [
      line(header),
      rule,
      ...rows.map((r) => line([r[0]!.startsWith('  ') ? `  ${r[0]!.trim()}` : `**${r[0]}**`, ...r.slice(1)])),
    ].join('\n');
  }
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** The rate of lvsd's packet NAT divided by each peer's, per load. */
export function ratioLines(
  summary: Summary,
  targets: readonly TargetName[],
  loads: readonly LoadName[],
): string[] {
  const peers = targets.filter((t) => t !== 'lvsd-packet');
  return loads.map((load) => {
    const own = median(summary, 'lvsd-packet', load, 'rate');
    const parts = peers.map((peer) => {
      const ratio = divide(own, median(summary, peer, load, 'rate'));
      return `${TARGET_LABELS[peer]} ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}x`}`;
    });
    return `${LOAD_LABELS[load].title}: ${parts.join(', ')}`;
  });
}

/** The goals as a markdown table: goal, ratio, met. */
export function goalTable(list: readonly Goal[]): string {
  const rows = list.map((g) => {
    const status = g.met === null ? 'n/a' : g.met ? 'met' : 'missed';
    return `| ${g.text} | ${g.ratio === null ? 'no data' : `${g.ratio.toFixed(2)}x`} | ${status} |`;
  });
  return ['| goal | ratio | |', '|---|---:|---|', ...rows].join('\n');
}

export function goalLines(list: readonly Goal[]): string[] {
  return list.map((g) => {
    const status = g.met === null ? 'n/a ' : g.met ? 'MET ' : 'MISS';
    const value = g.ratio === null ? 'no data' : `${g.ratio.toFixed(2)}x`;
    const shortBy =
      g.met === false
        ? ` (${g.atMost ? 'over' : 'short'} by ${((g.atMost ? g.ratio! / g.bound - 1 : 1 - g.ratio! / g.bound) * 100).toFixed(0)}%)`
        : '';
    return `${status} ${g.text}: ${value}${shortBy}`;
  });
}
