// The host firewall as the doctor reads it: nftables' JSON ruleset (`nft -j list ruleset`, which
// includes iptables-nft's rules) and the legacy iptables' tables (`iptables-legacy-save`), both
// into chains of rules the pure diagnosis walks (src/core/doctor.ts, chainVerdict), jumps and gotos
// included. Only the hooks lvsd's packets cross are kept, and lvsd's own nftables table is left out.
// Also the interfaces that lvsd's packet plane's netdev table hooks (its own plumbing, checked apart).

import type { FirewallChain, FirewallRule, FlowFact } from '../core/doctor.js';

/** lvsd's own nftables table (src/dataplane/host.ts), left out of the firewall check. */
const LVSD_TABLE = { family: 'inet', name: 'lvsd' };

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

function parseRule(expr: Json[], table: string): FirewallRule {
  const rule: FirewallRule = { text: '', matches: [], opaque: false, verdict: 'continue' };
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
    } else if (kind === 'jump' || kind === 'goto') {
      const target = String((e[kind] as Json | null)?.target);
      rule.verdict = kind;
      rule.target = `${table} ${target}`;
      words.push(`${kind} ${target}`);
    } else if (kind === 'return') {
      rule.verdict = 'return';
      words.push('return');
    } else if (kind === 'counter' || kind === 'log' || kind === 'limit' || kind === 'comment') {
      continue;
    } else {
      // queue, vmap, mangle, nat...: the doctor does not follow them.
      rule.verdict = 'unknown';
      words.push(String(kind));
    }
  }
  rule.text = words.join(' ');
  return rule;
}

const FAMILIES: Record<string, FirewallChain['family']> = { ip: 4, ip6: 6, inet: 'both' };
/** The hooks lvsd's packets cross on the director (docs/doctor.md). */
const PATH_HOOKS = new Set(['prerouting', 'forward']);

/**
 * nft's JSON ruleset → the base chains on the hooks lvsd's packets cross (prerouting, forward) and
 * every regular chain they may jump to; lvsd's own table left out.
 */
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
  const table = (x: Json) => `${family(x)} ${String(x.table)}`;
  for (const item of items) {
    const chain = item.chain as Json | undefined;
    if (!chain || own(chain) || !FAMILIES[family(chain)]) continue;
    const hook = typeof chain.hook === 'string' ? chain.hook : null;
    if (hook !== null && !PATH_HOOKS.has(hook)) continue;
    const name = `${table(chain)} ${String(chain.name)}`;
    chains.set(name, {
      name,
      family: FAMILIES[family(chain)]!,
      hook,
      policy: chain.policy === 'drop' ? 'drop' : 'accept',
      rules: [],
    });
  }
  for (const item of items) {
    const rule = item.rule as Json | undefined;
    if (!rule) continue;
    const chain = chains.get(`${table(rule)} ${String(rule.chain)}`);
    if (!chain) continue;
    chain.rules.push(parseRule((rule.expr as Json[] | undefined) ?? [], table(rule)));
  }
  return [...chains.values()];
}

/** The legacy tables whose chains on prerouting and forward can drop a packet, and those chains. */
const LEGACY_PATH_CHAINS: Record<string, Record<string, string>> = {
  raw: { PREROUTING: 'prerouting' },
  mangle: { PREROUTING: 'prerouting', FORWARD: 'forward' },
  filter: { FORWARD: 'forward' },
  security: { FORWARD: 'forward' },
};

/** Targets that do not end a packet's walk through the chain. */
const NON_TERMINATING = new Set([
  'LOG',
  'NFLOG',
  'ULOG',
  'MARK',
  'CONNMARK',
  'CT',
  'NOTRACK',
  'TRACE',
  'TCPMSS',
  'CLASSIFY',
  'DSCP',
  'TOS',
  'TTL',
  'HL',
  'SET',
  'AUDIT',
]);

