// The Prometheus text exposition format 0.0.4, written by hand: `# HELP`, `# TYPE`, then one
// `name{label="value"} value` line per sample. Pure. Written here rather than taken from prom-client
// because lvsd renders a snapshot once per scrape: no registry, no mutable metric objects, no
// dependencies for ~100 lines (docs/metrics.md).

export type MetricType = 'counter' | 'gauge';

/** Label names and values in the order they are printed (node_exporter's: sorted by name). */
export type Labels = readonly (readonly [name: string, value: string])[];

export interface Sample {
  readonly labels: Labels;
  /** Counters are integers; a bigint keeps one exact past 2^53. */
  readonly value: number | bigint;
}

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** In a label value: backslash, double quote and line feed are escaped (the format's three). */
export function escapeLabelValue(value: string): string {
  if (!/[\\"\n]/.test(value)) return value;
  return value.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** In HELP text only backslash and line feed are escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/**
 * A sample value as text. Counters print as exact integers in plain digits (never `1e+21`, which
 * Number#toString would give from 10^21 on); gauges as Go's ParseFloat reads them, NaN and ±Inf
 * included.
 */
export function formatValue(value: number | bigint, type: MetricType): string {
  if (typeof value === 'bigint') return value.toString();
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (type === 'counter' || Number.isInteger(value)) return BigInt(Math.trunc(value)).toString();
  return String(value);
}

function formatLabels(labels: Labels): string {
  if (labels.length === 0) return '';
  return `{${labels.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(',')}}`;
}

/**
 * The exposition of `families` in their order; a family without samples is left out. Samples that
 * share one Labels array (a real server's, across its series) have it formatted once.
 */
export function renderExposition(families: readonly MetricFamily[]): string {
  const formatted = new Map<Labels, string>();
  const parts: string[] = [];
  for (const family of families) {
    if (family.samples.length === 0) continue;
    parts.push(`# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`);
    for (const sample of family.samples) {
      let labels = formatted.get(sample.labels);
      if (labels === undefined) formatted.set(sample.labels, (labels = formatLabels(sample.labels)));
      parts.push(`${family.name}${labels} ${formatValue(sample.value, family.type)}\n`);
    }
  }
  return parts.join('');
}
