// ipvsadm's rules files: the `-S -n` text (with thresholds, a `--set` line and the sync daemons,
// which ipvsadm -S leaves out) and the word splitting of `-R`'s config stream. Pure.

import { formatAddr } from '../core/inet.js';
import type { Snapshot, SyncDaemonConfig } from '../core/ops.js';
import { formatRules, NUMERIC_NAMES } from './format.js';
import { emptyListFormat } from './parse.js';

/** Everything a director holds, as ipvsadm commands that rebuild it. */
export function renderRules(snapshot: Snapshot, daemons: readonly SyncDaemonConfig[]): string {
  const t = snapshot.timeouts;
  const format = { ...emptyListFormat(), numeric: true };
  const daemonLines = daemons.map(
    (d) =>
      `--start-daemon ${d.state} --mcast-interface ${d.mcastInterface} --syncid ${d.syncId} ` +
      `--sync-maxlen ${d.syncMaxLen} --mcast-group ${formatAddr(d.mcastGroup)} --mcast-port ${d.mcastPort} ` +
      `--mcast-ttl ${d.mcastTtl}\n`,
  );
  return (
    `--set ${t.tcp} ${t.tcpfin} ${t.udp}\n` +
    formatRules(snapshot, format, NUMERIC_NAMES, { thresholds: true }) +
    daemonLines.join('')
  );
}

/** Splits a rules line into words as ipvsadm's config stream does; a leading "ipvsadm" is dropped. */
export function ruleWords(line: string): string[] {
  const words = line
    .trim()
    .split(/\s+/)
    .filter((w) => w !== '');
  if (words[0] === 'ipvsadm' || words[0] === 'lvsadm') words.shift();
  return words;
}