/** A line of iptables-save split into words, "quoted strings" kept whole. */
function words(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

function addressValue(text: string): FirewallRule['matches'][number]['values'][number] {
  const [prefix, len] = text.split('/');
  const full = prefix!.includes(':') ? '128' : '32';
  return len === undefined || len === full ? prefix! : { prefix: prefix!, len: Number(len) };
}

/** One `-A CHAIN ...` line's rule; `chains` are the table's chain names (jump targets). */
function parseLegacyRule(args: string[], table: string, chains: ReadonlySet<string>): FirewallRule {
  const rule: FirewallRule = { text: args.join(' '), matches: [], opaque: false, verdict: 'continue' };
  const match = (field: keyof FlowFact, values: FirewallRule['matches'][number]['values']) =>
    rule.matches.push({ field, values });
  const ports = (text: string) => text.split(',').map(Number);
  const plainPorts = (text: string) => /^\d+(,\d+)*$/.test(text);
  for (let i = 0; i < args.length; i++) {
    const option = args[i]!;
    const value = args[i + 1];
    if (option === '!') {
      // A negated match: the doctor does not evaluate it. Skip the option and its value.
      rule.opaque = true;
      i += args[i + 2] !== undefined && !args[i + 2]!.startsWith('-') ? 2 : 1;
      continue;
    }
    if (!option.startsWith('-')) continue;
    const hasValue = value !== undefined && !value.startsWith('-');
    if (hasValue) i++;
    switch (option) {
      case '-s':
      case '-d':
        match(option === '-s' ? 'saddr' : 'daddr', [addressValue(value!)]);
        break;
      case '-p': {
        const protocol = PROTOCOLS[value!] ?? (/^\d+$/.test(value!) ? Number(value) : null);
        if (protocol === null) rule.opaque = true;
        else match('protocol', [protocol]);
        break;
      }
      case '--dport':
      case '--sport':
      case '--dports':
      case '--sports':
      case '--destination-port':
      case '--source-port':
        if (!plainPorts(value!)) rule.opaque = true;
        else match(option.includes('d') ? 'dport' : 'sport', ports(value!));
        break;
      case '--ctstate':
      case '--state':
        match(
          'ctstate',
          value!.split(',').map((s) => s.toLowerCase()),
        );
        break;
      case '-m':
      case '--comment':
      case '--reject-with':
      case '--log-prefix':
      case '--log-level':
        break;
      case '-j':
      case '-g': {
        const target = value!;
        if (option === '-g') {
          rule.verdict = 'goto';
          rule.target = `${table} ${target}`;
        } else if (target === 'ACCEPT') rule.verdict = 'accept';
        else if (target === 'DROP' || target === 'REJECT') rule.verdict = 'drop';
        else if (target === 'RETURN') rule.verdict = 'return';
        else if (chains.has(target)) {
          rule.verdict = 'jump';
          rule.target = `${table} ${target}`;
        } else if (!NON_TERMINATING.has(target)) rule.verdict = 'unknown';
        break;
      }
      default:
        // Interfaces, marks, limits, other modules' options: not evaluated.
        rule.opaque = true;
    }
  }
  return rule;
}

/**
 * `iptables-legacy-save` (or `ip6tables-legacy-save`) → the chains on the hooks lvsd's packets
 * cross, and the user chains they may jump to; named "iptables-legacy filter FORWARD".
 */
export function parseIptablesSave(text: string, family: 4 | 6): FirewallChain[] {
  const program = family === 4 ? 'iptables-legacy' : 'ip6tables-legacy';
  const chains: FirewallChain[] = [];
  let table: string | null = null;
  let byName = new Map<string, FirewallChain>();
  const lines = text.split('\n').map((l) => l.trim());
  for (const [i, line] of lines.entries()) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      byName = new Map();
      // The table's chains are declared before its rules: collect them first, for jump targets.
      for (const decl of lines.slice(i + 1)) {
        if (decl === 'COMMIT') break;
        const m = /^:(\S+) (\S+)/.exec(decl);
        if (!m) continue;
        const hook = LEGACY_PATH_CHAINS[table]?.[m[1]!] ?? null;
        const builtin = m[2] !== '-';
        if (builtin && hook === null) continue;
        const chain: FirewallChain = {
          name: `${program} ${table} ${m[1]!}`,
          family,
          hook,
          policy: m[2] === 'DROP' ? 'drop' : 'accept',
          rules: [],
        };
        byName.set(m[1]!, chain);
        chains.push(chain);
      }
      continue;
    }
    if (!table || !line.startsWith('-A ')) continue;
    const [, chainName, ...args] = words(line);
    const chain = byName.get(chainName!);
    if (!chain) continue;
    chain.rules.push(parseLegacyRule(args, `${program} ${table}`, new Set(byName.keys())));
  }
  return chains;
}

/**
 * `nft list table netdev NAME` → the interfaces its ingress chains hook, one device
 * (`device "eth0"`) or several (`devices = { "eth0", "eth1" }`) a chain.
 */
export function parseNetdevIngress(text: string): string[] {
  const devices = new Set<string>();
  for (const [, list] of text.matchAll(/hook ingress devices? =?\s*(\{[^}]*\}|"[^"]*")/g))
    for (const [, name] of list!.matchAll(/"([^"]*)"/g)) devices.add(name!);
  return [...devices].sort();
}
