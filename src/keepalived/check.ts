// `lvsd check-config`'s report, pure: the services as `lvsadm -S -n` lists them, then each
// virtual server's quorum and scripts and each real server's checkers, readable by an operator.

import { formatAddr, formatAddrPort } from '../core/inet.js';
import { formatRules, NUMERIC_NAMES } from '../ipvsadm/format.js';
import { emptyListFormat } from '../ipvsadm/parse.js';
import { renderRules } from '../ipvsadm/rules.js';
import type { CheckerConfig, CheckTarget } from '../health/config.js';
import { formatDiagnostic, type Diagnostic } from './lexer.js';
import {
  realServerPort,
  type KeepalivedConfig,
  type ScriptConfig,
  type VirtualServerConfig,
} from './model.js';
import { toSnapshot } from './ops.js';
import type { ReadResult } from './read.js';

/** Seconds as keepalived's timers are written: `60s`, `0.5s`. */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(6))}s`;
}

function script(s: ScriptConfig): string {
  const argv = s.argv
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
  return s.user ? `${argv} (as ${s.user}${s.group ? `:${s.group}` : ''})` : argv;
}

function target(t: CheckTarget): string {
  let out = formatAddrPort(t.addr, t.port);
  if (t.bindAddr)
    out += ` from ${t.bindPort ? formatAddrPort(t.bindAddr, t.bindPort) : formatAddr(t.bindAddr)}`;
  else if (t.bindPort) out += ` from port ${t.bindPort}`;
  if (t.bindInterface) out += ` dev ${t.bindInterface}`;
  if (t.fwmark) out += ` fwmark ${t.fwmark}`;
  return out;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** One checker: what it checks, then its timing. */
export function describeChecker(c: CheckerConfig): string[] {
  const timing =
    `delay_loop ${seconds(c.delayLoopMs)}` +
    (c.kind === 'MISC_CHECK'
      ? `, misc_timeout ${seconds(c.timeoutMs)}`
      : `, connect_timeout ${seconds(c.connectTimeoutMs)}`) +
    `, retry ${c.retry}, delay_before_retry ${seconds(c.delayBeforeRetryMs)}, warmup ${seconds(c.warmupMs)}` +
    (c.alpha ? ', alpha' : '') +
    (c.logAllFailures ? ', log_all_failures' : '');
  const lines: string[] = [];
  switch (c.kind) {
    case 'TCP_CHECK':
    case 'PING_CHECK':
      lines.push(`${c.kind} ${target(c.target)}`);
      break;
    case 'HTTP_GET':
    case 'SSL_GET': {
      let head = `${c.kind} ${target(c.target)} http_protocol ${c.httpProtocol}`;
      if (c.virtualhost) head += ` virtualhost ${c.virtualhost}`;
      if (c.enableSni) head += ' enable_sni';
      if (c.fastRecovery) head += ' fast_recovery';
      lines.push(head);
      for (const url of c.urls) {
        let line = `  url ${url.path} status_code ${url.statusCodes.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(' ')}`;
        if (url.digest) line += ` digest ${url.digest}`;
        if (url.virtualhost) line += ` virtualhost ${url.virtualhost}`;
        lines.push(line);
      }
      break;
    }
    case 'UDP_CHECK': {
      let head = `UDP_CHECK ${target(c.target)} payload ${c.payload ? hex(c.payload) : '(random)'}`;
      head += c.requireReply
        ? ` require_reply ${hex(c.requireReply) || '(any)'}`
        : ' (fails only on an ICMP error)';
      lines.push(`${head} reply length ${c.minReplyLength}-${c.maxReplyLength}`);
      break;
    }
    case 'DNS_CHECK':
      lines.push(`DNS_CHECK ${target(c.target)} type ${c.type} name ${c.name}`);
      break;
    case 'MISC_CHECK':
      lines.push(
        `MISC_CHECK ${script({ argv: c.argv, user: c.user, group: c.group })}${c.dynamic ? ' misc_dynamic' : ''}`,
      );
      break;
  }
  lines.push(`  ${timing}`);
  return lines;
}

function describeVirtualServer(vs: VirtualServerConfig): string[] {
  const key = vs.services[0]!;
  const lines = [`virtual_server ${vs.name} (${vs.pos.file}:${vs.pos.line})`];
  let quorum = `  quorum ${vs.quorum}, hysteresis ${vs.hysteresis}`;
  if (vs.omega) quorum += ', omega';
  lines.push(quorum);
  if (vs.sorryServer) {
    const s = vs.sorryServer;
    lines.push(
      `  sorry_server ${formatAddrPort(s.addr, realServerPort(key, s.port))}${s.inhibit ? ' (sorry_server_inhibit)' : ''}`,
    );
  }
  if (vs.quorumUp) lines.push(`  quorum_up ${script(vs.quorumUp)}`);
  if (vs.quorumDown) lines.push(`  quorum_down ${script(vs.quorumDown)}`);
  for (const rs of vs.realServers) {
    const port =
      vs.services.length === 1 || rs.port !== 0
        ? String(realServerPort(key, rs.port))
        : '(each service port)';
    const addr = rs.addr.af === 4 ? formatAddr(rs.addr) : `[${formatAddr(rs.addr)}]`;
    lines.push(
      `  real_server ${addr}:${port} weight ${rs.settings.weight}${rs.inhibitOnFailure ? ' inhibit_on_failure' : ''}`,
    );
    if (rs.notifyUp) lines.push(`    notify_up ${script(rs.notifyUp)}`);
    if (rs.notifyDown) lines.push(`    notify_down ${script(rs.notifyDown)}`);
    if (rs.checkers.length === 0) lines.push('    no checker: always alive');
    for (const checker of rs.checkers) lines.push(...describeChecker(checker).map((l) => `    ${l}`));
  }
  return lines;
}

/** The services as `lvsadm -S -n` writes them (with thresholds, and `--set` when lvs_timeouts says). */
export function formatServices(config: KeepalivedConfig): string {
  const snapshot = toSnapshot(config);
  if (config.timeouts) return renderRules(snapshot, []);
  return formatRules(snapshot, { ...emptyListFormat(), numeric: true }, NUMERIC_NAMES, { thresholds: true });
}

/** Everything check-config prints on stdout for a good configuration. */
export function formatCheckReport(config: KeepalivedConfig): string {
  const lines: string[] = [];
  if (config.flush) lines.push('lvs_flush: every service is cleared at start');
  for (const vs of config.virtualServers) lines.push('', ...describeVirtualServer(vs));
  return formatServices(config) + lines.map((l) => l + '\n').join('');
}

/** What check-config prints and its exit status: 0, or 1 with `FILE:LINE: reason` on stderr. */
export function checkConfigOutput(result: ReadResult): { stdout: string; stderr: string; status: number } {
  const warnings = (list: Diagnostic[]) => list.map((d) => formatDiagnostic(d) + '\n').join('');
  if (!result.ok) {
    return {
      stdout: '',
      stderr: warnings(result.warnings) + formatDiagnostic(result.error) + '\n',
      status: 1,
    };
  }
  return { stdout: formatCheckReport(result.config), stderr: warnings(result.config.warnings), status: 0 };
}
